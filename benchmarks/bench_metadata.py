"""Benchmark: series per second on the metadata path, next to the pydicom floor.

Builds (once) a header-focused archive with the project's generator, swapping its image
renderer for a cheap one (16×16 zero images, the generator's own slice geometry and
per-frame b-values/time points), so 1,000+ series are written in minutes. Then measures:

- grouping: ``iter_series_refs`` over the whole tree (touches every file);
- headers: ``read_series`` per series (up to 3 full header reads + geometry);
- forest: feature extraction + prediction per series (the bundled forest);
- the floor: pydicom alone reading ONE header per series (``dcmread(stop_before_pixels=True)``
  of the series' first file), the least any header classifier must do;
- for comparison: pydicom reading every file's header (what a naive reader does).

Usage (the figures in the report: 72 studies = 816 series, plus a 230-series held-out header archive):
    python benchmarks/bench_metadata.py --archive /work/data/bench_archive --studies 72 --also /work/data/hdr_holdout
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def build_archive(out: Path, studies: int, seed: int) -> None:
    from SeriesClassifierLib.synth.flat import FlatPhantom, flat_render
    from SeriesClassifierLib.synth.generate import generate_studies

    if (out / "labels.csv").is_file() and (out / ".complete").is_file():
        return
    t0 = time.time()
    generate_studies(out, studies, seed, make_phantom=lambda rng: FlatPhantom(), render=flat_render)
    (out / ".complete").write_text("ok")
    print(f"archive: {studies} studies written in {time.time() - t0:.0f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", default="/work/data/bench_archive")
    p.add_argument("--also", nargs="*", default=[], help="more existing DICOM folders measured together with it")
    p.add_argument("--studies", type=int, default=70)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--models", help="models folder (default: bundled)")
    args = p.parse_args(argv)
    import pydicom

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.models.features import FeatureExtractor  # noqa: F401 - import cost outside the timings

    archive = Path(args.archive)
    build_archive(archive, args.studies, args.seed)
    folders = [archive, *(Path(a) for a in args.also)]
    n_files = sum(1 for folder in folders for _, _, files in os.walk(folder) for f in files
                  if f not in ("labels.csv", ".complete"))

    t0 = time.perf_counter()
    refs = [r for folder in folders for r in iter_series_refs(folder)]
    t_group = time.perf_counter() - t0
    t0 = time.perf_counter()
    series = [read_series(r) for r in refs]
    t_headers = time.perf_counter() - t0
    bundle = load_bundle(args.models, load_cnn=False)
    usable = [s for s in series if not s.skipped]
    t0 = time.perf_counter()
    bundle.forest.predict_many(usable)
    t_forest = time.perf_counter() - t0

    t0 = time.perf_counter()
    for r in refs:
        pydicom.dcmread(r.files[0], stop_before_pixels=True)
    t_floor = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in refs:
        for f in r.files:
            pydicom.dcmread(f, stop_before_pixels=True)
    t_naive = time.perf_counter() - t0

    n = len(refs)
    total = t_group + t_headers + t_forest
    print(f"{', '.join(map(str, folders))}: {n} series, {n_files} files ({n_files / n:.1f} files/series)")
    print(f"  grouping (every file)      {t_group:7.2f} s  {1000 * t_group / n_files:6.3f} ms/file")
    print(f"  header reading             {t_headers:7.2f} s  {1000 * t_headers / n:6.2f} ms/series")
    print(f"  forest (features+predict)  {t_forest:7.2f} s  {1000 * t_forest / max(len(usable), 1):6.2f} ms/series")
    print(f"  metadata path total        {total:7.2f} s  {n / total:7.1f} series/s")
    print(f"  floor: pydicom, 1 header/series  {t_floor:7.2f} s  {n / t_floor:7.1f} series/s")
    print(f"  naive: pydicom, every header     {t_naive:7.2f} s  {n / t_naive:7.1f} series/s")
    print(f"  ratio metadata path / floor: {total / t_floor:.2f}x the floor's time; "
          f"naive / floor: {t_naive / t_floor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
