"""Copy a CNN training corpus without the series of one class up to a matrix size, for an ablation.

    python scripts/corpus_without.py CORPUS CACHE OUT OUT_CACHE --sequence SCOUT --max-matrix 128

CORPUS is a ``synth.cnn_corpus`` folder (labels.csv and study folders), CACHE its slice cache from
``cnn_train`` (``CACHE_DIR/<name>_k8_s128.npz``). OUT gets a labels.csv without those series and links to
the study folders; OUT_CACHE the cache without them, so ``cnn_train --train OUT --cache-dir DIR`` trains on
the rest without reading a file again (session 14: the GE/Philips calibration scans, the softest series
labelled SCOUT, left out; docs/CNN_SHORTCUTS.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np
import pydicom

from SeriesClassifierLib.training.cnn_train import Cache


def small_series(corpus: Path, sequence: str, max_matrix: int) -> set[str]:
    """UIDs of the corpus' series labelled ``sequence`` whose smaller matrix side is at most ``max_matrix``."""
    with open(corpus / "labels.csv", newline="", encoding="utf-8") as f:
        wanted = {r["series_uid"] for r in csv.DictReader(f) if r["sequence"] == sequence}
    out = set()
    for folder in sorted(corpus.glob("study_*/s*")):
        first = next(iter(sorted(folder.glob("*.dcm"))), None)
        if first is None:
            continue
        ds = pydicom.dcmread(first, stop_before_pixels=True)
        if ds.SeriesInstanceUID in wanted and min(int(ds.Rows), int(ds.Columns)) <= max_matrix:
            out.add(ds.SeriesInstanceUID)
    return out


def write_subset(corpus: Path, cache: Path, out: Path, out_cache: Path, drop: set[str]) -> int:
    """Write OUT (labels and study links) and OUT_CACHE without ``drop``; the number of series kept."""
    with open(corpus / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if r["series_uid"] not in drop]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    for study in sorted(corpus.glob("study_*")):
        if not (out / study.name).exists():
            os.symlink(study.resolve(), out / study.name)
    full = Cache.load(cache)
    subset = full.subset_series(np.array([uid not in drop for uid in full.uids]))
    subset.n_labels = len(kept)  # the cache matches OUT's labels.csv, so cnn_train reuses it
    out_cache.parent.mkdir(parents=True, exist_ok=True)
    subset.save(out_cache)
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("out_cache", type=Path, help="name it OUTDIR/<OUT's folder name>_k8_s128.npz")
    ap.add_argument("--sequence", required=True)
    ap.add_argument("--max-matrix", type=int, required=True)
    args = ap.parse_args(argv)
    drop = small_series(args.corpus, args.sequence, args.max_matrix)
    kept = write_subset(args.corpus, args.cache, args.out, args.out_cache, drop)
    print(f"{args.corpus.name}: left out {len(drop)} {args.sequence} series of matrix <= {args.max_matrix}, "
          f"kept {kept}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
