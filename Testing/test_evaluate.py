from __future__ import annotations

import json

import pytest

from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction
from SeriesClassifierLib.training.evaluate import (
    NO_PREDICTION,
    evaluate_predictions,
    per_class_table,
    read_labels,
    read_predictions,
    task_metrics,
    write_report,
)


def pred(uid, label, p=0.9, review=False, orientation="AXIAL", error=None):
    seq = TaskPrediction.from_probabilities({label: p, "OTHER": 1 - p}) if label else None
    return SeriesPrediction(series_uid=uid, sequence=seq, needs_review=review, error=error,
                            orientation=TaskPrediction(orientation, 1.0, {orientation: 1.0}))


def test_task_metrics_by_hand():
    truth = ["A", "A", "B", "B", "C"]
    guess = ["A", "B", "B", "B", NO_PREDICTION]
    m = task_metrics(truth, guess)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["A"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(0.6667, abs=1e-4),
                                   "support": 2}
    assert m["per_class"]["B"]["precision"] == pytest.approx(0.6667, abs=1e-4)
    assert m["per_class"]["C"]["recall"] == 0.0
    # macro-F1 over the classes that occur in the reference: (0.667 + 0.8 + 0) / 3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3, abs=1e-4)
    assert m["classes"][-1] == NO_PREDICTION and sum(map(sum, m["confusion"])) == 5


def test_labels_file_needs_a_uid_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,sequence\n1,T2_2D\n")
    with pytest.raises(ValueError, match="series_uid"):
        read_labels(bad)
    good = tmp_path / "labels.csv"
    good.write_text("series_uid,sequence,orientation,contrast,profile\n1,T2_2D,AXIAL,PRE,p1\n2,DWI,SAGITTAL,,p2\n")
    assert read_labels(good)["2"]["sequence"] == "DWI"


def test_evaluate_predictions_counts_and_review_statistics(tmp_path):
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text("series_uid,sequence,orientation,contrast,profile\n"
                           "1,T2_2D,AXIAL,PRE,p1\n2,DWI,AXIAL,PRE,p1\n3,ADC,AXIAL,,p2\n4,PD,AXIAL,,p2\n")
    labels = read_labels(labels_file)
    predictions = [pred("1", "T2_2D"), pred("2", "ADC", review=True), pred("3", "ADC", orientation="SAGITTAL"),
                   pred("4", None, error="skipped: something"), pred("99", "T2_2D")]
    report = evaluate_predictions(predictions, labels)
    assert report["n_labelled"] == 4 and report["n_unlabelled"] == 1 and report["n_errors"] == 1
    assert report["tasks"]["sequence"]["accuracy"] == 0.5
    assert report["tasks"]["orientation"]["accuracy"] == 0.75
    assert report["review"] == {"flagged_fraction": 0.25, "accuracy_not_flagged": pytest.approx(2 / 3, abs=1e-4),
                                "errors_caught": 1, "errors_missed": 1}
    assert report["per_profile"]["p1"]["sequence_accuracy"] == 0.5
    assert "contrast" not in report["tasks"]  # labelled, but no model answers it
    written = write_report(report, tmp_path / "out", "test")
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert {p.name for p in written} >= {"confusion_sequence.png", "confusion_orientation.png"}
    assert "| T2_2D |" in per_class_table(report["tasks"]["sequence"])


def test_results_json_reads_back(tmp_path):
    p = pred("1", "T2_2D")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"series": [dict(p.to_dict(), top3=[["T2_2D", 0.9]])]}))
    assert read_predictions(path) == [p]
