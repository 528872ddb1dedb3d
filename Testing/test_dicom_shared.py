"""One reading of b-values and mosaic counts for both models (dicom/tags.py)."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import recipe_headers, write_classic_series
from pydicom.dataset import Dataset

from SeriesClassifierLib.dicom import tags
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.slices import build_stack
from SeriesClassifierLib.dicom.sources import FolderSource


@pytest.mark.parametrize("vendor", ["standard", "siemens", "ge", "philips"])
def test_headers_and_slices_read_the_same_b_values(tmp_path, vendor):
    write_classic_series(tmp_path, recipe_headers("DWI", np.random.default_rng(4)), n=6, vendor_b=vendor)
    (ref,) = list(FolderSource(tmp_path))
    forest_side = read_series(ref).header["BValues"]
    stack = build_stack(ref.files)
    assert forest_side == [0.0, 1000.0]
    assert {r.b_value for r in stack.images} == {1000.0}  # the stack keeps the highest b-value, read the same way
    assert any("b-values [0.0, 1000.0]" in note for note in stack.notes)


def test_private_creator_in_another_block_is_found():
    ds = Dataset()
    ds.private_block(0x0043, "OTHER", create=True)  # takes block 0x10
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", [1_000_000_800, 8, 0, 0])
    assert (0x0043, 0x1139) in ds
    assert tags.b_value(ds) == 800.0


def test_standard_tag_wins_and_garbage_is_none():
    ds = Dataset()
    ds.DiffusionBValue = 500
    ds.add_new((0x0019, 0x100C), "IS", 1000)
    assert tags.b_value(ds) == 500.0
    assert tags.b_value(Dataset()) is None
    assert tags.to_float(b"1000\\0") == 1000.0 and tags.to_float("nan") is None and tags.to_float([]) is None


def test_mosaic_count():
    ds = Dataset()
    assert tags.mosaic_images(ds) is None
    ds.add_new((0x0019, 0x100A), "US", 36)
    assert tags.mosaic_images(ds) == 36


# ----------------------------------------------------------------------------- geometry (dicom/geometry.py)


def test_headers_and_slices_agree_on_slice_spacing(tmp_path):
    """Two b-values per location: repeated positions count once on both sides."""
    write_classic_series(tmp_path, recipe_headers("DWI", np.random.default_rng(4)), n=10)
    (ref,) = list(FolderSource(tmp_path))
    forest_side = read_series(ref).geometry.spacing_between_slices
    cnn_side = build_stack(ref.files).geometry.spacing_between_slices
    assert forest_side == pytest.approx(cnn_side)


def test_slice_spacing_ignores_order_and_repeats():
    from SeriesClassifierLib.dicom.geometry import slice_spacing

    positions = [(0, 0, z) for z in (8.0, 0.0, 4.0, 4.0, 12.0, 0.0)]
    assert slice_spacing(positions, (0, 0, 1)) == pytest.approx(4.0)
    assert slice_spacing(positions[:1], (0, 0, 1)) is None
    assert slice_spacing([(0, 0, 1.0), (0, 0, 1.0)], (0, 0, 1)) is None


@pytest.mark.torch  # Grad-CAM imports torch
def test_gradcam_files_and_slicer_overlays_share_one_voxel_to_lps_matrix():
    """Header cosines are often not exactly unit length: both writers normalise them the same way."""
    from SeriesClassifierLib.dicom.geometry import ijk_to_lps
    from SeriesClassifierLib.models.gradcam import _affine_lps
    from SeriesClassifierLib.series import Geometry
    from SeriesClassifierLib.slicer import mrml

    iop = (1.0004, 0.0, 0.0, 0.0, 0.9996, 0.0)
    positions = [(-100.0, -120.0, float(z)) for z in range(0, 20, 4)]
    geometry = Geometry(rows=64, columns=48, pixel_spacing=(0.9, 0.8), orientations=[iop], positions=positions)
    m = ijk_to_lps(geometry)
    assert np.linalg.norm(m[:3, 0]) == pytest.approx(0.8) and np.linalg.norm(m[:3, 1]) == pytest.approx(0.9)
    np.testing.assert_allclose(_affine_lps(geometry, [0, 1, 2, 3, 4]), m)
    np.testing.assert_allclose(mrml.ijk_to_ras(geometry), mrml.LPS_TO_RAS @ m)
    sub = _affine_lps(geometry, [1, 3])  # every other slice: the step doubles, the origin moves
    np.testing.assert_allclose(sub[:3, 2], 2 * m[:3, 2])
    np.testing.assert_allclose(sub[:3, 3], positions[1])
