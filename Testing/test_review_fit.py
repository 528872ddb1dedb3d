"""The review threshold is fitted with every review rule in place."""

from __future__ import annotations

from SeriesClassifierLib.models.ensemble import EnsembleParams
from SeriesClassifierLib.prediction import ModelOutput, TaskPrediction
from SeriesClassifierLib.series import Series
from SeriesClassifierLib.training.review_fit import fit_review_threshold

PARAMS = EnsembleParams(method="log_linear", weights={"forest": 1.0})


def _case(i: int, label: str, p: float, novelty: list[str] | None = None):
    s = Series(series_uid=f"1.{i}", study_uid=f"2.{i}", files=[],
               header={"RepetitionTime": 500.0, "EchoTime": 10.0})
    out = ModelOutput(model="forest", sequence=TaskPrediction.from_probabilities({label: p, "OTHER": 1 - p}),
                      novelty=list(novelty or []))
    return s, {"forest": out}


def _fit(cases, truth):
    series, outputs = zip(*cases)
    return fit_review_threshold(list(series), list(outputs), truth, PARAMS, target_accuracy=0.98)


def test_a_confident_error_another_rule_catches_leaves_the_threshold_low():
    cases = [_case(i, "T2_2D", 0.62) for i in range(10)] + [_case(10, "DWI", 0.99, ["header terms never seen: ss:RM"])]
    assert _fit(cases, ["T2_2D"] * 10 + ["SCOUT"]) == 0.5


def test_unsure_errors_raise_the_threshold_just_above_them():
    cases = [_case(i, "T2_2D", 0.9) for i in range(10)] + [_case(10, "DWI", 0.57), _case(11, "DWI", 0.52)]
    assert _fit(cases, ["T2_2D"] * 10 + ["SCOUT", "SCOUT"]) == 0.6
