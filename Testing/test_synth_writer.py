"""The DICOM writer on hand-built RenderedSeries: classic, mosaic, enhanced; pixels, geometry, private tags."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from synth_fakes import fake_render, make_spec, study_context, write_fake_series

from SeriesClassifierLib.synth.writer import SeriesContext, write_series


def test_classic_series_one_file_per_frame_with_geometry(tmp_path):
    spec = make_spec("t2_tse", "siemens_skyra_3t", rows=64, columns=64, n_slices=10)
    rendered, paths = write_fake_series(tmp_path, spec, "siemens_skyra_3t")
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
    rendered, paths = write_fake_series(tmp_path, spec, "philips_achieva_15t")
    ds = pydicom.dcmread(paths[1])
    assert float(ds.RescaleSlope) != 1.0
    arr = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.allclose(arr, rendered.frames[1], atol=float(ds.RescaleSlope))


def test_siemens_phase_uses_slope_two_intercept_minus_4096(tmp_path):
    spec = make_spec("swi_phase", "siemens_skyra_3t", rows=32, columns=32, n_slices=4)
    rendered, paths = write_fake_series(tmp_path, spec, "siemens_skyra_3t")
    ds = pydicom.dcmread(paths[0])
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (2.0, -4096.0)
    assert ds.ImageType[2] == "P"
    arr = ds.pixel_array * 2.0 - 4096
    assert np.allclose(arr, rendered.frames[0], atol=2.0)


def test_ge_phase_is_signed_int16(tmp_path):
    spec = make_spec("swi_phase", "ge_signa_premier_3t", rows=32, columns=32, n_slices=4)
    rendered, paths = write_fake_series(tmp_path, spec, "ge_signa_premier_3t")
    ds = pydicom.dcmread(paths[0])
    assert ds.PixelRepresentation == 1
    assert ds.pixel_array.min() < 0


@pytest.mark.parametrize("profile,tag", [
    ("siemens_skyra_3t", (0x0019, 0x100C)), ("ge_signa_premier_3t", (0x0043, 0x1039)),
    ("philips_achieva_15t", (0x2001, 0x1003)),
])
def test_vendor_private_b_value_tags(tmp_path, profile, tag):
    spec = make_spec("dwi", profile, rows=32, columns=32, n_slices=4, b_values=(0.0, 1000.0))
    _, paths = write_fake_series(tmp_path, spec, profile, storage="classic")
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
    rendered, paths = write_fake_series(tmp_path, spec, "siemens_skyra_3t", storage="mosaic")
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
    rendered, paths = write_fake_series(tmp_path, spec, "philips_ingenia_3t", storage="enhanced")
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
    _, paths = write_fake_series(tmp_path, spec, "siemens_xa_vida_3t", storage="enhanced")
    ds = pydicom.dcmread(paths[0])
    iops = {tuple(round(float(x), 3) for x in f.PlaneOrientationSequence[0].ImageOrientationPatient)
            for f in ds.PerFrameFunctionalGroupsSequence}
    assert len(iops) == 4
    assert ds.ImageType[0] == "DERIVED"


def test_drop_tags_removes_optional_attributes(tmp_path):
    spec = make_spec("flair_2d", "ge_optima_15t", rows=32, columns=32, n_slices=2)
    spec.extra["drop_tags"] = ["InversionTime", "EchoTrainLength", "SeriesDescription"]
    _, paths = write_fake_series(tmp_path, spec, "ge_optima_15t")
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
    rendered, paths = write_fake_series(tmp_path, spec, "ge_signa_premier_3t")
    ds = pydicom.dcmread(paths[0])
    assert float(ds.RescaleSlope) == pytest.approx(1e-6)
    assert np.allclose(ds.pixel_array * float(ds.RescaleSlope), rendered.frames[0] * 1e-6, atol=1e-6)
    assert 0 < float(ds.WindowWidth) < 0.01


@pytest.mark.parametrize("storage", ["enhanced", "mosaic", "classic"])
def test_dti_volumes_share_slice_positions(tmp_path, storage):
    spec = make_spec("dti", "siemens_xa_vida_3t", rows=16, columns=16, n_slices=3, b_values=(0.0,) + (1000.0,) * 4)
    rendered, paths = write_fake_series(tmp_path, spec, "siemens_xa_vida_3t", storage=storage)
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
