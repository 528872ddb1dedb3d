from __future__ import annotations

import sqlite3

import pytest

from SeriesClassifierLib.labels.store import SCHEMA_VERSION, LabelStore, StoreError, default_store_path
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction


def make_prediction(uid: str, sequence: str = "T1_3D_PRE", p: float = 0.8, needs_review: bool = False,
                    number: int = 1, version: str = "m1") -> SeriesPrediction:
    seq = TaskPrediction.from_probabilities({sequence: p, "FLAIR_2D": 1 - p})
    return SeriesPrediction(
        series_uid=uid,
        study_uid="1.2.study",
        patient_id="PAT1",
        series_number=number,
        series_description=f"series {number}",
        sequence=seq,
        orientation=TaskPrediction.from_probabilities({"AXIAL": 0.9, "SAGITTAL": 0.1}),
        attributes={"contrast": TaskPrediction.from_probabilities({"PRE": 0.7, "POST": 0.3})},
        needs_review=needs_review,
        models={"forest": ModelOutput("forest", sequence=seq)},
        model_version=version,
    )


@pytest.fixture
def store(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as s:
        s.record_predictions([make_prediction("1.1", number=1), make_prediction("1.2", "FLAIR_2D", 0.55, True, 2)])
        yield s


def test_new_store_is_wal_full_and_current_schema(store):
    assert store.journal_mode == "wal"
    assert store.schema_version == SCHEMA_VERSION
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.integrity_check() == "ok"


def test_prediction_round_trip_and_unreviewed_state(store):
    rec = store.current("1.1")
    assert rec.prediction == make_prediction("1.1", number=1)
    assert (rec.sequence, rec.orientation, rec.attributes) == ("T1_3D_PRE", "AXIAL", {"contrast": "PRE"})
    assert rec.state == "unreviewed" and rec.label_source == "model" and rec.model_version == "m1"
    assert store.current("nope") is None


def test_correction_latest_wins_per_field_and_history_is_kept(store):
    store.correct("1.1", sequence="T1_3D_POST", user="ann", source="cli", note="enhancing lesion")
    store.correct("1.1", orientation="SAGITTAL", user="bob", source="slicer")
    store.correct("1.1", sequence="T1_2D_POST", attributes={"contrast": "POST"}, user="bob", source="review")
    rec = store.current("1.1")
    assert (rec.sequence, rec.orientation, rec.attributes) == ("T1_2D_POST", "SAGITTAL", {"contrast": "POST"})
    assert rec.state == "corrected" and rec.label_source == "corrected"
    assert (rec.corrected_by, rec.source, rec.note) == ("bob", "review", "enhancing lesion")
    history = store.history("1.1")
    assert [e.sequence for e in history] == ["T1_3D_POST", None, "T1_2D_POST"]
    assert [e.user for e in history] == ["ann", "bob", "bob"]
    assert all(e.model_version == "m1" for e in history)
    assert history[0].created_at < history[2].created_at


def test_accept_records_the_accepted_codes(store):
    store.accept("1.2", user="ann", source="review")
    rec = store.current("1.2")
    assert rec.state == "accepted" and rec.label_source == "accepted" and rec.sequence == "FLAIR_2D"
    assert store.history("1.2")[0].sequence == "FLAIR_2D"
    # accepting after a correction keeps the corrected label and the corrected state
    store.correct("1.2", sequence="FLAIR_3D", user="ann")
    store.accept("1.2", user="bob")
    rec = store.current("1.2")
    assert rec.sequence == "FLAIR_3D" and rec.state == "corrected" and rec.corrected_by == "bob"


def test_correcting_to_the_predicted_label_counts_as_accepted(store):
    store.correct("1.1", sequence="T1_3D_PRE")
    assert store.current("1.1").state == "accepted"


def test_note_alone_does_not_review(store):
    store.correct("1.2", note="ask neuro")
    rec = store.current("1.2")
    assert rec.state == "unreviewed" and rec.note == "ask neuro" and rec.needs_review


def test_unknown_codes_are_refused_with_the_valid_list(store):
    with pytest.raises(ValueError, match="valid codes: SCOUT, .*FLAIR_2D"):
        store.correct("1.1", sequence="T1")
    with pytest.raises(ValueError, match="AXIAL"):
        store.correct("1.1", orientation="axial")
    with pytest.raises(ValueError, match="valid values: PRE, POST"):
        store.correct("1.1", attributes={"contrast": "YES"})
    with pytest.raises(ValueError, match="valid: contrast"):
        store.correct("1.1", attributes={"colour": "red"})
    with pytest.raises(ValueError, match="source"):
        store.correct("1.1", sequence="PD", source="email")
    with pytest.raises(ValueError, match="needs a sequence"):
        store.correct("1.1")
    assert store.history("1.1") == []


def test_same_event_id_is_recorded_once(store):
    store.correct("1.1", sequence="PD", event_id="abc")
    store.correct("1.1", sequence="PD", event_id="abc")
    assert len(store.history("1.1")) == 1 and store.has_event("abc")


def test_rerecording_predictions_keeps_corrections(store):
    store.correct("1.1", sequence="PD", user="ann")
    store.record_predictions([make_prediction("1.1", "PD", 0.9, number=1, version="m2")])
    rec = store.current("1.1")
    assert rec.sequence == "PD" and rec.model_version == "m2" and rec.state == "accepted"
    assert store.history("1.1")[0].model_version == "m1"


def test_labels_without_prediction_and_record_order(store):
    store.correct("0.9", sequence="SCOUT", user="ann")
    uids = [r.series_uid for r in store.records()]
    assert uids == ["0.9", "1.1", "1.2"]  # no patient first, then by series number
    rec = store.current("0.9")
    assert rec.prediction is None and rec.state == "corrected"
    with pytest.raises(KeyError, match="nothing to accept"):
        store.accept("7.7")


def test_export_rows_columns(store):
    store.correct("1.2", sequence="FLAIR_3D", user="ann", source="cli")
    rows = {r["series_uid"]: r for r in store.export_rows()}
    assert rows["1.2"]["label_sequence"] == "FLAIR_3D" and rows["1.2"]["predicted_sequence"] == "FLAIR_2D"
    assert rows["1.2"]["corrected_by"] == "ann" and rows["1.2"]["needs_review"] is True
    assert rows["1.1"]["label_source"] == "model" and rows["1.1"]["corrected_at"] is None


def test_view_latest_events_for_sql_readers(store):
    store.correct("1.1", sequence="PD")
    store.correct("1.1", sequence="T2_2D")
    rows = store._conn.execute("SELECT series_uid, sequence FROM latest_events").fetchall()
    assert rows == [("1.1", "T2_2D")]


def test_newer_schema_is_refused_and_garbage_is_reported(tmp_path):
    path = tmp_path / "new.sqlite"
    LabelStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="update SeriesClassifier"):
        LabelStore(path)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="bad.sqlite"):
        LabelStore(bad)
    with pytest.raises(StoreError, match="no label store"):
        LabelStore(tmp_path / "missing.sqlite", create=False)


