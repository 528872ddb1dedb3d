from __future__ import annotations

import csv
import io
import json

import pytest

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.labels.export import FORMATS, csv_columns, default_file_name, export, export_rows, select
from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.vocabulary import load_vocabulary


def prediction(uid, sequence, number, needs_review=False, patient="PAT-7"):
    seq = TaskPrediction.from_probabilities({sequence: 0.7, "FLAIR_2D": 0.2, "PD": 0.1})
    return SeriesPrediction(
        uid, "1.9", patient, number, f"desc {number}", sequence=seq,
        orientation=TaskPrediction.from_probabilities({"AXIAL": 0.95, "CORONAL": 0.05}),
        attributes={"contrast": TaskPrediction.from_probabilities({"POST": 0.9, "PRE": 0.1})},
        needs_review=needs_review, models={"forest": ModelOutput("forest", sequence=seq)}, model_version="v3",
    )


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as s:
        s.record_predictions([prediction("1.1", "T1_3D_POST", 2), prediction("1.2", "T2_2D", 3, True)])
        s.correct("1.2", sequence="PD", orientation="CORONAL", user="ann", note="Mrs Smith, call back", source="cli")
    return path


def test_csv_has_the_documented_columns_and_values(store_path):
    with LabelStore(store_path) as s:
        text = export(s.records(), "csv", anonymise=False)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == csv_columns(load_vocabulary())
    first, second = rows
    assert first["series_uid"] == "1.1" and first["label_source"] == "model" and first["needs_review"] == "false"
    assert first["predicted_top3"] == "T1_3D_POST:0.7000;FLAIR_2D:0.2000;PD:0.1000"
    assert first["attribute_contrast"] == "POST" and first["attribute_acquisition"] == ""
    assert first["bids_filename"] == "sub-PAT7/anat/sub-PAT7_acq-3D_ce-gadolinium_T1w.nii.gz"
    assert first["bids_entities"] == "acq-3D_ce-gadolinium"
    assert second["predicted_sequence"] == "T2_2D" and second["label_sequence"] == "PD"
    assert (second["label_orientation"], second["label_source"], second["corrected_by"]) == ("CORONAL", "corrected",
                                                                                             "ann")
    assert second["bids_filename"] == "sub-PAT7/anat/sub-PAT7_PDw.nii.gz"
    assert second["corrected_at"].endswith("Z") and second["model_version"] == "v3"


def test_json_document(store_path):
    with LabelStore(store_path) as s:
        doc = json.loads(export(s.records(), "json", anonymise=False))
    assert doc["format"] == "seriesclassifier-labels" and doc["format_version"] == 1 and not doc["anonymised"]
    series = {row["series_uid"]: row for row in doc["series"]}
    assert series["1.1"]["predicted_sequence_probabilities"]["T1_3D_POST"] == 0.7
    assert series["1.2"]["bids"]["entities"] == {} and series["1.2"]["bids"]["suffix"] == "PDw"
    assert series["1.2"]["note"] == "Mrs Smith, call back"


@pytest.mark.parametrize("fmt", ["csv", "json", "bids", "dcm2bids", "heudiconv"])
def test_identifiers_are_left_out_of_every_format_by_default(store_path, fmt, tmp_path, capsys):
    with LabelStore(store_path) as s:
        text = export(s.records(), fmt)
    assert "PAT-7" not in text and "PAT7" not in text and "Smith" not in text
    if fmt in ("csv", "json", "bids"):
        assert "sub-01" in text
    # the command line: the same by default, identifiers only when asked for
    out = tmp_path / "out.txt"
    assert main(["export", "--store", str(store_path), "--format", fmt, "--out", str(out)]) == 0
    assert "PAT7" not in out.read_text() and "Smith" not in out.read_text()
    assert main(["export", "--store", str(store_path), "--format", fmt, "--out", str(out), "--identifiers"]) == 0
    assert ("PAT7" in out.read_text()) is (fmt in ("csv", "json", "bids"))  # the configs name no subject
    assert main(["export", "--store", str(store_path), "--format", fmt, "--out", str(out), "--identifiers",
                 "--anonymise"]) == 2


def test_reviewed_only(store_path):
    with LabelStore(store_path) as s:
        assert [r.series_uid for r in select(s.records(), reviewed_only=True)] == ["1.2"]
        rows = export_rows(s.records())
    assert len(rows) == 2


