from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import (
    SAGITTAL,
    CtkIndex,
    recipe_headers,
    write_classic_series,
    write_enhanced_series,
    write_sr,
)
from pydicom.data import get_testdata_file

from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import (
    DicomDatabaseSource,
    FolderSource,
    SlicerDatabaseSource,
    SqliteDicomDatabase,
    is_slicer_database,
    iter_series_refs,
)


def make_ctk_database(db_dir: Path, files: list[Path], version: str, *, inside: bool, url_for: set | None = None):
    """Index files like Slicer does: copied into db_dir/dicom/… (relative names) or linked in place (absolute)."""
    import pydicom

    with CtkIndex(db_dir, version) as index:
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            if inside:
                rel = Path("dicom") / ds.StudyInstanceUID / ds.SeriesInstanceUID / ds.SOPInstanceUID
                (db_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, db_dir / rel)
                filename = str(rel)
            else:
                filename = str(Path(f).resolve())
            url = ""
            if url_for and ds.SOPInstanceUID in url_for:
                url, filename = Path(db_dir / filename if inside else filename).resolve().as_uri(), ""
            index.add(ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                      filename, url=url, series_number=ds.get("SeriesNumber"),
                      description=ds.get("SeriesDescription", ""), modality=ds.Modality)


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory):
    """Two studies, nested oddly, with the things real exports carry beside the images."""
    root = tmp_path_factory.mktemp("messy")
    rng = np.random.default_rng(0)
    study_a, study_b = "1.2.3.4.100", "1.2.3.4.200"
    t2, t2_files = write_classic_series(root / "A" / "x", recipe_headers("T2_2D", rng), n=6, study_uid=study_a,
                                        name_files="IM{i:05d}")  # no extension
    flair, _ = write_classic_series(root / "A" / "y" / "deeper", recipe_headers("FLAIR_2D", rng), n=4,
                                    iop=SAGITTAL, study_uid=study_a)
    t1, _ = write_classic_series(root / "B", recipe_headers("T1_2D_PRE", rng), n=3, study_uid=study_b)
    enhanced = write_enhanced_series(root / "B" / "enh.dcm", recipe_headers("DWI", rng), b_values=[0, 1000])
    sr = write_sr(root / "B" / "report.dcm", study_uid=study_b)
    (root / "README.txt").write_text("not dicom")
    (root / "A" / "empty.dcm").write_bytes(b"")
    (root / "thumbs.db").write_bytes(b"\x00" * 300)
    shutil.copy(get_testdata_file("DICOMDIR"), root / "DICOMDIR")
    # a DICOM file cut off in the middle of its header
    data = t2_files[0].read_bytes()
    (root / "A" / "truncated.dcm").write_bytes(data[:200])
    # the same instance twice (a copy beside the original)
    shutil.copy(t2_files[1], root / "A" / "copy_of_one.dcm")
    return {"root": root, "t2": t2, "flair": flair, "t1": t1, "enhanced": enhanced, "sr": sr,
            "study_a": study_a, "study_b": study_b}


def test_folder_groups_series_across_layouts(messy_folder):
    source = FolderSource(messy_folder["root"])
    refs = {r.series_uid: r for r in source}
    expected = {messy_folder[k] for k in ("t2", "flair", "t1", "enhanced", "sr")}
    assert set(refs) == expected
    assert len(refs[messy_folder["t2"]].files) == 6  # the copy is not counted twice
    assert refs[messy_folder["flair"]].study_uid == messy_folder["study_a"]
    assert refs[messy_folder["t1"]].study_uid == messy_folder["study_b"]
    assert all(len(r.instances) == len(r.files) for r in refs.values())


def test_folder_reports_corrupt_dicom_and_ignores_non_dicom(messy_folder):
    source = FolderSource(messy_folder["root"])
    list(source)
    assert len(source.problems) == 1 and "truncated.dcm" in source.problems[0]
    assert source.ignored >= 4  # README, empty file, thumbs.db, DICOMDIR


