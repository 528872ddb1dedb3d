from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    recipe_headers,
    write_classic_series,
    write_enhanced_series,
    write_sr,
)

from SeriesClassifierLib.dicom import headers
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.orientation import slice_normal
from SeriesClassifierLib.dicom.sources import FolderSource
from SeriesClassifierLib.series import SeriesRef


def one_ref(folder):
    refs = list(FolderSource(folder))
    assert len(refs) == 1
    return refs[0]


@pytest.fixture
def count_full_reads(monkeypatch):
    calls = []
    real = headers._read_header

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(headers, "_read_header", counting)
    return calls


def test_classic_series_reads_three_full_headers_of_many(tmp_path, count_full_reads):
    h = recipe_headers("FLAIR_2D", np.random.default_rng(1))
    write_classic_series(tmp_path, h, n=40, iop=SAGITTAL)
    s = read_series(one_ref(tmp_path))
    assert len(count_full_reads) == 3
    assert s.n_images == 40 and s.n_frames == 40
    assert s.orientation == "SAGITTAL"
    assert s.header["RepetitionTime"] == pytest.approx(h["RepetitionTime"])
    assert s.header["InversionTime"] == pytest.approx(h["InversionTime"])
    assert s.header["ScanningSequence"] == ["SE", "IR"]
    assert s.header["MRAcquisitionType"] == "2D"
    assert s.geometry.spacing_between_slices == pytest.approx(5.0)
    # files come back sorted along the slice normal
    normal = slice_normal(SAGITTAL)
    along = [float(np.dot(normal, p)) for p in s.geometry.positions]
    assert along == sorted(along) and len(along) == 40


def test_database_refs_without_instances_still_get_geometry(tmp_path, count_full_reads):
    write_classic_series(tmp_path, recipe_headers("T2_2D", np.random.default_rng(2)), n=12, iop=CORONAL)
    folder_ref = one_ref(tmp_path)
    bare = SeriesRef(series_uid=folder_ref.series_uid, files=list(reversed(folder_ref.files)))
    s = read_series(bare)
    assert s.orientation == "CORONAL" and s.n_images == 12
    assert len(count_full_reads) == 3
    assert s.files == read_series(folder_ref).files


def test_dwi_b_values_across_the_series(tmp_path):
    write_classic_series(tmp_path, recipe_headers("DWI", np.random.default_rng(3)), n=10)
    s = read_series(one_ref(tmp_path))
    assert s.header["BValues"] == [0.0, 1000.0]
    assert s.header["ImagesPerPosition"] == pytest.approx(2.0)
    assert "DIFFUSION" in s.header["ImageType"]


@pytest.mark.parametrize("vendor", ["siemens", "ge", "philips"])
def test_private_b_values(tmp_path, vendor):
    write_classic_series(tmp_path, recipe_headers("DWI", np.random.default_rng(4)), n=6, vendor_b=vendor)
    s = read_series(one_ref(tmp_path))
    assert s.header["BValues"] == [0.0, 1000.0]  # GE's 1e9 offset removed


def test_enhanced_multiframe_values_from_functional_groups(tmp_path, count_full_reads):
    h = recipe_headers("FLAIR_2D", np.random.default_rng(5))
    write_enhanced_series(tmp_path / "e.dcm", h, frames=8, iop=AXIAL)
    s = read_series(one_ref(tmp_path))
    assert len(count_full_reads) == 1
    assert s.n_images == 1 and s.n_frames == 8
    assert s.header["RepetitionTime"] == pytest.approx(h["RepetitionTime"])
    assert s.header["EchoTime"] == pytest.approx(h["EchoTime"])
    assert s.header["InversionTime"] == pytest.approx(h["InversionTime"])
    assert s.header["Enhanced"] is True
    assert s.orientation == "AXIAL" and len(s.geometry.positions) == 8
    assert s.geometry.spacing_between_slices == pytest.approx(4.0)


def test_enhanced_diffusion_b_values_per_frame(tmp_path):
    write_enhanced_series(tmp_path / "d.dcm", recipe_headers("DWI", np.random.default_rng(6)), frames=6,
                          b_values=[0, 500, 1000])
    s = read_series(one_ref(tmp_path))
    assert s.header["BValues"] == [0.0, 500.0, 1000.0]
    assert s.header["ImagesPerPosition"] == pytest.approx(3.0)


def test_mosaic_tile_count_gives_the_tile_matrix(tmp_path):
    h = dict(recipe_headers("DWI", np.random.default_rng(7)))
    h["ImageType"] = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"]
    uid, files = write_classic_series(tmp_path, h, n=2)
    import pydicom

    for f in files:  # 8×8 images holding 4 tiles of 4×4
        ds = pydicom.dcmread(f)
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0A, "US", 4)
        ds.save_as(f)
    s = read_series(one_ref(tmp_path))
    assert s.header["MosaicImages"] == 4
    assert (s.header["Rows"], s.header["Columns"]) == (4, 4)


