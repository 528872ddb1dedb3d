"""Classify once: the README's classify → label → export on a factory study with the bundled models, and the
store reused by every command afterwards (only new or changed series, or other models, are classified again)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil

import pytest
from dicom_factory import write_toy_corpus

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.dicom.sources import iter_series_refs
from SeriesClassifierLib.labels.export import csv_columns
from SeriesClassifierLib.labels.store import LabelStore, default_store_path
from SeriesClassifierLib.models.forest import ForestModel
from SeriesClassifierLib.vocabulary import load_vocabulary


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def study(tmp_path):
    truth = write_toy_corpus(tmp_path / "study", n_per_class=1, seed=3)
    return tmp_path / "study", truth


def test_readme_sequence_classify_label_export(study, tmp_path, monkeypatch, capsys):
    root, truth = study
    results, labels = tmp_path / "results.csv", tmp_path / "labels.csv"
    assert main(["classify", str(root), "--out", str(results)]) == 0
    assert "5 classified now" in capsys.readouterr().err
    predicted = {r["series_uid"]: r for r in _rows(results)}
    assert set(predicted) == set(truth)

    # `label UID` from another folder, no --path: the store classify wrote is found
    uid = sorted(truth)[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["label", uid, "--sequence", "pd"]) == 0
    captured = capsys.readouterr()
    assert f"{uid}: PD" in captured.out and str(default_store_path(root)) in captured.err

    assert main(["export", str(root), "--format", "csv", "--out", str(labels)]) == 0
    err = capsys.readouterr().err
    assert "classifying" not in err and "wrote csv for 5 series" in err
    exported = {r["series_uid"]: r for r in _rows(labels)}
    assert exported[uid]["label_sequence"] == "PD" and exported[uid]["label_source"] == "corrected"
    # one vocabulary: classify's columns are the export's (bar the attribute probabilities), with equal values
    classify_columns = list(next(iter(predicted.values())))
    assert [c for c in classify_columns if not c.endswith("_probability") or c.startswith("predicted_")
            if c not in csv_columns(load_vocabulary())] == []
    for u, row in predicted.items():
        for column in ("predicted_sequence", "predicted_sequence_probability", "predicted_top3",
                       "predicted_orientation", "needs_review", "n_images", "model_version"):
            assert exported[u][column] == row[column], column
    assert re.fullmatch(r"([A-Z0-9_]+:[01]\.\d{4};){2}[A-Z0-9_]+:[01]\.\d{4}", exported[uid]["predicted_top3"])
    # and the report: the same names and spelling on each card, still without classifying again
    assert main(["report", str(root), "--out", str(tmp_path / "r.html")]) == 0
    assert "classifying" not in capsys.readouterr().err
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    for u, row in exported.items():
        assert (f'data-uid="{u}" data-predicted-sequence="{row["predicted_sequence"]}" '
                f'data-predicted-top3="{row["predicted_top3"]}" data-label-sequence="{row["label_sequence"]}"') in html


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory):
    """A small forest, so the reuse tests below run in seconds; two versions of it to tell models apart."""
    root = tmp_path_factory.mktemp("models")
    labels = write_toy_corpus(root / "train", n_per_class=4, seed=1)
    refs = list(iter_series_refs(root / "train"))
    from SeriesClassifierLib.dicom.headers import read_series

    series = [read_series(r) for r in refs]
    forest = ForestModel(n_estimators=30).fit(series, {"sequence": [labels[s.series_uid] for s in series]})
    forest.save(root / "v1", extra={"version": "v1"})
    forest.save(root / "v2", extra={"version": "v2"})
    return root / "v1", root / "v2"


def _classified(capsys) -> int:
    """How many series the last command classified, from its 'classifying N series' line (0 without one)."""
    m = re.search(r"classifying (\d+) series", capsys.readouterr().err)
    return int(m.group(1)) if m else 0


def test_commands_classify_only_what_is_new_or_changed(study, toy_models, tmp_path, monkeypatch, capsys):
    root, truth = study
    v1, v2 = toy_models
    assert main(["classify", str(root), "--models", str(v1), "--quiet"]) == 0
    assert main(["classify", str(root), "--models", str(v1)]) == 0
    assert "0 classified now" in capsys.readouterr().err
    assert main(["export", str(root), "--format", "json", "--out", str(tmp_path / "a.json")]) == 0
    assert _classified(capsys) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("q\n"))
    assert main(["review", str(root), "--models", str(v1)]) == 0
    assert _classified(capsys) == 0
    assert main(["report", str(root), "--out", str(tmp_path / "r.html")]) == 0
    assert _classified(capsys) == 0

    # one series rewritten (new size and time): only it is classified again, its siblings read for context
    changed = next(p for p in sorted(root.rglob("*.dcm")))
    changed.write_bytes(changed.read_bytes() + b"\0\0")
    os.utime(changed, ns=(1, 1))
    assert main(["export", str(root), "--format", "csv", "--out", str(tmp_path / "b.csv")]) == 0
    assert _classified(capsys) == 1
    # a new series: only it
    write_toy_corpus(root / "added", n_per_class=1, seed=11)
    monkeypatch.setattr("sys.stdin", io.StringIO("q\n"))
    assert main(["review", str(root)]) == 0
    assert _classified(capsys) == 5
    # other models named: everything again; without --models, what is stored is kept whatever made it
    assert main(["export", str(root), "--models", str(v2), "--format", "csv", "--out", str(tmp_path / "c.csv")]) == 0
    assert _classified(capsys) == 10
    assert main(["classify", str(root), "--models", str(v2), "--no-cnn", "--force"]) == 0
    assert _classified(capsys) == 10
    with LabelStore(default_store_path(root)) as store:
        assert {p.model_version for p in store.predictions(store.predicted_uids()).values()} == {"forest-v2"}


def test_evaluate_reuses_the_predictions_of_classify(study, toy_models, tmp_path, capsys):
    root, truth = study
    v1, _ = toy_models
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series_uid", "sequence"])
        w.writerows(truth.items())
    assert main(["classify", str(root), "--models", str(v1), "--quiet"]) == 0
    args = ["evaluate", str(root), "--labels", str(tmp_path / "labels.csv"), "--models", str(v1)]
    assert main([*args, "--out", str(tmp_path / "e1")]) == 0
    assert _classified(capsys) == 0
    # another models folder: classified again, and kept for the next evaluate
    _, v2 = toy_models
    other = ["evaluate", str(root), "--labels", str(tmp_path / "labels.csv"), "--models", str(v2)]
    assert main([*other, "--out", str(tmp_path / "e2")]) == 0
    assert _classified(capsys) == 5
    assert main([*other, "--out", str(tmp_path / "e3")]) == 0
    assert _classified(capsys) == 0


def test_content_key_follows_the_files_not_the_folder(study, tmp_path):
    root, _ = study
    before = {r.series_uid: r.content_key() for r in iter_series_refs(root)}
    moved = tmp_path / "moved"
    shutil.move(str(root), str(moved))  # a rename keeps times: the same content
    assert {r.series_uid: r.content_key() for r in iter_series_refs(moved)} == before
    one = next(moved.rglob("*.dcm"))
    os.utime(one, ns=(5, 5))
    after = {r.series_uid: r.content_key() for r in iter_series_refs(moved)}
    assert sum(after[u] != before[u] for u in before) == 1


def test_classify_on_a_read_only_folder_still_writes_its_results(study, tmp_path, monkeypatch, capsys):
    root, truth = study
    from SeriesClassifierLib.commands import classify as command

    def refuse(args):
        raise PermissionError(13, "Permission denied", str(root / ".seriesclassifier"))

    monkeypatch.setattr(command, "open_store", refuse)
    out = tmp_path / "r.csv"
    assert main(["classify", str(root), "--out", str(out), "--no-cnn"]) == 0
    assert "predictions not recorded in a label store" in capsys.readouterr().err
    assert len(_rows(out)) == len(truth)


def test_progress_is_shown_on_a_terminal_only():
    from SeriesClassifierLib.commands._predictions import ProgressBar

    class Stream(io.StringIO):
        def __init__(self, tty: bool):
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    piped, terminal = Stream(False), Stream(True)
    for stream in (piped, terminal):
        bar = ProgressBar(stream=stream)
        for done in range(1, 4):
            bar(done, 3)
    assert piped.getvalue() == ""  # pipes, logs, CI: quiet
    text = terminal.getvalue()
    assert "1/3 series" in text and "3/3 series" in text and "/s" in text and text.endswith("\n")
    assert any("s left" in line for line in text.split("\r")[1:3])  # count, rate and time left while it runs
    quiet = Stream(True)
    ProgressBar(enabled=False, stream=quiet)(1, 3)
    assert quiet.getvalue() == ""
