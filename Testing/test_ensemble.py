"""The ensemble's pooling, its review rules and fitting its parameters on held-out outputs."""

from __future__ import annotations

import numpy as np
import pytest

from SeriesClassifierLib.models.ensemble import EnsembleParams, combine, fit_alone_weight, fit_params
from SeriesClassifierLib.prediction import ModelOutput, TaskPrediction

CLASSES = ["T1_3D_PRE", "T1_3D_POST", "FLAIR_2D", "DWI"]


def _out(name: str, probs: dict[str, float]) -> ModelOutput:
    full = {c: probs.get(c, 0.0) for c in CLASSES}
    return ModelOutput(name, sequence=TaskPrediction.from_probabilities(full))


def test_log_linear_pooling_sharpens_agreement_and_tempers_a_lone_model_by_its_weight():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 1.0})
    forest = _out("forest", {"FLAIR_2D": 0.7, "DWI": 0.3})
    cnn = _out("cnn", {"FLAIR_2D": 0.6, "T1_3D_PRE": 0.4})
    both = combine({"forest": forest, "cnn": cnn}, params).sequence
    assert both.label == "FLAIR_2D"
    assert both.probability > 0.95  # two independent votes for FLAIR, the rest vetoed by one model each
    alone = combine({"cnn": cnn}, params).sequence
    assert alone.probabilities == pytest.approx(cnn.sequence.probabilities, abs=1e-3)  # weight 1: unchanged
    # a weight under 1 (fitted on shifted data) softens a lone model's confidence too
    softened = combine({"cnn": cnn}, EnsembleParams(method="log_linear", weights={"cnn": 0.5})).sequence
    assert softened.label == "FLAIR_2D" and 0.5 < softened.probability < 0.6


def test_a_dissent_counts_as_far_as_the_fitted_weight_trusts_the_model():
    forest = _out("forest", {"DWI": 0.99, "FLAIR_2D": 0.01})
    cnn = _out("cnn", {"FLAIR_2D": 0.9, "DWI": 0.1})
    trusted = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 1.0}, review_threshold=0.0,
                             disagreement_confidence=0.5)
    assert combine({"forest": forest, "cnn": cnn}, trusted).needs_review
    # a CNN whose weight was fitted near zero on real data: its 0.9 is not a confident dissent
    distrusted = EnsembleParams.from_dict({**trusted.to_dict(), "weights": {"forest": 1.0, "cnn": 0.1}})
    assert not combine({"forest": forest, "cnn": cnn}, distrusted).needs_review


def test_a_weak_dissent_does_not_flag_but_a_confident_one_does():
    params = EnsembleParams(method="log_linear", weights={"forest": 2.0, "cnn": 0.5}, review_threshold=0.5,
                            disagreement_confidence=0.5)
    forest = _out("forest", {"DWI": 0.99, "FLAIR_2D": 0.01})
    weak = _out("cnn", {"FLAIR_2D": 0.4, "DWI": 0.35, "T1_3D_PRE": 0.25})
    result = combine({"forest": forest, "cnn": weak}, params)
    assert result.sequence.label == "DWI" and not result.needs_review
    strong = _out("cnn", {"FLAIR_2D": 0.9, "DWI": 0.1})
    result = combine({"forest": forest, "cnn": strong}, params)
    assert result.needs_review
    assert any("models disagree" in r and "cnn FLAIR_2D 0.90" in r and "forest DWI" in r for r in result.reasons)


def _simulated(n: int, seed: int):
    """A reliable forest (right 90 %, confident) and a noisy CNN (right 50 %, overconfident)."""
    rng = np.random.default_rng(seed)
    outputs, truth = [], []
    for _ in range(n):
        t = CLASSES[rng.integers(len(CLASSES))]
        wrong = [c for c in CLASSES if c != t]
        f_top = t if rng.random() < 0.9 else wrong[rng.integers(3)]
        c_top = t if rng.random() < 0.5 else wrong[rng.integers(3)]
        outputs.append({"forest": _out("forest", {f_top: 0.85, **{c: 0.05 for c in CLASSES if c != f_top}}),
                        "cnn": _out("cnn", {c_top: 0.97, **{c: 0.01 for c in CLASSES if c != c_top}})})
        truth.append(t)
    return outputs, truth


def test_fit_params_trusts_the_reliable_model_and_beats_the_plain_mean():
    outputs, truth = _simulated(400, 0)
    params = fit_params(outputs, truth)
    assert params.method == "log_linear"
    assert params.weights["forest"] > 2 * params.weights["cnn"]
    assert 0.5 <= params.review_threshold <= 0.9

    test_outputs, test_truth = _simulated(400, 1)

    def nll(p: EnsembleParams) -> float:
        probs = [combine(o, p).sequence.probabilities.get(t, 0.0) for o, t in zip(test_outputs, test_truth)]
        return float(-np.mean(np.log(np.clip(probs, 1e-6, 1))))

    assert nll(params) < nll(EnsembleParams())