def test_folder_names_compressed_files_it_cannot_read(tmp_path, caplog):
    """A folder of gzipped DICOM (as dcm2niix's test sets ship) must not look like an empty folder."""
    import gzip
    import zipfile

    _, files = write_classic_series(tmp_path / "plain", recipe_headers("T2_2D", np.random.default_rng(1)), n=3)
    (tmp_path / "gz").mkdir()
    for f in files:
        (tmp_path / "gz" / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as z:
        z.write(files[0], files[0].name)
    source = FolderSource(tmp_path)
    with caplog.at_level("WARNING"):
        refs = list(source)
    assert len(refs) == 1 and len(refs[0].files) == 3  # the plain files are read as before
    assert len(source.compressed) == 4
    assert len(source.problems) == 1
    assert source.problems[0].startswith("4 compressed file(s) not read (gzip, zip;")
    assert "decompress" in caplog.text


def test_folder_of_only_compressed_files_says_why_nothing_was_found(tmp_path):
    import gzip

    _, files = write_classic_series(tmp_path / "x", recipe_headers("FLAIR_2D", np.random.default_rng(2)), n=2)
    for f in files:
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    source = FolderSource(tmp_path)
    assert list(source) == []
    assert len(source.problems) == 1 and source.problems[0].startswith("2 compressed file(s) not read (gzip;")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(FolderSource(tmp_path / "nope"))


def test_a_single_file_is_a_source(messy_folder):
    refs = list(iter_series_refs(messy_folder["root"] / "B" / "enh.dcm"))
    assert [r.series_uid for r in refs] == [messy_folder["enhanced"]]


def _headers_of(refs):
    out = {}
    for ref in refs:
        s = read_series(ref)
        out[s.series_uid] = (s.skip_reason, s.orientation, s.n_images, s.header.get("RepetitionTime"),
                             s.header.get("BValues"))
    return out


@pytest.mark.parametrize("version,inside", [("0.7.0", True), ("0.7.0", False), ("0.8.0", True), ("0.8.0", False)])
def test_slicer_database_gives_the_same_series_as_the_folder(messy_folder, tmp_path, version, inside):
    folder_refs = list(FolderSource(messy_folder["root"]))
    files = [f for r in folder_refs for f in r.files]
    db_dir = tmp_path / "SlicerDICOMDatabase"
    make_ctk_database(db_dir, files, version, inside=inside)
    assert is_slicer_database(db_dir) and is_slicer_database(db_dir / "ctkDICOM.sql")
    db_refs = list(iter_series_refs(db_dir))
    assert {r.series_uid for r in db_refs} == {r.series_uid for r in folder_refs}
    assert _headers_of(db_refs) == _headers_of(folder_refs)
    db = SqliteDicomDatabase(db_dir)
    assert db.schema_version == version and db.has_url == version.startswith("0.8")
    db.close()


def test_database_reports_missing_files_and_reads_urls(messy_folder, tmp_path):
    import pydicom

    folder_refs = {r.series_uid: r for r in FolderSource(messy_folder["root"])}
    t2_files = folder_refs[messy_folder["t2"]].files
    files = [f for r in folder_refs.values() for f in r.files]
    url_sop = pydicom.dcmread(t2_files[2], stop_before_pixels=True).SOPInstanceUID
    db_dir = tmp_path / "db"
    make_ctk_database(db_dir, files, "0.8.0", inside=True, url_for={url_sop})
    # one indexed file has gone since it was indexed
    gone_sop = pydicom.dcmread(t2_files[0], stop_before_pixels=True).SOPInstanceUID
    gone = next((db_dir / "dicom").rglob(str(gone_sop)))
    gone.unlink()
    refs = {r.series_uid: r for r in SlicerDatabaseSource(db_dir)}
    t2 = refs[messy_folder["t2"]]
    assert len(t2.files) == 5 and len(t2.missing) == 1  # the URL-only file is found, the deleted one reported
    series = read_series(t2)
    assert series.n_images == 5 and not series.skipped
    assert any("missing" in w and gone_sop in w for w in series.warnings)


def test_database_adapter_accepts_anything_dicomdatabase_like(messy_folder):
    """What the Slicer module does with slicer.dicomDatabase, with a stand-in object."""
    refs = {r.series_uid: r for r in FolderSource(messy_folder["root"])}

    class FakeSlicerDatabase:
        def patients(self):
            return ["1"]

        def studiesForPatient(self, patient):  # noqa: N802
            return [messy_folder["study_a"]]

        def seriesForStudy(self, study):  # noqa: N802
            return [messy_folder["t2"], messy_folder["flair"]]

        def filesForSeries(self, series):  # noqa: N802
            return [str(f) for f in refs[series].files]

    got = list(DicomDatabaseSource(FakeSlicerDatabase()))
    assert [r.series_uid for r in got] == [messy_folder["t2"], messy_folder["flair"]]
    assert read_series(got[1]).orientation == "SAGITTAL"
    only = list(DicomDatabaseSource(FakeSlicerDatabase(), series_uids=[messy_folder["flair"]]))
    assert len(only) == 1 and len(only[0].files) == 4


def test_not_a_database(tmp_path):
    with pytest.raises(FileNotFoundError, match="ctkDICOM.sql"):
        SqliteDicomDatabase(tmp_path)
    bad = tmp_path / "ctkDICOM.sql"
    sqlite3.connect(bad).execute("CREATE TABLE Images (x INT)").connection.commit()
    with pytest.raises(ValueError, match="not a CTK DICOM database"):
        SqliteDicomDatabase(tmp_path)


def _both_readers(path):
    from SeriesClassifierLib.dicom import sources

    out = []
    for reader in (sources.read_grouping_tags, sources._read_grouping_tags_pydicom):
        try:
            out.append(reader(path))
        except Exception as exc:  # noqa: BLE001 - the same failure is what we compare
            out.append(type(exc).__name__)
    return out


def test_fast_scanner_agrees_with_pydicom_on_packaged_files():
    import pydicom.data

    # the packaged folder itself: get_testdata_files would also try (and here fail) to download more
    files = sorted(p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file())
    assert len(files) > 50
    for f in files:
        fast, slow = _both_readers(Path(f))
        assert fast == slow, f


def test_fast_scanner_skips_nested_sequences(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq

    from SeriesClassifierLib.dicom import sources

    uid, files = write_classic_series(tmp_path, recipe_headers("T2_2D", np.random.default_rng(0)), n=1)
    ds = pydicom.dcmread(files[0])
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3"
    inner.ReferencedFrameNumber = "1"
    nested = Dataset()
    nested.CodeValue = "X"
    inner.PurposeOfReferenceCodeSequence = Seq([nested])
    ds.ReferencedImageSequence = Seq([inner, inner])
    ds["ReferencedImageSequence"].is_undefined_length = True
    for item in ds.ReferencedImageSequence:
        item.is_undefined_length_sequence_item = True
    ds.save_as(files[0])
    raw = files[0].read_bytes()
    assert b"\xff\xff\xff\xff" in raw[:4096]  # pydicom writes undefined-length sequences
    scanned = sources._scan_grouping_tags(files[0])
    assert scanned is not None and scanned["SeriesInstanceUID"] == uid
    fast, slow = _both_readers(files[0])
    assert fast == slow


def test_linked_folders_are_followed_once(tmp_path):
    data = tmp_path / "data"
    uid, _ = write_classic_series(data / "s1", recipe_headers("T2_2D", np.random.default_rng(0)), n=2)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(data, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    refs = list(FolderSource(root))
    assert [r.series_uid for r in refs] == [uid] and len(refs[0].files) == 2


@pytest.mark.parametrize("version,inside", [("0.7.0", False), ("0.8.0", True)])
def test_database_and_folder_classify_alike(messy_folder, tmp_path, version, inside):
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.run.pipeline import classify

    bundle = load_bundle(load_cnn=False)
    folder_refs = list(FolderSource(messy_folder["root"]))
    make_ctk_database(tmp_path / "db", [f for r in folder_refs for f in r.files], version, inside=inside)

    def summary(predictions):
        return {p.series_uid: (p.error, p.n_images, p.sequence and p.sequence.label,
                               p.sequence and round(p.sequence.probability, 6), p.orientation and p.orientation.label,
                               p.needs_review) for p in predictions}

    from_folder = summary(classify(messy_folder["root"], bundle, use_cnn=False))
    from_db = summary(classify(tmp_path / "db", bundle, use_cnn=False))
    assert from_db == from_folder
    assert sum(1 for v in from_db.values() if v[2]) == 4  # four image series classified, the SR skipped
