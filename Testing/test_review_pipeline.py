"""The real flow: a folder is classified by the pipeline into its default store, reviewed in the
terminal, exported and reported — with a small forest trained here on hand-made series."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from dicom_factory import write_toy_corpus

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import iter_series_refs
from SeriesClassifierLib.labels.store import LabelStore, default_store_path
from SeriesClassifierLib.models.forest import ForestModel


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    train_labels = write_toy_corpus(root / "train", n_per_class=6, seed=1)
    series = [read_series(ref) for ref in iter_series_refs(root / "train")]
    forest = ForestModel(n_estimators=30).fit(series, {"sequence": [train_labels[s.series_uid] for s in series]})
    models = root / "models"
    forest.save(models)
    study_labels = write_toy_corpus(root / "study", n_per_class=1, seed=7)
    return root / "study", models, study_labels


@pytest.mark.slow
def test_classify_review_export_report(toy, monkeypatch, capsys, tmp_path):
    study, models, truth = toy
    # review classifies the folder first (the store is empty), then walks through it
    monkeypatch.setattr("sys.stdin", io.StringIO("\n" * 2 + "ot\nq\n"))
    assert main(["review", str(study), "--models", str(models), "--user", "rev"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "classifying" in captured.err
    assert "[1/5]" in out and "stopped: 2 accepted, 1 corrected" in out
    store_file = default_store_path(study)
    assert store_file == study / ".seriesclassifier" / "labels.sqlite" and store_file.exists()
    with LabelStore(store_file) as store:
        records = store.records()
        assert {r.series_uid for r in records} == set(truth)
        assert all(r.prediction.models.get("forest") and r.model_version == r.prediction.model_version
                   for r in records)
        states = sorted(r.state for r in records)
        assert states.count("unreviewed") == 2 and "corrected" in states
        # the flow is under test here, not the toy forest's accuracy: only that it answered from its classes
        assert {r.prediction.sequence.label for r in records} <= set(truth.values())

    # a second run sees the predictions and does not classify again; the store folder is no DICOM
    assert main(["export", str(study), "--format", "csv", "--out", str(tmp_path / "l.csv")]) == 0
    err = capsys.readouterr().err
    assert "classifying" not in err and "wrote csv for 5 series" in err
    rows = list(csv.DictReader((tmp_path / "l.csv").open()))
    assert sorted(r["label_source"] for r in rows).count("model") == 2
    assert [r for r in rows if r["label_source"] == "corrected"][0]["label_sequence"] == "OTHER"

    assert main(["export", str(study), "--format", "json", "--out", str(tmp_path / "l.json"), "--reviewed-only"]) == 0
    assert len(json.loads((tmp_path / "l.json").read_text())["series"]) == 3

    assert main(["report", str(study), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert html.count('class="card') == 5 and "forest only" in html and not re.search(r"https?://", html)

    # a series added to the folder later is classified on the next review, the others are not again
    write_toy_corpus(study / "added", n_per_class=1, seed=9)
    monkeypatch.setattr("sys.stdin", io.StringIO("q\n"))
    assert main(["review", str(study), "--models", str(models)]) == 0
    assert "classifying 5 series (5 unchanged, from the store)" in capsys.readouterr().err
    with LabelStore(store_file) as store:
        assert len(store.predicted_uids()) == 10 and store.current(next(iter(truth))).n_events <= 1
