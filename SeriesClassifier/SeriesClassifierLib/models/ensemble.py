"""Combining what the models said into one answer per task, and deciding what needs review.

Each model's probabilities are already calibrated by the model itself. When one model
answered a task its distribution is the answer. When several did, they are pooled either by
a weighted mean ("mean", the unfitted default) or log-linearly ("log_linear": p ∝ Π p_m^w_m,
the weights fitted by ``fit_params`` on held-out data, so that they both weigh the models
and calibrate the pooled result: a logistic stacking with one parameter per model).
Orientation from geometry is exact and overrides the others; a model that sees it
differently is mentioned in the reasons. Pooling answers only a class some model answered: a
class both models rank second is demoted below their own answers. A series goes to review when
the top sequence probability is under the threshold, when a model holds a different top
sequence with at least ``disagreement_confidence``, when pooling favoured a class no model
answered, when the pooled contrast answer contradicts the contrast the sequence answer implies, or when no
model could say anything. A model that is the only voter is tempered by its own weight when the bundle
fits one (``alone_weights``, ``fit_alone_weight``), and goes to review when the bundle says its lone answers
must (``review_alone``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import BundleError
from ..prediction import ModelOutput, TaskPrediction
from ..vocabulary import load_vocabulary

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class EnsembleParams:
    weights: dict[str, float] = field(default_factory=lambda: {"forest": 1.0, "cnn": 1.0})
    review_threshold: float = 0.7  # top sequence probability below this → needs_review
    unknown_threshold: float = 0.0  # below this the answer is no better than a guess: outcome "unknown" (0: never)
    attribute_review_threshold: float = 0.0  # 0: attributes never send a series to review on their own
    exact_orientation_model: str = "forest"  # whose orientation comes from geometry (exact when present)
    flag_disagreement: bool = True
    disagreement_confidence: float = 0.0  # a dissenting model counts when its own top probability reaches this
    method: str = "mean"  # "mean" or "log_linear"
    # beside a familiar model, one whose inputs are unlike its training (ModelOutput.unfamiliar) still votes
    unfamiliar_votes: bool = True
    # log-linear pooling may answer a class that no voting model ranks first (see ``_models_answer``)
    crown_compromise: bool = False
    # review when the pooled contrast answer contradicts the contrast the sequence answer implies
    flag_contrast_contradiction: bool = True
    # a model's weight when it is the only voter (its temperature alone); absent: its weight beside the others,
    # which was fitted where the others speak too and says little about how far to trust it without them
    alone_weights: dict[str, float] = field(default_factory=dict)
    # models whose answer, when they are the only voter, always goes to review
    review_alone: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnsembleParams:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / ENSEMBLE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> EnsembleParams:
        """The folder's settings (defaults without a file); BundleError naming the file when any is unusable."""
        path = Path(folder) / ENSEMBLE_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BundleError(f"{path}: not readable ({e})") from e
        if not isinstance(data, dict):
            raise BundleError(f"{path}: not a JSON object")
        problem = _params_problem(data)
        if problem:
            raise BundleError(f"{path}: {problem}")
        return cls.from_dict(data)


def _finite(value: Any, low: float, high: float) -> bool:
    # bool is an int: "true" is no weight; NaN fails every comparison, so it fails here too
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _params_problem(d: dict[str, Any]) -> str | None:
    """What makes ensemble settings unusable (NaN weights turn every series into one class, unflagged)."""
    weights = d.get("weights", {})
    problem = _weights_problem(weights, "weights")
    if problem:
        return problem
    if weights and not any(w > 0 for w in weights.values()):
        return "every weight is 0: no model would count"
    problem = _weights_problem(d.get("alone_weights", {}), "alone_weights")
    if problem:
        return problem
    review_alone = d.get("review_alone", [])
    if not isinstance(review_alone, list) or not all(isinstance(n, str) for n in review_alone):
        return "review_alone must be a list of model names"
    for key in ("review_threshold", "attribute_review_threshold", "disagreement_confidence"):
        if key in d and not _finite(d[key], 0.0, 1.0):
            return f"{key} is {d[key]!r}, not a number in 0..1"
    if d.get("method", "mean") not in ("mean", "log_linear"):
        return f"method {d.get('method')!r} is neither 'mean' nor 'log_linear'"
    for key in ("flag_disagreement", "unfamiliar_votes", "crown_compromise", "flag_contrast_contradiction"):
        if not isinstance(d.get(key, True), bool):
            return f"{key} must be true or false"
    return None


