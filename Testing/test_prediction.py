"""SeriesPrediction: one answer to 'what did this head predict' for the worker and the Slicer module."""

from __future__ import annotations

from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction


def test_a_heads_predicted_class():
    p = SeriesPrediction(
        series_uid="1",
        sequence=TaskPrediction("T1_3D_POST", 0.9),
        orientation=TaskPrediction("AXIAL", 1.0),
        attributes={"contrast": TaskPrediction("post", 0.8)},
    )
    assert p.predicted_class("sequence") == "T1_3D_POST"
    assert p.predicted_class("orientation") == "AXIAL"
    assert p.predicted_class("contrast") == "post"
    assert p.predicted_class("fat_suppression") is None
    assert SeriesPrediction(series_uid="2").predicted_class("sequence") is None
    assert SeriesPrediction.from_dict(p.to_dict()).task("contrast") == p.task("contrast")


def test_the_module_and_the_worker_ask_the_prediction():
    """Neither face keeps its own copy of the head → task lookup."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for path in (root / "SeriesClassifier" / "SeriesClassifier.py",
                 root / "SeriesClassifier" / "SeriesClassifierLib" / "run" / "worker.py"):
        text = path.read_text(encoding="utf-8")
        assert 'if head in ("sequence", "orientation")' not in text, path


def test_the_outcome_says_what_became_of_the_series():
    seq = TaskPrediction.from_probabilities({"T2_2D": 0.9, "PD": 0.1})
    assert SeriesPrediction(series_uid="1", sequence=seq).outcome == "classified"
    assert SeriesPrediction(series_uid="1", sequence=seq, needs_review=True).outcome == "review"
    unknown = SeriesPrediction(series_uid="1", sequence=seq, needs_review=True, unknown="the models cannot tell")
    assert unknown.outcome == "unknown"
    assert SeriesPrediction.from_dict(unknown.to_dict()).unknown == "the models cannot tell"
    assert SeriesPrediction(series_uid="1", error="skipped: no pixels").outcome == "failed"
    old = {k: v for k, v in unknown.to_dict().items() if k != "unknown"}  # stored before outcomes existed
    assert SeriesPrediction.from_dict(old).outcome == "review"


def test_top_k_breaks_ties_by_name_whatever_the_order_stored():
    a = TaskPrediction.from_probabilities({"T1_2D_PRE": 0.6, "T1_2D_POST": 0.2, "OTHER": 0.2})
    b = TaskPrediction.from_probabilities({"OTHER": 0.2, "T1_2D_PRE": 0.6, "T1_2D_POST": 0.2})
    assert a.top_text() == b.top_text() == "T1_2D_PRE:0.6000;OTHER:0.2000;T1_2D_POST:0.2000"
