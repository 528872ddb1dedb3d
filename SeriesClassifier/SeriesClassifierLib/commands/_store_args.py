"""Options and helpers shared by the commands that read or write the label store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..labels.store import LabelStore, StoreError, default_store_path


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
        if not Path(path).exists():  # never create a store (and its folders) for a path that is not there
            raise StoreError(f"{path}: no such file or folder")
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


def series_under(path: str) -> list:
    """The series under ``path`` (SeriesRef), or StoreError saying why not."""
    from ..dicom.sources import iter_series_refs

    try:
        return list(iter_series_refs(path))
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e}") from e


def ensure_predictions(
    store: LabelStore,
    path: str | None,
    models: str | None = None,
    err: TextIO | None = None,
    refs: list | None = None,
) -> int:
    """Classify what the store has no prediction for; returns how many predictions were added.

    With ``refs`` (the series under ``path``, already listed by the caller) only the series missing
    from the store are classified; without, ``path`` is classified when the store holds no
    prediction at all (listing a large folder just to check would cost more than it saves).
    """
    if not path:
        return 0
    known = store.predicted_uids()
    if refs is not None:
        todo = [r for r in refs if r.series_uid not in known]
        if not todo:
            return 0
        what = f"{len(todo)} series of {path} not in the store yet"
    elif known:
        return 0
    else:
        todo, what = None, f"{path} (the store has no predictions yet)"
    try:
        from ..models.bundle import load_bundle
        from ..run.pipeline import classify
    except ImportError as e:
        raise StoreError(f"the classifier is not available here ({e}); run `seriesclassifier classify` first") from e
    print(f"classifying {what} …", file=err or sys.stderr)
    try:
        bundle = load_bundle(models) if models else None
        predictions = list(classify(todo if todo is not None else path, bundle))
    except FileNotFoundError as e:  # no models, or the path is gone
        raise StoreError(f"cannot classify {path}: {e}") from e
    return store.record_predictions(p for p in predictions if p is not None)