def _weights_problem(weights: Any, key: str) -> str | None:
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        return f"{key} must be an object of model name to number"
    which = "" if key == "weights" else f"{key}: "
    for name, w in weights.items():
        if not _finite(w, 0.0, 1e3):
            return f"{which}weight of {name!r} is {w!r}, not a finite number in 0..1000"
    return None


def voting_outputs(outputs: dict[str, ModelOutput | None], params: EnsembleParams) -> dict[str, ModelOutput | None]:
    """The outputs that vote: an unfamiliar model is left out beside a familiar one unless
    ``params.unfamiliar_votes``; when every model is unfamiliar, all still answer (as a guess)."""
    if params.unfamiliar_votes:
        return dict(outputs)
    familiar = {n: o for n, o in outputs.items() if o is not None and not o.unfamiliar}
    return familiar or dict(outputs)


class Combined(NamedTuple):
    sequence: TaskPrediction | None
    orientation: TaskPrediction | None
    attributes: dict[str, TaskPrediction]
    needs_review: bool
    reasons: list[str]


_FLOOR = 1e-4  # a model's zero is never certain: keeps one model from vetoing a class outright


def _pool(predictions: list[tuple[float, TaskPrediction]], method: str = "mean") -> TaskPrediction | None:
    # Log-linear weights are fitted on held-out data: they also calibrate a model that answers alone.
    if method == "log_linear" and predictions:
        return _log_linear(predictions)
    if len(predictions) == 1:
        return predictions[0][1]
    return _mean(predictions)


def _log_linear(predictions: list[tuple[float, TaskPrediction]]) -> TaskPrediction:
    labels = sorted({label for _, p in predictions for label in p.probabilities})
    z = np.zeros(len(labels))
    for w, p in predictions:
        z += w * np.log(np.clip([p.probabilities.get(label, 0.0) for label in labels], _FLOOR, 1.0))
    e = np.exp(z - z.max())
    return TaskPrediction.from_probabilities(dict(zip(labels, (e / e.sum()).tolist())))


def _mean(predictions: list[tuple[float, TaskPrediction]]) -> TaskPrediction | None:
    total = sum(w for w, _ in predictions)
    if not predictions or total <= 0:
        return None
    mixed: dict[str, float] = {}
    for w, p in predictions:
        for label, prob in p.probabilities.items():
            mixed[label] = mixed.get(label, 0.0) + w * prob / total
    return TaskPrediction.from_probabilities(mixed)


_DEMOTED = 1e-3  # what a compromise class keeps of its pooled probability: its order among the rest survives


def _models_answer(pooled: TaskPrediction, tops: dict[str, TaskPrediction]) -> tuple[TaskPrediction, str] | None:
    """The pooled answer moved back to a class some voting model ranks first, or None when it is one already.

    Two confident models that disagree (forest BOLD 0.7, CNN DWI 0.9) multiply into a third class each
    ranks second (ASL): a class neither model answered. The other classes are demoted, not removed, so a
    physics rule that rules out every model's answer still finds the best of the rest.
    """
    answers = {p.label for p in tops.values()}
    if len(tops) < 2 or pooled.label in answers:
        return None
    demoted = TaskPrediction.from_probabilities(
        {c: p if c in answers else p * _DEMOTED for c, p in pooled.probabilities.items()})
    said = ", ".join(f"{n} {p.label}" for n, p in sorted(tops.items()))
    return demoted, f"pooling favoured {pooled.label} ({pooled.probability:.2f}), which no model answered ({said})"


def _contrast_contradiction(sequence: TaskPrediction, contrast: TaskPrediction | None) -> str | None:
    """Why the models' contrast answer contradicts the contrast their sequence answer implies, or None.

    The sequence head weighs the technique (a 3-D FLASH is post-contrast more often than not) where the
    contrast head weighs contrast evidence; when they part, the pre/post call is not settled.
    """
    implied = load_vocabulary().sequence(sequence.label).contrast
    if not implied or contrast is None or contrast.label == implied:
        return None
    return (f"the models' contrast answer is {contrast.label} ({contrast.probability:.2f}), "
            f"where {sequence.label} is {implied.lower()}-contrast")


def _trusted_confidence(params: EnsembleParams, name: str, prediction: TaskPrediction) -> float:
    """A model's top probability as far as its fitted weight trusts it (p^w renormalised, log-linear only)."""
    if params.method != "log_linear":
        return prediction.probability
    return _log_linear([(_weight(params, name), prediction)]).probability


def _weight(params: EnsembleParams, name: str, alone: bool = False) -> float:
    if alone and name in params.alone_weights:
        return float(params.alone_weights[name])
    return float(params.weights.get(name, 1.0))


