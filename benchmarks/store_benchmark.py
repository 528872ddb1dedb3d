"""Label store figures: commit latency (synchronous FULL vs NORMAL), bulk prediction recording, reading all records.

    python benchmarks/store_benchmark.py [--series 5000] [--dir /tmp/somewhere]

Prints figures; asserts nothing (timings depend on the disk).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.vocabulary import load_vocabulary


def predictions(n: int) -> list[SeriesPrediction]:
    codes = load_vocabulary().sequence_codes
    out = []
    for i in range(n):
        probs = {c: 1.0 / len(codes) for c in codes}
        seq = TaskPrediction.from_probabilities(probs)
        out.append(SeriesPrediction(
            f"1.2.{i}", f"1.3.{i // 12}", f"P{i // 24}", i % 12 + 1, f"series {i}", 100, seq,
            TaskPrediction.from_probabilities({"AXIAL": 0.9, "SAGITTAL": 0.1}),
            models={"forest": ModelOutput("forest", sequence=seq), "cnn": ModelOutput("cnn", sequence=seq)},
            slice_profile=[probs] * 8, model_version="bench",
        ))
    return out


def commit_latency(store: LabelStore, n: int, synchronous: str) -> list[float]:
    store._conn.execute(f"PRAGMA synchronous = {synchronous}")
    times = []
    for i in range(n):
        t = time.perf_counter()
        store.correct(f"1.2.{i}", sequence="PD", user="bench", source="cli")
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="store-bench-"))
    store = LabelStore(folder / "labels.sqlite")
    preds = predictions(args.series)
    t = time.perf_counter()
    store.record_predictions(preds)
    print(f"record_predictions: {args.series} series in {time.perf_counter() - t:.2f} s (one transaction)")
    for mode in ("FULL", "NORMAL"):
        ms = commit_latency(store, 200, mode)
        print(f"correct() with synchronous={mode}: median {statistics.median(ms):.2f} ms, "
              f"p95 {sorted(ms)[int(len(ms) * 0.95)]:.2f} ms")
    store._conn.execute("PRAGMA synchronous = FULL")
    t = time.perf_counter()
    records = store.records()
    print(f"records(): {len(records)} series in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    store.current("1.2.7")
    print(f"current(): {(time.perf_counter() - t) * 1000:.2f} ms")
    size = sum(p.stat().st_size for p in folder.glob("labels.sqlite*"))
    print(f"file size: {size / 1e6:.1f} MB for {args.series} predictions")
    store.close()


if __name__ == "__main__":
    main()
