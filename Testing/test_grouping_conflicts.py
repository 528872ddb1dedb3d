"""Grouping that notices contradictions (issue 17, item 5).

Files of another series carrying the same SeriesInstanceUID are flagged with the reason and sent to review;
duplicate SOPInstanceUIDs are told, and only true copies of one instance are counted once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from dicom_factory import SAGITTAL, write_series
from pydicom.uid import generate_uid

from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import FolderSource
from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.pydicom_compat import save_dataset
from SeriesClassifierLib.run.pipeline import classify


def _rewrite(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    if "SOPInstanceUID" in changes:
        ds.file_meta.MediaStorageSOPInstanceUID = changes["SOPInstanceUID"]
    save_dataset(ds, path)


def _two_series_one_uid(root: Path) -> tuple[str, list[Path]]:
    """An axial series and a sagittal one of another scan, the second rewritten to the first's UID."""
    uid = write_series(root / "ax", "T2 axial", n_slices=4, size=8, number=3)
    write_series(root / "sag", "T1 sagittal", n_slices=4, iop=SAGITTAL, size=8, number=7)
    other_frame = generate_uid()
    for f in sorted((root / "sag").glob("*.dcm")):
        _rewrite(f, SeriesInstanceUID=uid, FrameOfReferenceUID=other_frame)
    for f in sorted((root / "ax").glob("*.dcm")):
        _rewrite(f, FrameOfReferenceUID=generate_uid(entropy_srcs=["ax"]))
    return uid, sorted(root.rglob("*.dcm"))


def test_files_of_another_series_under_one_uid_are_flagged_with_the_reason(tmp_path):
    uid, _ = _two_series_one_uid(tmp_path)
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.n_images == 8
    text = " | ".join(series.conflicts)
    for attribute in ("FrameOfReferenceUID", "SeriesNumber", "SeriesDescription"):
        assert f"disagree on {attribute}" in text
    assert "4 with 'T1 sagittal'" in text


def test_a_merged_series_is_never_left_unreviewed(tmp_path):
    uid, _ = _two_series_one_uid(tmp_path)
    (prediction,) = classify(tmp_path, load_bundle(load_cnn=False), use_cnn=False)
    assert prediction.needs_review
    assert any("disagree on FrameOfReferenceUID" in r for r in prediction.reasons)


def test_different_image_sizes_in_one_series_are_a_conflict(tmp_path):
    write_series(tmp_path, "T2", n_slices=3, size=8)
    files = sorted(tmp_path.glob("*.dcm"))
    ds = pydicom.dcmread(files[2])
    ds.Rows = ds.Columns = 4
    ds.PixelData = bytes(4 * 4 * 2)
    save_dataset(ds, files[2])
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert any("different image sizes (4×4, 8×8)" in c for c in series.conflicts), series.conflicts


def test_a_good_series_has_no_conflicts(tmp_path):
    write_series(tmp_path, "T2", n_slices=5, size=8)
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.conflicts == [] and series.warnings == []


def test_a_sop_uid_reused_by_another_series_drops_no_file(tmp_path):
    good = write_series(tmp_path / "good", "T2", n_slices=3, size=8)
    other = write_series(tmp_path / "other", "FLAIR", n_slices=3, size=8, number=2)
    stolen = pydicom.dcmread(sorted((tmp_path / "good").glob("*.dcm"))[1]).SOPInstanceUID
    _rewrite(sorted((tmp_path / "other").glob("*.dcm"))[0], SOPInstanceUID=stolen)
    refs = {r.series_uid: r for r in FolderSource(tmp_path)}
    assert len(refs[good].files) == 3 and len(refs[other].files) == 3
    for uid in (good, other):
        series = read_series(refs[uid])
        assert any("reusing another file's SOPInstanceUID" in w for w in series.warnings), series.warnings


def test_ten_images_sharing_one_sop_uid_are_all_kept_and_told(tmp_path):
    write_series(tmp_path, "T2", n_slices=10, size=8)
    files = sorted(tmp_path.glob("*.dcm"))
    shared = generate_uid()
    for f in files:
        _rewrite(f, SOPInstanceUID=shared)
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.n_images == 10
    assert any(w.startswith("9 file(s) reusing another file's SOPInstanceUID") for w in series.warnings)


@pytest.mark.parametrize("copies", [1, 3])
def test_true_copies_of_an_instance_count_once_and_are_told(tmp_path, copies):
    write_series(tmp_path / "s", "T2", n_slices=3, size=8)
    first = sorted((tmp_path / "s").glob("*.dcm"))[0]
    for i in range(copies):
        shutil.copy(first, tmp_path / "s" / f"zz_copy{i}.dcm")
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.n_images == 3
    assert any(w.startswith(f"{copies} duplicate file(s) of one instance, counted once") for w in series.warnings)
    assert series.conflicts == []