# adjust(pooled sequence) → (sequence, note or None, confirm): evidence beyond the models, applied before the
# review rules; ``confirm`` sends the series to review with the note (a hint, not a fact of the header)
Adjust = Callable[[TaskPrediction], "tuple[TaskPrediction, str | None, bool]"]


def combine(outputs: dict[str, ModelOutput], params: EnsembleParams | None = None,
            adjust: Adjust | None = None) -> Combined:
    """The ensemble answer from any subset of models (``{name: ModelOutput}``).

    ``adjust`` may change the pooled sequence (study context: pre → post contrast) before the review rules
    look at it, so the reasons name the answer the user sees.
    """
    params = params or EnsembleParams()
    reasons: list[str] = []
    review: list[str] = []
    answered = {n: o for n, o in outputs.items() if o is not None}
    alone = len(answered) == 1

    def weight(name: str) -> float:
        return _weight(params, name, alone)

    seq_votes = [(weight(n), o.sequence) for n, o in answered.items() if o.sequence is not None]
    sequence = _pool(seq_votes, params.method)
    moved = None if sequence is None or params.crown_compromise else _models_answer(
        sequence, {n: o.sequence for n, o in answered.items() if o.sequence is not None})
    if moved is not None:
        sequence = moved[0]
        review.append(moved[1])
    pooled_label = sequence.label if sequence is not None else None
    if sequence is not None and adjust is not None:
        sequence, note, confirm = adjust(sequence)
        if note:
            (review if confirm else reasons).append(note)

    exact = answered.get(params.exact_orientation_model)
    if exact is not None and exact.orientation is not None:
        orientation = exact.orientation
        for n, o in answered.items():
            if n != params.exact_orientation_model and o.orientation and o.orientation.label != orientation.label:
                reasons.append(f"{n} sees {o.orientation.label}; geometry says {orientation.label}")
    else:
        orientation = _pool([(weight(n), o.orientation) for n, o in answered.items() if o.orientation],
                            params.method)

    attributes: dict[str, TaskPrediction] = {}
    codes = sorted({code for o in answered.values() for code in o.attributes})
    for code in codes:
        mean = _pool([(weight(n), o.attributes[code]) for n, o in answered.items() if code in o.attributes],
                     params.method)
        if mean is not None:
            attributes[code] = mean
            if mean.probability < params.attribute_review_threshold:
                review.append(f"{code} uncertain ({mean.label} {mean.probability:.2f})")

    for n, o in answered.items():
        if o.reason:
            reasons.append(f"{n}: {o.reason}")
    # evidence beyond the models (a named agent) settles contrast: only the models' own answer is checked
    if params.flag_contrast_contradiction and sequence is not None and sequence.label == pooled_label:
        contradiction = _contrast_contradiction(sequence, attributes.get("contrast"))
        if contradiction:
            review.append(contradiction)

    if sequence is None:
        review.append("no model could classify the sequence")
    else:
        # a model that ran and said nothing (pixels unreadable, say) leaves the answer to the others: look at it
        review += [f"{n} gave no answer" for n, o in answered.items() if o.sequence is None]
        review += [f"only {n} answered: its answers alone always go to review"
                   for n in answered if alone and n in params.review_alone]
        if sequence.probability < params.review_threshold:
            runner = [f"{lbl} {p:.2f}" for lbl, p in sequence.top(3)[1:] if p > 0.05]
            review.append(
                f"low confidence {sequence.label} {sequence.probability:.2f}"
                + (f" (also {', '.join(runner)})" if runner else "")
            )
        tops = {n: o.sequence for n, o in answered.items() if o.sequence is not None}
        dissent = [p for n, p in tops.items()
                   if p.label != sequence.label and _trusted_confidence(params, n, p) >= params.disagreement_confidence]
        if params.flag_disagreement and len(tops) > 1 and dissent:
            review.append("models disagree: " + ", ".join(f"{n} {p.label} {p.probability:.2f}"
                                                          for n, p in tops.items()))
    if orientation is None:
        reasons.append("orientation unknown (no image geometry)")
    return Combined(sequence, orientation, attributes, bool(review), review + reasons)


def _log_matrix(predictions: list[TaskPrediction], classes: list[str]) -> np.ndarray:
    return np.log(np.clip([[p.probabilities.get(c, 0.0) for c in classes] for p in predictions], _FLOOR, 1.0))