def test_cli_label_and_export(store_path, tmp_path, capsys):
    assert main(["label", "1.1", "--sequence", "T1_3D_PRE", "--store", str(store_path), "--user", "bob"]) == 0
    assert "1.1: T1_3D_PRE AXIAL (corrected)" in capsys.readouterr().out
    assert main(["label", "1.1", "--sequence", "T1", "--store", str(store_path)]) == 1
    assert "'T1' is ambiguous: T1_2D_PRE, T1_2D_POST" in capsys.readouterr().err
    assert main(["label", "1.1", "--sequence", "T1W", "--store", str(store_path)]) == 1
    assert "valid codes: SCOUT" in capsys.readouterr().err
    # the same matching as review's answers: a unique prefix, any case
    assert main(["label", "1.1", "--sequence", "flair_2", "--orientation", "cor", "--store", str(store_path)]) == 0
    assert "1.1: FLAIR_2D CORONAL (corrected)" in capsys.readouterr().out
    assert main(["label", "1.1", "--sequence", "t1_3d_pr", "--orientation", "AXIAL", "--store",
                 str(store_path)]) == 0
    assert main(["label", "9.9", "--sequence", "PD", "--store", str(store_path)]) == 1
    assert "not in" in capsys.readouterr().err
    assert main(["label", "1.2", "--accept", "--store", str(store_path)]) == 0
    assert main(["label", "1.1", "--attribute", "contr=pre", "--store", str(store_path)]) == 0
    out = tmp_path / "out" / "labels.csv"
    assert main(["export", "--store", str(store_path), "--format", "csv", "--out", str(out), "--anonymise"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["label_sequence"] for r in rows] == ["T1_3D_PRE", "PD"]
    assert rows[0]["attribute_contrast"] == "PRE" and rows[0]["patient_id"] == ""
    assert main(["export", "--store", str(tmp_path / "none.sqlite"), "--format", "csv", "--out", str(out)]) == 1
    assert "no label store" in capsys.readouterr().err


def test_cli_export_to_stdout(store_path, capsys):
    assert main(["export", "--store", str(store_path), "--format", "dcm2bids", "--out", "-"]) == 0
    config = json.loads(capsys.readouterr().out)
    plain = [d for d in config["descriptions"] if "echo-" not in d.get("custom_entities", "")]
    assert len(plain) == 2  # one per series, plus one per possible echo of each


def test_cli_label_import_csv(store_path, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("series_uid,sequence,orientation,contrast\n1.1,T1_3D_PRE,AXIAL,PRE\n1.2,XX,AXIAL,PRE\n")
    assert main(["label", "--import", str(labels), "--store", str(store_path), "--user", "imp"]) == 1
    captured = capsys.readouterr()
    assert "imported 1 labels" in captured.out and "row 2 (1.2): unknown sequence code 'XX'" in captured.err
    with LabelStore(store_path) as s:
        assert s.current("1.1").sequence == "T1_3D_PRE" and s.current("1.1").source == "import"
    assert main(["label", "--store", str(store_path)]) == 2


@pytest.mark.parametrize("command", [
    ["export", "--format", "csv", "--out", "-"], ["review"], ["report", "--out", "r.html"],
    ["label", "1.2", "--sequence", "PD", "--path"],
])
def test_a_missing_path_is_an_error_and_creates_nothing(tmp_path, capsys, command):
    missing = tmp_path / "missing"
    argv = command[:1] + [str(missing)] + command[1:] if command[0] != "label" else command + [str(missing)]
    assert main(argv) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert not missing.exists()


def test_label_finds_the_store_of_the_current_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "study"
    folder.mkdir()
    with LabelStore(folder / ".seriesclassifier" / "labels.sqlite") as s:
        s.record_predictions([prediction("5.5", "PD", 1)])
    monkeypatch.chdir(folder)
    assert main(["label", "5.5", "--sequence", "T2_2D"]) == 0
    # elsewhere: the store is found among those the commands wrote (the label above was one)
    monkeypatch.chdir(tmp_path)
    assert main(["label", "5.5", "--sequence", "PD"]) == 0
    assert "5.5: PD AXIAL" in capsys.readouterr().out
    # a user whose commands never wrote it: told how to name it
    monkeypatch.setenv("SERIESCLASSIFIER_STATE_DIR", str(tmp_path / "other-user"))
    assert main(["label", "5.5", "--sequence", "T2_2D"]) == 1
    assert "give --path FOLDER or --store FILE" in capsys.readouterr().err
    # two stores knowing the series: ambiguous, never a guess
    with LabelStore(tmp_path / "copy.sqlite") as s:
        s.record_predictions([prediction("5.5", "PD", 1)])
    monkeypatch.chdir(folder)
    assert main(["label", "5.5", "--accept", "--store", str(tmp_path / "copy.sqlite")]) == 0
    assert main(["label", "5.5", "--accept"]) == 1
    assert "in several label stores" in capsys.readouterr().err


def test_label_history(store_path, capsys):
    assert main(["label", "1.2", "--orientation", "AXIAL", "--store", str(store_path), "--user", "bob"]) == 0
    capsys.readouterr()
    assert main(["label", "1.2", "--history", "--store", str(store_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "predicted: T2_2D 0.70 · AXIAL (model v3)"
    assert "correct PD CORONAL" in lines[1] and "ann via cli — Mrs Smith, call back" in lines[1]
    assert "correct AXIAL" in lines[2] and "bob via cli" in lines[2]
    assert lines[3] == "current: PD · AXIAL (corrected)"


def test_every_format_has_a_default_file_name_whose_suffix_fits_its_content(store_path):
    with LabelStore(store_path) as s:
        records = s.records()
    suffixes = {fmt: default_file_name(fmt).rsplit(".", 1)[1] for fmt in FORMATS}
    assert suffixes == {"csv": "csv", "json": "json", "bids": "json", "dcm2bids": "json", "heudiconv": "py"}
    for fmt in ("json", "bids", "dcm2bids"):
        json.loads(export(records, fmt))  # what the .json name promises
    compile(export(records, "heudiconv"), default_file_name("heudiconv"), "exec")  # a Python module
    with pytest.raises(ValueError, match="unknown export format"):
        default_file_name("xlsx")
