"""Options and helpers shared by the commands that read or write the label store."""

from __future__ import annotations

import argparse
import os
import sqlite3
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
    store = LabelStore(store_path(args), create=create)
    remember_store(store.path)
    return store


def add_models_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="DIR", help="models folder for the series of PATH not classified yet "
                        "(default: the bundled models); given, it also replaces stored predictions other models made")


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
    strict: bool | None = None,
) -> int:
    """Classify the series under ``path`` that are new or changed since the store last saw them.

    Returns how many were classified. Without ``--models`` a stored prediction is kept whatever models
    made it (a site's own bundle used by ``classify`` is not overwritten by the bundled one); with it
    (``strict``, unless the caller says otherwise), predictions of other models are made again.
    """
    from ._predictions import ModelChoice, up_to_date

    if not path:
        return 0
    refs = series_under(path) if refs is None else refs
    strict = models is not None if strict is None else strict
    return up_to_date(store, refs, ModelChoice(models, strict=strict), err=err)[1]


# -- the stores this user's commands wrote: lets ``label UID`` find the series from anywhere ---------------------

RECENT_LIMIT = 50


def recent_stores_file() -> Path:
    """``$SERIESCLASSIFIER_STATE_DIR`` or ``$XDG_STATE_HOME/seriesclassifier`` (``~/.local/state``)."""
    base = os.environ.get("SERIESCLASSIFIER_STATE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"),
                            "seriesclassifier")
    return Path(base) / "stores.txt"


def remember_store(path: Path) -> None:
    """Note a store this user wrote (most recent first); a failure only costs ``label`` the shortcut."""
    entry = str(Path(path).resolve())
    target = recent_stores_file()
    try:
        known = [s for s in recent_stores() if s != entry]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join([entry, *known][:RECENT_LIMIT]) + "\n", encoding="utf-8")
    except OSError:
        pass


def recent_stores() -> list[str]:
    try:
        lines = recent_stores_file().read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()]


def _holds(store: Path, series_uid: str) -> bool:
    """Whether a store file knows the series; read-only, and a broken or foreign file just says no."""
    try:
        conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT 1 FROM predictions WHERE series_uid = ? UNION ALL "
                               "SELECT 1 FROM events WHERE series_uid = ? LIMIT 1", (series_uid, series_uid)).fetchone()
        finally:
            conn.close()
    except (sqlite3.Error, OSError, ValueError):
        return False
    return row is not None


def find_store_of(series_uid: str) -> Path:
    """The one store that knows ``series_uid``: the current folder's, else one of the stores recently written."""
    candidates = [default_store_path(Path.cwd()), *(Path(s) for s in recent_stores())]
    found: list[Path] = []
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() not in found and _holds(candidate, series_uid):
            found.append(candidate.resolve())
    if len(found) == 1:
        return found[0]
    if found:
        raise StoreError(f"series {series_uid} is in several label stores ({', '.join(map(str, found))}): "
                         "give --path or --store")
    raise StoreError(f"series {series_uid} is in no label store classify or review wrote (typo? give --path "
                     "FOLDER or --store FILE, or --allow-unknown with one of them)")