def _log_matrix_or_zero(predictions: list[TaskPrediction | None], classes: list[str]) -> np.ndarray:
    """``_log_matrix`` with a row of zeros (log 1) where the model gave no answer: it leaves the pool."""
    out = np.zeros((len(predictions), len(classes)))
    given = [i for i, p in enumerate(predictions) if p is not None]
    if given:
        out[given] = _log_matrix([predictions[i] for i in given], classes)
    return out


def fit_params(
    outputs: list[dict[str, ModelOutput]],
    truth: list[str],
    base: EnsembleParams | None = None,
    target_accuracy: float = 0.99,
    grid: np.ndarray | None = None,
    sample_weight: Sequence[float] | None = None,
) -> EnsembleParams:
    """Log-linear weights and review threshold fitted on held-out series (sklearn-style ``fit``).

    ``outputs[i]`` holds each model's answer for series i, ``truth[i]`` its sequence code. The
    weights minimise the (``sample_weight``-weighted) negative log-likelihood of the truth under
    the pooled distribution (grid search: two or three numbers do not need an optimiser); a series
    some model could not answer pools the others, as ``combine`` does, and so informs only their
    weights. The review threshold is the lowest pooled confidence whose accepted series reach
    ``target_accuracy``, counted on the series every model answered.
    """
    params = EnsembleParams.from_dict((base or EnsembleParams()).to_dict())
    outputs = [voting_outputs(o, params) for o in outputs]  # weigh the models where they vote
    names = sorted({n for o in outputs for n, m in o.items() if m is not None and m.sequence is not None})
    weight = np.ones(len(outputs)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if len(weight) != len(outputs):
        raise ValueError(f"sample_weight has {len(weight)} values for {len(outputs)} series")
    answered = [[o.get(n) is not None and o[n].sequence is not None for n in names] for o in outputs]
    rows = [i for i, a in enumerate(answered) if truth[i] and any(a) and weight[i] > 0]
    if len(names) < 2 or not any(all(answered[i]) for i in rows):
        return params
    classes = sorted({c for i in rows for n, a in zip(names, answered[i]) if a
                      for c in outputs[i][n].sequence.probabilities} | {truth[i] for i in rows})
    logs = [_log_matrix_or_zero([outputs[i][n].sequence if answered[i][k] else None for i in rows], classes)
            for k, n in enumerate(names)]
    y = np.array([classes.index(truth[i]) for i in rows])
    w_rows = weight[rows] / weight[rows].sum()
    grid = np.exp(np.linspace(np.log(0.1), np.log(8.0), 36)) if grid is None else np.asarray(grid)
    best, best_w = np.inf, None
    for w in np.stack(np.meshgrid(*[grid] * len(names), indexing="ij"), -1).reshape(-1, len(names)):
        nll = _nll(sum(wi * li for wi, li in zip(w, logs)), y, w_rows)
        if nll < best:
            best, best_w = nll, w
    params.method = "log_linear"
    params.weights = {n: round(float(w), 4) for n, w in zip(names, best_w)}
    complete = np.array([all(answered[i]) for i in rows])
    z = sum(wi * li[complete] for wi, li in zip(best_w, logs))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    from .calibration import review_threshold

    params.review_threshold = round(review_threshold(p.max(axis=1), p.argmax(axis=1) == y[complete],
                                                     target_accuracy), 4)
    return params


def fit_alone_weight(outputs: Sequence[ModelOutput | None], truth: Sequence[str],
                     grid: np.ndarray | None = None) -> float | None:
    """The weight (inverse temperature) that makes one model's own answers likeliest where it answers alone.

    Its pooling weight is fitted beside the other models and shrinks as they carry the answer; alone it would
    show a number that means little. None without an answered, labelled series to fit on.
    """
    rows = [(o.sequence, t) for o, t in zip(outputs, truth) if o is not None and o.sequence is not None and t]
    if not rows:
        return None
    classes = sorted({c for p, _ in rows for c in p.probabilities} | {t for _, t in rows})
    logs = _log_matrix([p for p, _ in rows], classes)
    y = np.array([classes.index(t) for _, t in rows])
    grid = np.exp(np.linspace(np.log(0.1), np.log(8.0), 36)) if grid is None else np.asarray(grid)
    uniform = np.full(len(y), 1.0 / len(y))
    return round(float(min(grid, key=lambda w: _nll(w * logs, y, uniform))), 4)


def _nll(z: np.ndarray, y: np.ndarray, row_weight: np.ndarray) -> float:
    """Weighted negative log-likelihood of classes ``y`` under softmax(``z``) (rows: series, columns: classes)."""
    z = z - z.max(axis=1, keepdims=True)
    return float(np.sum(row_weight * (np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])))