def test_a_lone_model_is_tempered_by_its_own_weight_where_the_bundle_fits_one():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 0.2}, alone_weights={"cnn": 0.6})
    forest = _out("forest", {"FLAIR_2D": 0.7, "DWI": 0.3})
    cnn = _out("cnn", {"FLAIR_2D": 0.8, "T1_3D_PRE": 0.2})
    alone = combine({"cnn": cnn}, params).sequence
    expected = 0.8 ** 0.6 / (0.8 ** 0.6 + 0.2 ** 0.6 + 2 * 1e-4 ** 0.6)  # two zeros floored at 1e-4
    assert alone.label == "FLAIR_2D" and alone.probability == pytest.approx(expected, abs=1e-3)
    pooling_only = EnsembleParams.from_dict({**params.to_dict(), "alone_weights": {}})
    assert combine({"cnn": cnn}, pooling_only).sequence.probability < alone.probability - 0.1
    # beside the forest the CNN keeps its pooling weight: the alone weight changes nothing there
    assert (combine({"forest": forest, "cnn": cnn}, params).sequence.probabilities
            == combine({"forest": forest, "cnn": cnn}, pooling_only).sequence.probabilities)


def test_a_model_the_bundle_does_not_trust_alone_sends_its_lone_answers_to_review():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 1.0}, review_threshold=0.0,
                            review_alone=["cnn"])
    cnn = _out("cnn", {"DWI": 0.99, "FLAIR_2D": 0.01})
    forest = _out("forest", {"DWI": 0.99, "FLAIR_2D": 0.01})
    lone = combine({"cnn": cnn}, params)
    assert lone.needs_review and "only cnn answered: its answers alone always go to review" in lone.reasons
    assert not combine({"forest": forest}, params).needs_review
    assert not combine({"forest": forest, "cnn": cnn}, params).needs_review


def _overconfident(n: int, seed: int, right: float, top: float):
    """A model right ``right`` of the time, always at probability ``top``."""
    rng = np.random.default_rng(seed)
    outputs, truth = [], []
    for _ in range(n):
        t = CLASSES[rng.integers(len(CLASSES))]
        answer = t if rng.random() < right else [c for c in CLASSES if c != t][rng.integers(3)]
        rest = (1 - top) / (len(CLASSES) - 1)
        outputs.append(_out("cnn", {answer: top, **{c: rest for c in CLASSES if c != answer}}))
        truth.append(t)
    return outputs, truth


def test_fit_alone_weight_makes_the_shown_probability_match_how_often_the_model_is_right():
    outputs, truth = _overconfident(400, 5, right=0.5, top=0.97)
    w = fit_alone_weight(outputs, truth)
    assert w < 1
    shown = combine({"cnn": outputs[0]}, EnsembleParams(method="log_linear", alone_weights={"cnn": w}))
    assert 0.4 < shown.sequence.probability < 0.6  # right half the time: shown about a half, not 0.97
    timid, timid_truth = _overconfident(400, 6, right=0.95, top=0.6)
    assert fit_alone_weight(timid, timid_truth) > 1  # right more often than it says: sharpened
    assert fit_alone_weight([None, outputs[0]], ["DWI", ""]) is None  # nothing answered and labelled


def test_fit_params_needs_two_models():
    outputs, truth = _simulated(50, 2)
    forest_only = [{"forest": o["forest"]} for o in outputs]
    base = EnsembleParams(review_threshold=0.66)
    params = fit_params(forest_only, truth, base=base)
    assert params.method == "mean" and params.review_threshold == pytest.approx(0.66)




def _shifted_forest_only(n: int, seed: int):
    """Series only the forest answered (no pixels), from a vendor it never saw: right 60 %, always at 0.85."""
    rng = np.random.default_rng(seed)
    outputs, truth = [], []
    for _ in range(n):
        t = CLASSES[rng.integers(len(CLASSES))]
        top = t if rng.random() < 0.6 else [c for c in CLASSES if c != t][rng.integers(3)]
        outputs.append({"forest": _out("forest", {top: 0.85, **{c: 0.05 for c in CLASSES if c != top}})})
        truth.append(t)
    return outputs, truth


def test_series_one_model_answered_temper_that_models_weight_as_far_as_they_are_weighed():
    outputs, truth = _simulated(400, 0)
    shifted, shifted_truth = _shifted_forest_only(400, 3)
    alone = fit_params(outputs, truth)
    light = fit_params(outputs + shifted, truth + shifted_truth, sample_weight=[1.0] * 400 + [0.1] * 400)
    heavy = fit_params(outputs + shifted, truth + shifted_truth, sample_weight=[1.0] * 400 + [3.0] * 400)
    assert heavy.weights["forest"] < light.weights["forest"] < alone.weights["forest"]
    # the shifted series say nothing of the CNN, whose weight still comes from the series it answered
    assert heavy.weights["cnn"] < heavy.weights["forest"]
    # weight zero leaves a series out entirely
    ignored = fit_params(outputs + shifted, truth + shifted_truth, sample_weight=[1.0] * 400 + [0.0] * 400)
    assert ignored.weights == alone.weights and ignored.review_threshold == alone.review_threshold


