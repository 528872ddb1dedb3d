"""A fast header corpus: the forest's training rows without rendering anatomy (the generating half).

The metadata forest learns from header records only (the engine's ``Series`` after header reading).
``header_studies`` plans studies exactly as ``generate_studies`` does (same profiles, seeds, protocols,
names, mess), replaces the renderer by ``header_render`` (the real slice geometry and frame structure:
b-values, time points, echoes, signedness, with 2×2 placeholder pixels) and writes the DICOM files with
the real writer (the declared matrix in Rows/Columns, no PixelData; shared elements encoded once, the
files byte-identical to the slow path). ``training.header_rows`` reads them back with the engine's
header reader and writes the rows; ``seriesclassifier synth OUT.jsonl.gz --headers-only`` joins the two.
The generator stays independent of the classifier: nothing here reads headers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

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
        if part == "b0map":  # GE and Philips keep the map's magnitude in its series, after the map (habits.py)
            return (2 if extra.get("b0_with_magnitude") else 1), {}, True
        if part.startswith("phase"):
            return 1, {}, True
        if part == "sepi":
            return 1, {}, False
        return 2, {"echo_numbers": [1, 2]}, False
    if seq == "OTHER" and extra.get("other_kind") == "PC":  # cine: one volume per cardiac phase
        n, velocity = max(int(spec.n_temporal), 1), extra.get("pc_part") == "phase"
        return (n, {"temporal_indices": list(range(n))}, velocity) if n > 1 else (1, {}, velocity)
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


def header_studies(
    n_studies: int,
    seed: int,
    profiles: list[str] | tuple[str, ...] | None = None,
    start: int = 0,
    study_type: str | None = None,
    scratch: str | Path | None = None,
) -> Iterator[tuple[Path, list[LabelRow]]]:
    """Studies ``start … start+n_studies-1`` of ``seed`` as header-only files, one at a time.

    Yields (study folder, label rows); the folder is deleted when the consumer asks for the next study.
    The plans (names, parameters, mess) are those ``generate_studies`` gives the same seed and index.
    """
    chosen = get_profiles(profiles)
    with tempfile.TemporaryDirectory(prefix="synth_headers_", dir=scratch) as tmp:
        for i in range(start, start + n_studies):
            root = Path(tmp) / f"s{i}"
            rows = generate_study(root, chosen[i % len(chosen)], seed, i, make_header_phantom, header_render,
                                  study_type)
            yield root, rows
            shutil.rmtree(root, ignore_errors=True)

