"""The engine on pydicom 2.4 (Slicer 5.6/5.8) as on pydicom 3: writing files, one frame of a multi-frame object.

Under pydicom 3 the 2.4 paths are forced (as they run in the Python 3.9 CI run for real)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from SeriesClassifierLib import pydicom_compat as dicom_compat


def _multiframe(n_frames=3, rows=4, cols=5) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n_frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (np.arange(n_frames * rows * cols, dtype=np.uint16)).tobytes()
    return ds


@pytest.fixture(params=["installed", "pydicom-2.4 paths"])
def compat(request, monkeypatch):
    if request.param != "installed":
        monkeypatch.setattr(dicom_compat, "PYDICOM_VERSION", (2, 4))
        monkeypatch.setattr(dicom_compat, "HAS_PIXELS_MODULE", False)
        original = Dataset.save_as

        def save_as_24(self, filename, *args, **kwargs):  # pydicom 2.4 has no enforce_file_format
            if "enforce_file_format" in kwargs:
                raise TypeError("save_as() got an unexpected keyword argument 'enforce_file_format'")
            return original(self, filename, *args, **kwargs)

        monkeypatch.setattr(Dataset, "save_as", save_as_24)
        monkeypatch.delattr(pydicom, "pixels", raising=False)
    return dicom_compat


def test_save_and_read_a_frame(compat, tmp_path):
    path = tmp_path / "mf.dcm"
    compat.save_dataset(_multiframe(), path)
    assert path.read_bytes()[128:132] == b"DICM"  # a Part 10 file with preamble and meta
    frame = compat.frame_pixels(path, 2)
    np.testing.assert_array_equal(frame, np.arange(40, 60).reshape(4, 5))


def test_the_engine_reads_a_multiframe_slice_with_either_pydicom(compat, tmp_path):
    from SeriesClassifierLib.dicom.slices import ImageRef, read_slice

    path = tmp_path / "mf.dcm"
    compat.save_dataset(_multiframe(), path)
    ref = ImageRef(path=path, frame=1)
    np.testing.assert_array_equal(read_slice(ref), np.arange(20, 40, dtype=np.float32).reshape(4, 5))


def test_the_synthetic_writer_works_with_either_pydicom(compat, tmp_path):
    from SeriesClassifierLib.synth import writer

    ds = _multiframe(1)
    writer._save(ds, tmp_path / "one.dcm")
    assert pydicom.dcmread(tmp_path / "one.dcm").SOPInstanceUID == ds.SOPInstanceUID


def test_api_check_passes_here():
    assert dicom_compat.api_problems() == []
