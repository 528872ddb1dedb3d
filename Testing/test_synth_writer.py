"""The DICOM writer on hand-built RenderedSeries: classic, mosaic, enhanced; pixels, geometry, private tags."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

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


def _write(tmp_path, spec, profile_name, storage=None):
    if storage:
        spec.storage = storage
    rendered = fake_render(spec, None, np.random.default_rng(1))
    series = SeriesContext(series_uid=make_uid("test", spec.sequence, storage), series_number=3,
                           series_time="101500", coil="Head_32")
    paths = write_series(spec, rendered, study_context(profile_name), series, tmp_path, np.random.default_rng(2))
    return rendered, paths


def test_classic_series_one_file_per_frame_with_geometry(tmp_path):
    spec = make_spec("t2_tse", "siemens_skyra_3t", rows=64, columns=64, n_slices=10)
    rendered, paths = _write(tmp_path, spec, "siemens_skyra_3t")
    assert len(paths) == 10
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert ds.Rows == 64 and ds.Columns == 64
        assert np.allclose([float(x) for x in ds.ImagePositionPatient], rendered.positions[i], atol=1e-3)
        assert ds.Manufacturer == "SIEMENS" and ds.MagneticFieldStrength == 3.0
        arr = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.allclose(arr, rendered.frames[i], atol=float(ds.RescaleSlope))


def test_philips_rescales_magnitude(tmp_path):
    spec = make_spec("t2_tse", "philips_achieva_15t", rows=32, columns=32, n_slices=3)
    rendered, paths = _write(tmp_path, spec, "philips_achieva_15t")
    ds = pydicom.dcmread(paths[1])
    assert float(ds.RescaleSlope) != 1.0
    arr = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.allclose(arr, rendered.frames[1], atol=float(ds.RescaleSlope))


def test_siemens_phase_uses_slope_two_intercept_minus_4096(tmp_path):
    spec = make_spec("swi_phase", "siemens_skyra_3t", rows=32, columns=32, n_slices=4)
    rendered, paths = _write(tmp_path, spec, "siemens_skyra_3t")
    ds = pydicom.dcmread(paths[0])
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (2.0, -4096.0)
    assert ds.ImageType[2] == "P"
    arr = ds.pixel_array * 2.0 - 4096
    assert np.allclose(arr, rendered.frames[0], atol=2.0)


def test_ge_phase_is_signed_int16(tmp_path):
    spec = make_spec("swi_phase", "ge_signa_premier_3t", rows=32, columns=32, n_slices=4)
    rendered, paths = _write(tmp_path, spec, "ge_signa_premier_3t")
    ds = pydicom.dcmread(paths[0])
    assert ds.PixelRepresentation == 1
    assert ds.pixel_array.min() < 0


@pytest.mark.parametrize("profile,tag", [
    ("siemens_skyra_3t", (0x0019, 0x100C)), ("ge_signa_premier_3t", (0x0043, 0x1039)),
    ("philips_achieva_15t", (0x2001, 0x1003)),
])
def test_vendor_private_b_value_tags(tmp_path, profile, tag):
    spec = make_spec("dwi", profile, rows=32, columns=32, n_slices=4, b_values=(0.0, 1000.0))
    _, paths = _write(tmp_path, spec, profile, storage="classic")
    assert len(paths) == 8
    last = pydicom.dcmread(paths[-1])
    value = last[tag].value
    first = value[0] if isinstance(value, (list, pydicom.multival.MultiValue)) else value
    assert float(first) % 1e9 == 1000.0
    if profile != "siemens_skyra_3t":
        assert float(last.DiffusionBValue) == 1000.0
    creator = pydicom.dcmread(paths[0])[(tag[0], 0x0010)].value
    assert creator in ("SIEMENS MR HEADER", "GEMS_PARM_01", "Philips Imaging DD 001")


def test_mosaic_tiles_each_volume_and_records_count(tmp_path):
    spec = make_spec("bold", "siemens_skyra_3t", rows=32, columns=32, n_slices=10, n_temporal=3)
    rendered, paths = _write(tmp_path, spec, "siemens_skyra_3t", storage="mosaic")
    assert len(paths) == 3
    ds = pydicom.dcmread(paths[1])
    assert "MOSAIC" in ds.ImageType
    assert ds[0x0019, 0x100A].value == 10
    assert ds.Rows == 4 * 32 and ds.Columns == 4 * 32
    tile = ds.pixel_array.astype(float)
    # slice 5 of volume 1 sits at grid position (1, 1)
    assert np.allclose(tile[32:64, 32:64], rendered.frames[10 + 5], atol=1.0)
    from nibabel.nicom import csareader

    csa = csareader.read(ds[0x0029, 0x1010].value)
    assert csareader.get_n_mosaic(csa) == 10
    iop = np.asarray(rendered.orientations[0])
    assert np.allclose(csareader.get_slice_normal(csa), np.cross(iop[:3], iop[3:]), atol=1e-6)


def test_enhanced_one_file_with_per_frame_groups(tmp_path):
    spec = make_spec("dwi", "philips_ingenia_3t", rows=32, columns=32, n_slices=6, b_values=(0.0, 1000.0))
    rendered, paths = _write(tmp_path, spec, "philips_ingenia_3t", storage="enhanced")
    assert len(paths) == 1
    ds = pydicom.dcmread(paths[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
    assert int(ds.NumberOfFrames) == 12
    assert "RepetitionTime" not in ds and "EchoTime" not in ds  # they live in the functional groups
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert float(shared.MRTimingAndRelatedParametersSequence[0].RepetitionTime) == pytest.approx(spec.repetition_time)
    frames = ds.PerFrameFunctionalGroupsSequence
    assert [float(f.MRDiffusionSequence[0].DiffusionBValue) for f in frames] == rendered.b_values
    for f, pos in zip(frames, rendered.positions):
        assert np.allclose([float(x) for x in f.PlanePositionSequence[0].ImagePositionPatient], pos, atol=1e-3)
    assert ds.pixel_array.shape == (12, 32, 32)


def test_enhanced_mixed_planes_carry_per_frame_orientation(tmp_path):
    spec = make_spec("mip", "siemens_xa_vida_3t", rows=32, columns=32, n_slices=4,
                     mip_axis="IS", mip_angles=(0.0, 45.0, 90.0, 135.0))
    spec.orientation = "MIXED"
    _, paths = _write(tmp_path, spec, "siemens_xa_vida_3t", storage="enhanced")
    ds = pydicom.dcmread(paths[0])
    iops = {tuple(round(float(x), 3) for x in f.PlaneOrientationSequence[0].ImageOrientationPatient)
            for f in ds.PerFrameFunctionalGroupsSequence}
    assert len(iops) == 4
    assert ds.ImageType[0] == "DERIVED"


def test_drop_tags_removes_optional_attributes(tmp_path):
    spec = make_spec("flair_2d", "ge_optima_15t", rows=32, columns=32, n_slices=2)
    spec.extra["drop_tags"] = ["InversionTime", "EchoTrainLength", "SeriesDescription"]
    _, paths = _write(tmp_path, spec, "ge_optima_15t")
    ds = pydicom.dcmread(paths[0])
    assert "InversionTime" not in ds and "EchoTrainLength" not in ds and "SeriesDescription" not in ds
    assert "ProtocolName" in ds


def test_mismatched_positions_give_a_clear_error(tmp_path):
    spec = make_spec("t2_tse", "ge_optima_15t", rows=16, columns=16, n_slices=3)
    rendered = fake_render(spec, None, np.random.default_rng(0))
    rendered.positions = rendered.positions[:2]
    with pytest.raises(ValueError, match="3 frames but 2 positions"):
        write_series(spec, rendered, study_context("ge_optima_15t"),
                     SeriesContext("1.2.3", 1, "101010", "HEAD"), tmp_path, np.random.default_rng(0))


def test_adc_in_si_units_uses_a_tiny_rescale_slope(tmp_path):
    spec = make_spec("adc", "ge_signa_premier_3t", rows=16, columns=16, n_slices=3)
    spec.extra["adc_si_units"] = True
    rendered, paths = _write(tmp_path, spec, "ge_signa_premier_3t")
    ds = pydicom.dcmread(paths[0])
    assert float(ds.RescaleSlope) == pytest.approx(1e-6)
    assert np.allclose(ds.pixel_array * float(ds.RescaleSlope), rendered.frames[0] * 1e-6, atol=1e-6)
    assert 0 < float(ds.WindowWidth) < 0.01


@pytest.mark.parametrize("storage", ["enhanced", "mosaic", "classic"])
def test_dti_volumes_share_slice_positions(tmp_path, storage):
    spec = make_spec("dti", "siemens_xa_vida_3t", rows=16, columns=16, n_slices=3, b_values=(0.0,) + (1000.0,) * 4)
    rendered, paths = _write(tmp_path, spec, "siemens_xa_vida_3t", storage=storage)
    if storage == "mosaic":
        assert len(paths) == 5
        assert all(pydicom.dcmread(p)[0x0019, 0x100A].value == 3 for p in paths)
    elif storage == "classic":
        assert [pydicom.dcmread(p).AcquisitionNumber for p in paths] == [v + 1 for v in range(5) for _ in range(3)]
    else:
        ds = pydicom.dcmread(paths[0])
        content = [f.FrameContentSequence[0] for f in ds.PerFrameFunctionalGroupsSequence]
        assert [c.InStackPositionNumber for c in content] == [1, 2, 3] * 5
        assert [c.TemporalPositionIndex for c in content] == [v + 1 for v in range(5) for _ in range(3)]
        assert len({tuple(c.DimensionIndexValues) for c in content}) == 15
        grads = {tuple(f.MRDiffusionSequence[0].DiffusionGradientDirectionSequence[0].DiffusionGradientOrientation)
                 for f in ds.PerFrameFunctionalGroupsSequence if f.MRDiffusionSequence[0].DiffusionBValue > 0}
        assert len(grads) == 4
