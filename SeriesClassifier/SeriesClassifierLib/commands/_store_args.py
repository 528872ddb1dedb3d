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
    if not path:
        raise StoreError("give a PATH (folder or Slicer DICOM database) or --store")
    return default_store_path(path)


def open_store(args: argparse.Namespace, create: bool = True) -> LabelStore:
    return LabelStore(store_path(args), create=create)


def ensure_predictions(store: LabelStore, path: str | None, err: TextIO = sys.stderr) -> int:
    """Classify ``path`` into the store when the store has no predictions yet; returns how many were added."""
    if store.records() or not path:
        return 0
    try:
        from ..pipeline import classify
    except ImportError as e:
        raise StoreError(
            f"{store.path} holds no predictions and the classifier is not available here ({e}); "
            "run `seriesclassifier classify` first"
        ) from e
    print(f"classifying {path} (the store has no predictions yet) …", file=err)
    try:
        predictions = list(classify(path))
    except FileNotFoundError as e:  # no models, or the path is gone
        raise StoreError(f"cannot classify {path}: {e}") from e
    return store.record_predictions(p for p in predictions if p is not None)
