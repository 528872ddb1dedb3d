"""What reading a run's repetitions costs beside the CNN's own slices (prints figures; asserts nothing).

    python benchmarks/bench_dynamics.py --data REALDEV

For every series of REALDEV (any folder of series; the real development set by default) with enough
repetitions at one location for a pixel fact, times, in one run on this machine: the CNN's K-slice read
and preprocessing (``sample_series``), and the extra read of the repetitions plus the measures
(``read_repeats`` + ``dynamics.measure``). Series with fewer repetitions cost nothing extra (not read).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_forest import best_of  # benchmarks/ is the script's folder, so first on sys.path


def main() -> int:
    from SeriesClassifierLib.dicom.dynamics import FEWEST, measure, pixel_facts
    from SeriesClassifierLib.dicom.slices import build_stack, read_repeats, sample_series
    from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    args = p.parse_args()
    total_slices = total_repeats = 0.0
    n_all = n_read = 0
    print(f"{'series':40s} {'repeats':>7s} {'slices ms':>9s} {'repeats ms':>10s}  facts")
    for s in read_all_series(resolve_refs(args.data)):
        if s.skipped:
            continue
        try:
            stack = build_stack(s.files)
        except Exception:  # noqa: BLE001 - no pixels: the CNN does not read this series either
            continue
        n_all += 1
        slices = best_of(3, lambda files=s.files, st=stack: sample_series(files, stack=st))
        total_slices += slices
        if len(stack.repeats) < FEWEST:
            continue
        n_read += 1
        repeats = best_of(3, lambda refs=stack.repeats: measure(read_repeats(refs)))
        total_repeats += repeats
        facts = sorted(pixel_facts(measure(read_repeats(stack.repeats))))
        name = (s.header.get("SeriesDescription") or s.series_uid)[:40]
        print(f"{name:40s} {len(stack.repeats):7d} {1000 * slices:9.0f} {1000 * repeats:10.0f}  {', '.join(facts)}")
    ratio = total_repeats / max(total_slices, 1e-9)
    print(f"\n{n_read} of {n_all} series read their repetitions; over all {n_all}: slices "
          f"{1000 * total_slices:.0f} ms, repetitions {1000 * total_repeats:.0f} ms (x{ratio:.2f} of the slices)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
