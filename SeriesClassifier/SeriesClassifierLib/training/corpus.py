"""A labelled corpus for training: its series read once (or from a cache), split by held-out profile, the
training labels written as the CSV the CNN trainer reads, the slices the CNN samples; training's progress log."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    """Training progress, on stderr with the time (training runs for minutes)."""
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_all(path: Path, cache: Path | None = None) -> list:
    """Every series under path, headers read (or loaded from the cache written by an earlier run)."""
    from ..dicom.headers import read_series
    from ..dicom.sources import iter_series_refs
    from ..models.features import add_study_context
    from ..series import Series

    if cache is not None and cache.is_file():
        with open(cache, encoding="utf-8") as f:
            series = [Series.from_dict(json.loads(line)) for line in f if line.strip()]
        add_study_context(series)
        log(f"{len(series)} series from cache {cache}")
        return series
    t0 = time.time()
    refs = list(iter_series_refs(path))
    log(f"{len(refs)} series grouped under {path} in {time.time() - t0:.0f} s")
    series = [read_series(r) for r in refs]
    add_study_context(series)
    log(f"headers read in {time.time() - t0:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "w", encoding="utf-8") as f:
            for s in series:
                f.write(json.dumps(s.to_dict()) + "\n")
    return series


def split_by_profile(series: list, labels: dict, holdout: list[str]) -> tuple[list, list]:
    usable = [s for s in series if not s.skipped and s.series_uid in labels and labels[s.series_uid].get("sequence")]
    held = [s for s in usable if labels[s.series_uid].get("profile", "") in set(holdout)]
    train = [s for s in usable if labels[s.series_uid].get("profile", "") not in set(holdout)]
    return train, held


def write_labels_csv(labels: dict[str, dict[str, str]], path: Path) -> Path:
    """Training labels as the CSV the CNN trainer reads (written to a temporary folder by the caller)."""
    import csv

    columns = sorted({k for row in labels.values() for k in row} - {"series_uid"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["series_uid", *columns])
        w.writeheader()
        for uid, row in sorted(labels.items()):
            w.writerow({"series_uid": uid, **{c: row.get(c, "") for c in columns}})
    return path


def cnn_samples(model: Any, series: Iterable[Any], name: Callable[[Any], str] = lambda s: s.series_uid
                ) -> Iterator[tuple[Any, Any]]:
    """(series, the slices ``model.sample`` takes from it) for every series the CNN can read.

    Skipped series and series without readable pixels are left out, each said once on stderr by ``name``.
    """
    for s in series:
        if s.skipped:
            continue
        try:
            sampled = model.sample(s)
        except Exception as exc:  # noqa: BLE001 - a series without pixels is left out, said once
            print(f"left out {name(s)}: {exc}", file=sys.stderr)
            continue
        yield s, sampled