def test_an_empty_file_is_not_made_a_store(tmp_path):
    """Issue 17 item 8: a 0-byte file may be anything a user pointed at; a new store is made by SQLite itself."""
    path = tmp_path / "old.sqlite"
    sqlite3.connect(path).close()  # an empty file: version 0
    with pytest.raises(StoreError, match="an empty file, not a label store"):
        LabelStore(path)
    assert path.stat().st_size == 0


def test_default_store_path(tmp_path):
    db = tmp_path / "SlicerDICOMDatabase"
    db.mkdir()
    (db / "ctkDICOM.sql").write_bytes(b"")
    assert default_store_path(db) == db / "SeriesClassifier" / "labels.sqlite"
    assert default_store_path(db / "ctkDICOM.sql") == db / "SeriesClassifier" / "labels.sqlite"
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"")
    assert default_store_path(folder) == folder / ".seriesclassifier" / "labels.sqlite"
    assert default_store_path(folder / "a.dcm") == folder / ".seriesclassifier" / "labels.sqlite"


def test_import_labels_validates_rows_and_is_idempotent(store):
    rows = [
        {"series_uid": "1.1", "sequence": "T1_3D_POST", "orientation": "SAGITTAL", "contrast": "POST"},
        {"series_uid": "1.2", "label_sequence": "PD", "label_source": "corrected", "corrected_by": "ann"},
        {"series_uid": "1.3", "label_sequence": "FLAIR_2D", "label_source": "model"},  # a prediction: skipped
        {"series_uid": "1.4", "sequence": "T1"},
        {"series_uid": "", "sequence": "PD"},
        {"series_uid": "1.5"},
    ]
    recorded, problems = store.import_labels(rows, user="importer", batch="file-a")
    assert recorded == 2
    assert [p.split(":")[0] for p in problems] == ["row 4 (1.4)", "row 5", "row 6 (1.5)"]
    assert "valid codes" in problems[0]
    one = store.current("1.1")
    assert (one.sequence, one.orientation, one.attributes["contrast"], one.source) == (
        "T1_3D_POST", "SAGITTAL", "POST", "import")
    assert one.corrected_by == "importer" and store.current("1.2").corrected_by == "ann"
    assert store.current("1.3") is None
    assert store.import_labels(rows, user="importer", batch="file-a")[0] == 0  # same file again: nothing new
    assert len(store.history("1.1")) == 1


def test_migration_from_version_1_backfills_and_adds_the_current_labels_view(tmp_path):
    import json

    from SeriesClassifierLib.labels.store import _migrate_0_to_1

    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    _migrate_0_to_1(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO predictions VALUES (?, '', '', 1, '', 'm0', ?, '2026-01-01T00:00:00Z')",
        ("9.1", json.dumps(make_prediction("9.1", "PD").to_dict())),
    )
    conn.execute(
        "INSERT INTO events (event_id, series_uid, kind, orientation, user, source, created_at) "
        "VALUES ('e1', '9.1', 'correct', 'CORONAL', 'old', 'cli', '2026-01-02T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    with LabelStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        rec = s.current("9.1")
        assert (rec.sequence, rec.orientation, rec.state, rec.corrected_by) == ("PD", "CORONAL", "corrected", "old")
        s.record_predictions([make_prediction("9.2", "ADC")])
        s.correct("9.2", sequence="DWI", user="new")
        rows = s._conn.execute(
            "SELECT series_uid, sequence, orientation, predicted_sequence, labelled_by FROM current_labels "
            "ORDER BY series_uid"
        ).fetchall()
    assert rows == [("9.1", "PD", "CORONAL", "PD", "old"), ("9.2", "DWI", "AXIAL", "ADC", "new")]
