"""The store opened only if it is ours; store, disk and path faults are messages (issue 17, items 7 and 8).

Every test makes its own bad file or fault and checks three things: a message naming the file, a non-zero
exit (for commands), and nothing changed or left behind.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from dicom_factory import write_series

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.errors import OutputError, StoreError
from SeriesClassifierLib.labels import export as export_module
from SeriesClassifierLib.labels import store as store_module
from SeriesClassifierLib.labels.export import write_export
from SeriesClassifierLib.labels.store import APPLICATION_ID, LabelStore


def _slicer_database(folder: Path) -> Path:
    """A minimal ctkDICOM.sql (CTK's tables) in rollback-journal mode, as Slicer writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ctkDICOM.sql"
    with sqlite3.connect(path) as c:
        c.executescript("CREATE TABLE Patients (UID INTEGER PRIMARY KEY, PatientID TEXT);"
                        "CREATE TABLE Images (SOPInstanceUID TEXT, Filename TEXT, SeriesInstanceUID TEXT);"
                        "INSERT INTO Patients VALUES (1, 'P1');")
    c.close()
    return path


def _no_traceback(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_slicers_database_is_never_opened_as_a_store(tmp_path, capsys):
    db = _slicer_database(tmp_path / "db")
    before = db.read_bytes()
    with pytest.raises(StoreError, match="Slicer's DICOM database, not a label store"):
        LabelStore(db)
    assert main(["export", "--format", "csv", "--store", str(db), "--out", str(tmp_path / "x.csv")]) != 0
    assert "ctkDICOM.sql" in _no_traceback(capsys)
    assert db.read_bytes() == before and not (tmp_path / "db" / "ctkDICOM.sql-wal").exists()


def test_a_renamed_copy_of_slicers_database_is_refused_too(tmp_path):
    db = _slicer_database(tmp_path / "db")
    copy = tmp_path / "labels.sqlite"
    copy.write_bytes(db.read_bytes())
    with pytest.raises(StoreError, match=r"not a label store \(tables: Images, Patients\); nothing was changed"):
        LabelStore(copy)
    assert copy.read_bytes() == db.read_bytes()
    with sqlite3.connect(copy) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


def test_a_file_of_another_application_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA application_id = 1234")
        c.execute("CREATE TABLE predictions (x)")
        c.execute("CREATE TABLE events (y)")
    c.close()
    with pytest.raises(StoreError, match="another application"):
        LabelStore(path)


def test_a_new_store_is_marked_and_an_older_unmarked_store_is_adopted(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as s:
        s.correct("1.2.3", sequence="PD")
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        c.execute("PRAGMA application_id = 0")  # as written before the mark existed
    c.close()
    with LabelStore(path) as s:
        assert s.current("1.2.3").sequence == "PD"
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    c.close()


def test_a_damaged_store_is_refused_not_written(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as s:
        s.record_predictions([])
        for i in range(200):
            s.correct(f"1.2.{i}", sequence="PD", note="x" * 200)
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 512] = b"\xff" * 512  # a page in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="labels.sqlite"):
        LabelStore(path)


def test_a_locked_store_is_a_message_and_nothing_is_acknowledged(tmp_path, monkeypatch, capsys):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code = main(["label", "1.2.3", "--sequence", "PD", "--store", str(path)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = _no_traceback(capsys)
    assert code != 0 and "labels.sqlite" in err and "locked" in err
    with LabelStore(path) as s:
        assert s.current("1.2.3") is None or s.current("1.2.3").sequence is None


def test_a_full_disk_leaves_the_old_output_and_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    out.write_text("old\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module.os, "replace", full)
    with pytest.raises(OutputError, match=r"cannot write .*results\.csv: No space left on device"):
        write_export("new\n", out)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_a_bad_out_path_is_told_before_the_work(tmp_path, capsys, where):
    write_series(tmp_path / "study", "T2", n_slices=2, size=4)
    if where == "a folder":
        out = tmp_path / "taken.csv"
        out.mkdir()
    else:
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "results.csv"
    code = main(["classify", str(tmp_path / "study"), "--out", str(out), "--no-cnn", "--quiet"])
    err = _no_traceback(capsys)
    assert code != 0 and "cannot write" in err and str(out) in err


def test_export_to_a_bad_path_is_a_message(tmp_path, capsys):
    with LabelStore(tmp_path / "labels.sqlite") as s:
        s.correct("1.2.3", sequence="PD")
    (tmp_path / "plain").write_text("x")
    code = main(["export", "--format", "csv", "--store", str(tmp_path / "labels.sqlite"),
                 "--out", str(tmp_path / "plain" / "x.csv")])
    assert code != 0 and "cannot write" in _no_traceback(capsys)


# ----------------------------------------------------------------------------- Slicer databases


def _ctk_database(folder: Path, filenames: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(folder / "ctkDICOM.sql") as c:
        c.executescript(
            "CREATE TABLE Patients (UID INTEGER PRIMARY KEY, PatientID TEXT);"
            "CREATE TABLE Studies (StudyInstanceUID TEXT, PatientsUID INT, StudyDate TEXT, StudyTime TEXT);"
            "CREATE TABLE Series (SeriesInstanceUID TEXT, StudyInstanceUID TEXT, SeriesNumber INT,"
            " SeriesDescription TEXT);"
            "CREATE TABLE Images (SOPInstanceUID TEXT, Filename TEXT, SeriesInstanceUID TEXT);"
            "INSERT INTO Patients VALUES (1, 'P1'); INSERT INTO Studies VALUES ('1.1', 1, '', '');"
            "INSERT INTO Series VALUES ('1.1.1', '1.1', 1, 'T2');")
        c.executemany("INSERT INTO Images VALUES (?, ?, '1.1.1')", [(str(i), f) for i, f in enumerate(filenames)])
    c.close()
    return folder / "ctkDICOM.sql"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no Images table"])
def test_a_broken_slicer_database_is_a_message(tmp_path, capsys, damage):
    db = _ctk_database(tmp_path / "db", ["dicom/a.dcm"])
    if damage == "garbage":
        db.write_bytes(b"SQLite format 3\x00" + b"\xee" * 4000)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1500])
    else:
        with sqlite3.connect(db) as c:
            c.execute("DROP TABLE Images")
        c.close()
    code = main(["classify", str(tmp_path / "db"), "--out", str(tmp_path / "out.csv"), "--no-cnn", "--quiet"])
    err = _no_traceback(capsys)
    assert code != 0 and "ctkDICOM.sql" in err


def test_database_entries_leading_out_of_its_folder_are_not_followed(tmp_path):
    from SeriesClassifierLib.dicom.sources import SlicerDatabaseSource

    write_series(tmp_path / "outside", "T2", n_slices=1, size=4)
    inside = tmp_path / "db" / "dicom"
    write_series(inside, "T2", n_slices=1, size=4)
    _ctk_database(tmp_path / "db", ["dicom/im000.dcm", "../outside/im000.dcm"])
    (ref,) = SlicerDatabaseSource(tmp_path / "db")
    assert ref.files == [tmp_path / "db" / "dicom" / "im000.dcm"]
    assert [str(p) for p in ref.missing] == ["../outside/im000.dcm"]


def test_a_fault_at_the_end_of_a_run_loses_no_classification(tmp_path, monkeypatch, capsys):
    """Predictions go to the label store as their series finish: a full disk while the table is written loses
    none of them, and the next classify classifies only what the stopped run did not reach."""
    import csv

    from SeriesClassifierLib.commands import classify as classify_command
    from SeriesClassifierLib.errors import OutputError

    for k in range(3):
        write_series(tmp_path / "study" / f"s{k}", f"T2 {k}", n_slices=2, size=4, number=k + 1)

    def disk_full(predictions, out):
        next(iter(predictions))  # the disk fills after the first row: the run stops there
        raise OutputError(f"cannot write {out}: No space left on device")

    monkeypatch.setattr(classify_command, "write_results", disk_full)
    out, store = tmp_path / "results.csv", tmp_path / "labels.sqlite"
    args = ["classify", str(tmp_path / "study"), "--out", str(out), "--no-cnn", "--store", str(store)]
    assert main([*args, "--quiet"]) != 0
    assert "No space left on device" in _no_traceback(capsys)
    assert not out.exists()
    monkeypatch.undo()
    assert main(args) == 0
    assert "2 classified now" in capsys.readouterr().err  # the first was kept; the rest classified now
    assert len(list(csv.DictReader(out.open()))) == 3
