"""A fast header corpus: the forest's training rows without rendering anatomy.

The metadata forest learns from header records only (the engine's ``Series`` after header
reading). ``generate_header_rows`` plans studies exactly as ``generate_studies`` does (same
profiles, seeds, protocols, names, mess), replaces the renderer by ``header_render`` (the real
slice geometry, the real frame structure: b-values, time points, echoes, signedness, but 2×2
placeholder pixels), writes the DICOM files with the real writer (the declared matrix in
Rows/Columns, no PixelData), reads them back with the real header reader
(``sources.iter_series_refs`` → ``headers.read_series`` → ``features.add_study_context``), and
keeps the records with their labels. What the forest sees is what the engine reads from the files.

    python -m SeriesClassifierLib.synth.header_corpus OUT.jsonl.gz --studies 300 --seed 1 --profile training
    seriesclassifier synth OUT.jsonl.gz --headers-only --studies 300 --seed 1

The output has the format of a bundle's ``forest_train.jsonl.gz`` (``site_training.write_base_rows``):
one JSON line per series, ``{"series": …, "labels": {…}}``, read back by ``read_base_rows``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

from .generate import LabelRow, generate_study
from .profiles import get_profiles
from .spec import RenderedSeries, SeriesSpec


class HeaderPhantom:
    """Where the head is, for slice placement only (no tissue maps): a rigid offset per subject."""

    def __init__(self, rng: np.random.Generator):
        shift = rng.normal(0.0, [4.0, 6.0, 6.0])
        self.world_to_template = np.eye(4)
        self.world_to_template[:3, 3] = -shift
        self.brain_center = np.array([0.0, -18.0, 12.0]) + shift
        self._cache: dict = {}

    def template_to_world(self, points: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.world_to_template)
        pts = np.asarray(points, float)
        return pts @ inv[:3, :3].T + inv[:3, 3]


def make_header_phantom(rng: np.random.Generator) -> HeaderPhantom:
    return HeaderPhantom(rng)


def _volumes(spec: SeriesSpec) -> tuple[int, dict, bool]:
    """(volumes, per-volume lists, signed) exactly as render.render_series lays the frames out."""
    seq, extra = spec.sequence, spec.extra
    if seq == "DWI":
        bs = [float(b) for b in spec.b_values] or [0.0, 1000.0]
        return len(bs), {"b_values": bs}, False
    if seq in ("PERFUSION_DSC", "FMRI_BOLD"):
        n = max(int(spec.n_temporal), 1)
        return n, {"temporal_indices": list(range(n))}, False
    if seq == "PERFUSION_ASL":
        if spec.derived or str(extra.get("asl_map", "")).upper() in ("CBF", "M0"):
            return 1, {}, False
        n = max(int(spec.n_temporal), 2)
        return n, {"temporal_indices": list(range(n))}, False
    if seq == "FIELDMAP":
        part = str(extra.get("fieldmap_part", "magnitude")).lower()
        if part.startswith("phase") or part == "b0map":
            return 1, {}, True
        if part == "sepi":
            return 1, {}, False
        return 2, {"echo_numbers": [1, 2]}, False
    if seq in ("PD", "T2STAR_GRE") and int(extra.get("n_echoes", 1)) > 1 and len(extra.get("echo_times") or ()) > 1:
        n = len(extra["echo_times"])
        return n, {"echo_numbers": list(range(1, n + 1))}, False
    return 1, {}, seq == "SWI_PHASE"


def header_render(spec: SeriesSpec, phantom: object, rng: np.random.Generator) -> RenderedSeries:
    """A ``RenderedSeries`` with the real geometry and frame structure and 2×2 placeholder pixels."""
    from .render import _mip_planes, slice_geometry

    planes = slice_geometry(spec, phantom, rng)
    if spec.sequence == "MRA_MIP":
        planes = _mip_planes(SimpleNamespace(spec=spec, planes=planes))
    n_vol, per_volume, signed = _volumes(spec)
    n = len(planes)
    frames = np.full((n * n_vol, 2, 2), 100.0, np.float32)
    if signed:
        frames[:, 0, 0] = -100.0
    per_frame = {key: [v for v in values for _ in range(n)] for key, values in per_volume.items()}
    return RenderedSeries(
        frames=frames,
        positions=[tuple(float(x) for x in p.origin) for p in planes] * n_vol,
        orientations=[tuple(float(x) for x in (*p.row, *p.col)) for p in planes] * n_vol,
        pixel_spacing=(float(spec.pixel_spacing[0]), float(spec.pixel_spacing[1])),
        slice_thickness=float(spec.slice_thickness),
        signed=signed,
        matrix=(int(spec.rows), int(spec.columns)),
        **per_frame,
    )


def read_study_series(study_dir: Path, rows: list[LabelRow]) -> list:
    """The engine's header records of one written study (what ``train`` reads from a corpus)."""
    from ..features import add_study_context
    from ..headers import read_series
    from ..sources import iter_series_refs

    wanted = {r.series_uid for r in rows}
    series = [read_series(ref) for ref in iter_series_refs(study_dir) if ref.series_uid in wanted]
    add_study_context(series)
    return series


def generate_header_rows(
    n_studies: int,
    seed: int,
    profiles: list[str] | tuple[str, ...] | None = None,
    out: str | Path | None = None,
    start: int = 0,
    study_type: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    scratch: str | Path | None = None,
) -> tuple[list, dict[str, dict[str, str]]]:
    """Header records and labels of ``n_studies`` generated studies (profiles in turn), without anatomy.

    Studies ``start … start+n_studies-1`` of ``seed`` get the same plans (names, parameters, mess) as
    ``generate_studies`` gives them; only pixels differ (none are stored). With ``out`` the rows are
    written as gzipped JSON lines (``site_training.write_base_rows``). Returns (series, labels by uid).
    """
    from ..site_training import write_base_rows

    chosen = get_profiles(profiles)
    all_series: list = []
    labels: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="synth_headers_", dir=scratch) as tmp:
        for k, i in enumerate(range(start, start + n_studies)):
            profile = chosen[i % len(chosen)]
            study_root = Path(tmp) / f"s{i}"
            rows = generate_study(study_root, profile, seed, i, make_header_phantom, header_render, study_type)
            series = read_study_series(study_root, rows)
            by_uid = {r.series_uid: r for r in rows}
            for s in series:
                row = asdict(by_uid[s.series_uid])
                row["field_strength"] = str(row["field_strength"])
                labels[s.series_uid] = row
            all_series += series
            _rmtree(study_root)
            if progress is not None:
                progress(k + 1, n_studies, len(series))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_base_rows(out, all_series, labels)
    return all_series, labels


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output .jsonl.gz")
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", nargs="+", default=None, help="profiles or groups (training, holdout, site)")
    parser.add_argument("--first-study", type=int, default=0)
    parser.add_argument("--study-type", default=None)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    def progress(done: int, total: int, n: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"study {done}/{total} ({n} series), {time.perf_counter() - t0:.0f} s", flush=True)

    try:
        series, _ = generate_header_rows(args.studies, args.seed, args.profile, args.out, args.first_study,
                                         args.study_type, progress)
    except ValueError as exc:
        print(f"header corpus: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"{len(series)} series in {dt:.1f} s ({dt / max(len(series), 1) * 1000:.0f} ms per series) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
