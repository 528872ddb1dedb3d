"""Options and helpers shared by the commands that read or write the label store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..store import LabelStore, StoreError, default_store_path


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="label store file (default: beside the DICOM database, <db>/SeriesClassifier/labels.sqlite, "
        "or in the folder, <folder>/.seriesclassifier/labels.sqlite)",
    )


def store_path(args: argparse.Namespace) -> Path:
    if getattr(args, "store", None):
        return Path(args.store)
    path = getattr(args, "path", None)
    if path:
        return default_store_path(path)
    here = default_store_path(Path.cwd())
    if here.exists():  # run from inside a classified folder
        return here
    raise StoreError("give a PATH (folder or Slicer DICOM database) or --store")


def open_store(args: argparse.Namespace, create: bool = True) -> LabelStore:
    return LabelStore(store_path(args), create=create)


def add_models_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="DIR", help="models folder used when PATH must be classified first "
                        "(default: the bundled models)")


def ensure_predictions(store: LabelStore, path: str | None, models: str | None = None, err: TextIO = sys.stderr) -> int:
    """Classify ``path`` into the store when the store has no predictions yet; returns how many were added."""
    if store.records() or not path:
        return 0
    try:
        from ..models import load_bundle
        from ..pipeline import classify
    except ImportError as e:
        raise StoreError(
            f"{store.path} holds no predictions and the classifier is not available here ({e}); "
            "run `seriesclassifier classify` first"
        ) from e
    print(f"classifying {path} (the store has no predictions yet) …", file=err)
    try:
        predictions = list(classify(path, load_bundle(models) if models else None))
    except FileNotFoundError as e:  # no models, or the path is gone
        raise StoreError(f"cannot classify {path}: {e}") from e
    return store.record_predictions(p for p in predictions if p is not None)
