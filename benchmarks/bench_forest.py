"""Benchmark: header reading and forest prediction per series on a folder of real series, for one or more bundles.

    python benchmarks/bench_forest.py --data REALDEV --models SeriesClassifier/Resources/Models --models OLD_MODELS

Reads every series' headers once (timed, best of three), then times each bundle's forest (features and trees)
one series at a time and all at once, best of three. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from SeriesClassifierLib.models.forest import ForestModel
from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs


def best_of(n: int, work) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a folder of DICOM series")
    ap.add_argument("--models", type=Path, action="append", required=True, help="a models folder (repeatable)")
    args = ap.parse_args(argv)
    refs = resolve_refs(args.data)
    series = [s for s in read_all_series(refs) if not s.skipped]
    n = len(series)
    seconds = best_of(3, lambda: read_all_series(resolve_refs(args.data)))
    print(f"{n} series: headers {seconds * 1000 / n:.1f} ms per series (grouping included)")
    for folder in args.models:
        forest = ForestModel.load(folder)
        one = best_of(3, lambda f=forest: [f.predict_many([s]) for s in series])
        batch = best_of(3, lambda f=forest: f.predict_many(series))
        print(f"{folder} ({forest.n_estimators} trees per task): one at a time {one * 1000 / n:.1f} ms per series, "
              f"all at once {batch * 1000 / n:.1f} ms per series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