def test_three_plane_localizer_is_mixed(tmp_path):
    h = recipe_headers("T1_2D_PRE", np.random.default_rng(8))
    write_classic_series(tmp_path, h, n=9, iops=[AXIAL, SAGITTAL, CORONAL])
    s = read_series(one_ref(tmp_path))
    assert s.orientation == "MIXED" and s.n_images == 9


def test_structured_report_is_skipped_with_the_reason(tmp_path):
    write_sr(tmp_path / "sr.dcm")
    s = read_series(one_ref(tmp_path))
    assert s.skipped and "structured report" in s.skip_reason


def test_other_modalities_are_skipped(tmp_path):
    write_classic_series(tmp_path, recipe_headers("T2_2D", np.random.default_rng(9)), n=2, modality="CT")
    s = read_series(one_ref(tmp_path))
    assert s.skipped and "modality CT" in s.skip_reason


def test_a_broken_file_is_a_warning_not_a_failure(tmp_path):
    uid, files = write_classic_series(tmp_path, recipe_headers("T2_2D", np.random.default_rng(10)), n=5)
    ref = one_ref(tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:150])  # cut after the grouping pass
    s = read_series(ref)
    assert not s.skipped
    assert s.n_images == 5 and s.header["RepetitionTime"] is not None
    assert any(str(files[2]) in w for w in s.warnings)


def test_no_files_left(tmp_path):
    ref = SeriesRef(series_uid="1.2", files=[], missing=[tmp_path / "gone.dcm"])
    s = read_series(ref)
    assert s.skipped and "missing" in s.skip_reason


def test_precache_tags_name_the_forests_standard_tags():
    from SeriesClassifierLib.dicom.headers import PRECACHE_TAGS

    assert all(len(t) == 9 and t[4] == "," for t in PRECACHE_TAGS)
    # RepetitionTime, EchoTime, InversionTime, ImageType, DiffusionBValue
    assert {"0018,0080", "0018,0081", "0018,0082", "0008,0008", "0018,9087"} <= set(PRECACHE_TAGS)


def test_large_private_blobs_are_read_when_asked_for_after_the_bounded_read(tmp_path):
    """A Siemens CSA header (tens of KB) is deferred while the header is read within the budgets; asking for
    it later must read it from the file, not fail on the closed bounded reader (every real Siemens series
    did: 'seek of closed file')."""
    import pydicom

    from SeriesClassifierLib.pydicom_compat import save_dataset

    uid, files = write_classic_series(tmp_path / "s", recipe_headers("T1_3D_PRE", np.random.default_rng(0)), n=3)
    blob = bytes(range(256)) * 256  # 64 KB, above the deferral size
    for f in files:
        ds = pydicom.dcmread(f)
        ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", blob)
        save_dataset(ds, f)
    series = read_series(next(iter(FolderSource(tmp_path))))
    assert not series.skipped, series.skip_reason
    header = headers._read_header(files[0])
    assert header[0x0029, 0x1010].value == blob


@pytest.mark.parametrize("tag,creator", [(0x0029, "SIEMENS CSA HEADER"), (0x0021, "SIEMENS MR SDS 01")])
def test_the_siemens_sequence_program_is_read_from_the_protocol_text(tmp_path, tag, creator):
    """syngo files keep the protocol in the CSA series header (0029,1020), XA ones in (0021,1019); its
    tSequenceFileName names the program (a research pCASL whose ImageType says nothing of ASL)."""
    import pydicom

    from SeriesClassifierLib.pydicom_compat import save_dataset

    uid, files = write_classic_series(tmp_path / "s", recipe_headers("T1_3D_PRE", np.random.default_rng(0)), n=2)
    protocol = b'### ASCCONV BEGIN ###\ntProtocolName\t = \t""pcasl""\n' \
               b'tSequenceFileName\t = \t""%CustomerSeq%\\ep2d_pcasl_ve11c""\n### ASCCONV END ###\n'
    for f in files:
        ds = pydicom.dcmread(f)
        ds.private_block(tag, creator, create=True).add_new(0x20 if tag == 0x0029 else 0x19, "OB", protocol * 200)
        save_dataset(ds, f)
    series = read_series(next(iter(FolderSource(tmp_path))))
    assert series.header["SiemensSequenceFile"] == "%CustomerSeq%\\ep2d_pcasl_ve11c"


def test_a_file_without_a_protocol_names_no_program(tmp_path):
    write_classic_series(tmp_path / "s", recipe_headers("T2_2D", np.random.default_rng(0)), n=2)
    assert read_series(next(iter(FolderSource(tmp_path)))).header["SiemensSequenceFile"] == ""