def test_fit_params_refuses_a_sample_weight_of_the_wrong_length():
    outputs, truth = _simulated(20, 4)
    with pytest.raises(ValueError, match="19 values for 20 series"):
        fit_params(outputs, truth, sample_weight=[1.0] * 19)


def _disagreeing_pair():
    # each model's second choice is FLAIR: the product of the two puts FLAIR first
    forest = _out("forest", {"T1_3D_PRE": 0.55, "FLAIR_2D": 0.4, "DWI": 0.05})
    cnn = _out("cnn", {"DWI": 0.55, "FLAIR_2D": 0.4, "T1_3D_PRE": 0.05})
    return {"forest": forest, "cnn": cnn}


def test_pooling_never_answers_a_class_no_model_answered():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 0.8}, review_threshold=0.0)
    crowned = combine(_disagreeing_pair(), EnsembleParams.from_dict({**params.to_dict(), "crown_compromise": True}))
    assert crowned.sequence.label == "FLAIR_2D"  # what plain log-linear pooling does
    result = combine(_disagreeing_pair(), params)
    assert result.sequence.label == "T1_3D_PRE"  # the models' answer with the more pooled support
    assert result.needs_review
    assert any("pooling favoured FLAIR_2D" in r and "cnn DWI" in r and "forest T1_3D_PRE" in r for r in result.reasons)
    # the compromise is demoted below both answers, not dropped: it stays among the runners-up
    assert 0 < result.sequence.probabilities["FLAIR_2D"] < result.sequence.probabilities["DWI"]


def test_a_rule_against_every_models_answer_still_finds_the_best_of_the_rest():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 1.0}, review_threshold=0.0)

    def rule_out_both(p: TaskPrediction):
        return p.restricted_to(["FLAIR_2D", "T1_3D_POST"]), "ruled out", True

    result = combine(_disagreeing_pair(), params, adjust=rule_out_both)
    assert result.sequence.label == "FLAIR_2D" and result.sequence.probability > 0.9


def test_agreeing_models_and_a_lone_model_are_left_as_pooled():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 1.0}, review_threshold=0.0)
    pair = _disagreeing_pair()
    alone = combine({"forest": pair["forest"]}, params)
    assert alone.sequence.label == "T1_3D_PRE" and not alone.needs_review
    agree = combine({"forest": pair["forest"], "cnn": _out("cnn", {"T1_3D_PRE": 0.6, "FLAIR_2D": 0.4})}, params)
    assert agree.sequence.label == "T1_3D_PRE" and not any("pooling favoured" in r for r in agree.reasons)


def _with_contrast(name: str, probs: dict[str, float], post: float) -> ModelOutput:
    out = _out(name, probs)
    out.attributes["contrast"] = TaskPrediction.from_probabilities({"PRE": 1.0 - post, "POST": post})
    return out


def test_a_contrast_answer_contradicting_the_sequence_answer_sends_the_series_to_review():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0}, review_threshold=0.0)
    # a 3-D FLASH the sequence head calls post-contrast for its technique, the contrast head pre
    contradicted = combine({"forest": _with_contrast("forest", {"T1_3D_POST": 0.94, "T1_3D_PRE": 0.06}, 0.04)},
                           params)
    assert contradicted.needs_review
    assert any("contrast answer is PRE (0.96)" in r and "T1_3D_POST is post-contrast" in r
               for r in contradicted.reasons)
    agreeing = combine({"forest": _with_contrast("forest", {"T1_3D_POST": 0.94, "T1_3D_PRE": 0.06}, 0.9)}, params)
    assert not agreeing.needs_review
    no_implied = combine({"forest": _with_contrast("forest", {"FLAIR_2D": 0.94, "DWI": 0.06}, 0.04)}, params)
    assert not no_implied.needs_review  # FLAIR is acquired before or after contrast alike
    off = EnsembleParams.from_dict({**params.to_dict(), "flag_contrast_contradiction": False})
    assert not combine({"forest": _with_contrast("forest", {"T1_3D_POST": 0.94, "T1_3D_PRE": 0.06}, 0.04)},
                       off).needs_review


def test_contrast_settled_by_evidence_beyond_the_models_is_not_a_contradiction():
    params = EnsembleParams(method="log_linear", weights={"forest": 1.0}, review_threshold=0.0)

    def named_agent(p: TaskPrediction):  # models.context: the header names an agent, pre becomes post
        return TaskPrediction.from_probabilities({"T1_3D_POST": p.probability, "T1_3D_PRE": 1 - p.probability}), \
            "post-contrast: its ContrastBolusAgent names an agent", False

    result = combine({"forest": _with_contrast("forest", {"T1_3D_PRE": 0.9, "T1_3D_POST": 0.1}, 0.1)}, params,
                     adjust=named_agent)
    assert result.sequence.label == "T1_3D_POST" and not result.needs_review
