"""One reading of b-values and mosaic counts for both models (dicom/tags.py)."""

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
