"""Hand-built specs and a fake renderer for the generator's writer tests (no anatomy, no physics)."""

from __future__ import annotations

import numpy as np

from SeriesClassifierLib.synth.profiles import PROFILES
from SeriesClassifierLib.synth.protocols import _Ctx, _spec
from SeriesClassifierLib.synth.spec import RenderedSeries, SeriesSpec
from SeriesClassifierLib.synth.writer import SeriesContext, StudyContext, make_uid, write_series

_PLANES = {
    "AXIAL": (1, 0, 0, 0, 1, 0),
    "SAGITTAL": (0, 1, 0, 0, 0, -1),
    "CORONAL": (1, 0, 0, 0, 0, -1),
}


def _rot(axis: np.ndarray, deg: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    a = np.radians(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def plane_iop(plane: str, tilt=(0.0, 0.0)) -> tuple[float, ...]:
    iop = np.asarray(_PLANES[plane], float)
    r, c = iop[:3], iop[3:]
    rot = _rot(r, tilt[0]) @ _rot(c, tilt[1])
    r, c = rot @ r, rot @ c
    return tuple(float(x) for x in (*r, *c))


def fake_phantom(rng: np.random.Generator) -> object:
    return {"seed": int(rng.integers(1 << 30))}


def fake_render(spec: SeriesSpec, phantom: object, rng: np.random.Generator) -> RenderedSeries:
    """A stand-in for render.render_series: right geometry, random pixels (the writer's tests only)."""
    n_vol = max(len(spec.b_values), spec.n_temporal, int(spec.extra.get("n_echoes", 1)))
    if spec.extra.get("fieldmap_part") == "b0map" and spec.extra.get("b0_with_magnitude"):
        n_vol = 2  # a GE/Philips B0 map series: the map in Hz, then its magnitude (as synth/header_corpus lays it out)
    planes: list[tuple[float, ...]] = []
    if spec.orientation == "MIXED" and spec.sequence == "SCOUT":
        k = max(spec.n_slices // 3, 1)
        planes = [plane_iop(p) for p in ("AXIAL", "SAGITTAL", "CORONAL") for _ in range(k)]
        per = len(planes)
        positions = []
        for i, iop in enumerate(planes):
            normal = np.cross(iop[:3], iop[3:])
            positions.append(tuple(normal * ((i % k) - k / 2) * spec.slice_spacing - 100 * (np.add(iop[:3], iop[3:]))))
    elif spec.orientation == "MIXED":
        angles = spec.extra.get("mip_angles", (0.0, 60.0, 120.0))
        axis = np.array([0, 0, 1.0]) if spec.extra.get("mip_axis", "IS") == "IS" else np.array([1.0, 0, 0])
        base = np.asarray(plane_iop("CORONAL" if axis[2] else "SAGITTAL"))
        planes = []
        for a in angles:
            rot = _rot(axis, a)
            planes.append(tuple(float(x) for x in (*(rot @ base[:3]), *(rot @ base[3:]))))
        per = len(planes)
        positions = [tuple(-100 * (np.add(p[:3], p[3:]))) for p in planes]
    else:
        base = spec.extra.get("base_plane", spec.orientation if spec.orientation in _PLANES else "AXIAL")
        iop = plane_iop(base, spec.tilt_degrees)
        normal = np.cross(iop[:3], iop[3:])
        fov_r, fov_c = spec.rows * spec.pixel_spacing[0], spec.columns * spec.pixel_spacing[1]
        corner = -np.asarray(iop[:3]) * fov_c / 2 - np.asarray(iop[3:]) * fov_r / 2
        per = spec.n_slices
        planes = [iop] * per
        positions = [tuple(corner + normal * (i - per / 2) * spec.slice_spacing) for i in range(per)]
    frames = rng.uniform(0, 1000, size=(per * n_vol, spec.rows, spec.columns)).astype(np.float32)
    if spec.sequence in ("SWI_PHASE",) or spec.extra.get("fieldmap_part") == "PHASEDIFF":
        frames = frames * 8 - 4096
    b = [float(spec.b_values[v]) for v in range(n_vol) for _ in range(per)] if spec.b_values else None
    t = [v for v in range(n_vol) for _ in range(per)] if spec.n_temporal > 1 else None
    e = [v + 1 for v in range(n_vol) for _ in range(per)] if spec.extra.get("n_echoes", 1) > 1 else None
    return RenderedSeries(
        frames=frames, positions=positions * n_vol, orientations=planes * n_vol, pixel_spacing=spec.pixel_spacing,
        slice_thickness=spec.slice_thickness, signed=bool(frames.min() < 0), b_values=b, temporal_indices=t,
        echo_numbers=e,
    )


def study_context(profile_name: str) -> StudyContext:
    p = PROFILES[profile_name]
    return StudyContext(profile=p, seed_key="test", patient_id="P1", patient_name="Test^Person",
                        patient_birth_date="19800101", patient_sex="F", patient_age="040Y", patient_weight=70.0,
                        study_uid=make_uid("test", "study"), study_date="20200101", study_time="101010",
                        study_id="1", accession="A1", frame_of_reference_uid=make_uid("test", "for"),
                        device_serial="12345", station_name="MR1")


def make_spec(tech: str, profile_name: str, seed: int = 0, **overrides) -> SeriesSpec:
    rng = np.random.default_rng(seed)
    ctx = _Ctx(PROFILES[profile_name], rng, "classic")
    spec = _spec(tech, ctx, **overrides)
    spec.series_description = spec.protocol_name = f"test {tech}"
    return spec


def write_fake_series(tmp_path, spec, profile_name, storage=None):
    if storage:
        spec.storage = storage
    rendered = fake_render(spec, None, np.random.default_rng(1))
    series = SeriesContext(series_uid=make_uid("test", spec.sequence, storage), series_number=3,
                           series_time="101500", coil="Head_32")
    paths = write_series(spec, rendered, study_context(profile_name), series, tmp_path, np.random.default_rng(2))
    return rendered, paths


def small(code: str, **kw) -> SeriesSpec:
    """A small but anatomically sensible spec: 64×64, 3.6 mm pixels (230 mm FOV), 5 mm slices."""
    base = dict(
        sequence=code,
        orientation="AXIAL",
        rows=64,
        columns=64,
        pixel_spacing=(3.6, 3.6),
        slice_thickness=5.0,
        slice_spacing=6.0,
        n_slices=12,
        field_strength=3.0,
    )
    if code in ("DWI",):
        base["b_values"] = (0.0, 1000.0)
    if code in ("PERFUSION_DSC", "FMRI_BOLD", "PERFUSION_ASL"):
        base["n_temporal"] = 6 if code != "PERFUSION_DSC" else 30
    if code in ("PERFUSION_DSC",):
        base["contrast"] = True
    if code in ("SWI_MINIP",):
        base["extra"] = {"minip_slab_mm": 12.0}
    if code == "SCOUT":
        base.update(orientation="MIXED", n_slices=9)
    if code in ("MRA_MIP",):
        base.update(n_slices=3, orientation="CORONAL")
    base.update(kw)
    return SeriesSpec(**base)
