"""The pixel-exact writers of dicom_factory (classic, enhanced multi-frame, mosaic) read back as intended."""

from __future__ import annotations

import pydicom
from dicom_factory import numbered_volume, write_classic, write_enhanced, write_mosaic

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def test_written_files_read_back(tmp_path):
    files = write_classic(tmp_path / "c", numbered_volume(5))
    assert len(files) == 5
    ds = pydicom.dcmread(files[0])
    assert ds.pixel_array.shape == (32, 32)
    f = write_enhanced(tmp_path / "e", numbered_volume(4))
    assert pydicom.dcmread(f).pixel_array.shape == (4, 32, 32)
    m = write_mosaic(tmp_path / "m", [numbered_volume(5, 16, 16)], [0])
    assert pydicom.dcmread(m[0]).pixel_array.shape == (48, 48)  # ceil(sqrt(5)) = 3 tiles per side
