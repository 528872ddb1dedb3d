"""Time the generator: seconds per study and per series, split into plan / phantom / render / write.

    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py --studies 6 --out /work/scratch/bench_synth

Prints figures; asserts nothing (machine load varies).
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict
from pathlib import Path

from SeriesClassifierLib.synth import generate as gen
from SeriesClassifierLib.synth import writer
from SeriesClassifierLib.synth.profiles import TRAINING_PROFILES, get_profiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", type=Path, default=Path("/work/scratch/bench_synth"))
    parser.add_argument("--profile", nargs="+", default=list(TRAINING_PROFILES))
    args = parser.parse_args(argv)
    from SeriesClassifierLib.synth.anatomy import make_phantom
    from SeriesClassifierLib.synth.render import render_series

    times: dict[str, float] = defaultdict(float)
    per_class: dict[str, list[float]] = defaultdict(list)

    def timed(name, fn):
        def run(*a, **k):
            t = time.perf_counter()
            result = fn(*a, **k)
            dt = time.perf_counter() - t
            times[name] += dt
            if name in ("render", "write"):
                per_class[f"{a[0].sequence} {name}"].append(dt)
            return result

        return run

    original_write = gen.write_series
    gen.write_series = timed("write", writer.write_series)
    original_plan = gen.plan_study
    gen.plan_study = timed("plan", original_plan)
    if args.out.exists():
        shutil.rmtree(args.out)
    profiles = get_profiles(args.profile)
    t0 = time.perf_counter()
    n_series, sizes = 0, []
    try:
        for i in range(args.studies):
            t = time.perf_counter()
            rows = gen.generate_study(args.out, profiles[i % len(profiles)], args.seed, i,
                                      timed("phantom", make_phantom), timed("render", render_series))
            n_series += len(rows)
            sizes.append((len(rows), time.perf_counter() - t))
    finally:
        gen.write_series, gen.plan_study = original_write, original_plan
    total = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.studies} studies, {n_series} series in {total:.1f} s")
    print(f"  per study  {total / args.studies:6.2f} s   per series {total / max(n_series, 1):6.3f} s")
    for k in ("plan", "phantom", "render", "write"):
        print(f"  {k:8s} {times[k]:7.2f} s total ({times[k] / args.studies:6.2f} s per study)")
    for n, dt in sizes:
        print(f"  study with {n:2d} series: {dt:6.2f} s")
    print(f"  disk {disk / 1e6:.1f} MB ({disk / 1e6 / args.studies:.1f} MB per study)")
    print("  seconds per series by class and step (mean, n), costliest first:")
    for key, values in sorted(per_class.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {key:26s} {sum(values) / len(values):6.3f}  {len(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
