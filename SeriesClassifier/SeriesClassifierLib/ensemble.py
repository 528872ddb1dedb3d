"""Combining what the models said into one answer per task, and deciding what needs review.

Each model's probabilities are already calibrated by the model itself; the ensemble is a
weighted mean over whichever models answered a task (forest alone, CNN alone, or both).
Orientation from geometry is exact and overrides the others; a model that sees it
differently is mentioned in the reasons. A series goes to review when the top sequence
probability is under the threshold, when the models' top sequences disagree, or when no
model could say anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .prediction import ModelOutput, TaskPrediction

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class EnsembleParams:
    weights: dict[str, float] = field(default_factory=lambda: {"forest": 1.0, "cnn": 1.0})
    review_threshold: float = 0.7  # top sequence probability below this → needs_review
    attribute_review_threshold: float = 0.0  # 0: attributes never send a series to review on their own
    exact_orientation_model: str = "forest"  # whose orientation comes from geometry (exact when present)
    flag_disagreement: bool = True

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
        path = Path(folder) / ENSEMBLE_FILE
        if not path.is_file():
            return cls()
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


class Combined(NamedTuple):
    sequence: TaskPrediction | None
    orientation: TaskPrediction | None
    attributes: dict[str, TaskPrediction]
    needs_review: bool
    reasons: list[str]


def _mean(predictions: list[tuple[float, TaskPrediction]]) -> TaskPrediction | None:
    total = sum(w for w, _ in predictions)
    if not predictions or total <= 0:
        return None
    mixed: dict[str, float] = {}
    for w, p in predictions:
        for label, prob in p.probabilities.items():
            mixed[label] = mixed.get(label, 0.0) + w * prob / total
    return TaskPrediction.from_probabilities(mixed)


def _weight(params: EnsembleParams, name: str) -> float:
    return float(params.weights.get(name, 1.0))


def combine(outputs: dict[str, ModelOutput], params: EnsembleParams | None = None) -> Combined:
    """The ensemble answer from any subset of models (``{name: ModelOutput}``)."""
    params = params or EnsembleParams()
    reasons: list[str] = []
    review: list[str] = []
    answered = {n: o for n, o in outputs.items() if o is not None}

    seq_votes = [(_weight(params, n), o.sequence) for n, o in answered.items() if o.sequence is not None]
    sequence = _mean(seq_votes)

    exact = answered.get(params.exact_orientation_model)
    if exact is not None and exact.orientation is not None:
        orientation = exact.orientation
        for n, o in answered.items():
            if n != params.exact_orientation_model and o.orientation and o.orientation.label != orientation.label:
                reasons.append(f"{n} sees {o.orientation.label}; geometry says {orientation.label}")
    else:
        orientation = _mean([(_weight(params, n), o.orientation) for n, o in answered.items() if o.orientation])

    attributes: dict[str, TaskPrediction] = {}
    codes = sorted({code for o in answered.values() for code in o.attributes})
    for code in codes:
        mean = _mean([(_weight(params, n), o.attributes[code]) for n, o in answered.items() if code in o.attributes])
        if mean is not None:
            attributes[code] = mean
            if mean.probability < params.attribute_review_threshold:
                review.append(f"{code} uncertain ({mean.label} {mean.probability:.2f})")

    for n, o in answered.items():
        if o.reason:
            reasons.append(f"{n}: {o.reason}")

    if sequence is None:
        review.append("no model could classify the sequence")
    else:
        if sequence.probability < params.review_threshold:
            runner = [f"{lbl} {p:.2f}" for lbl, p in sequence.top(3)[1:] if p > 0.05]
            review.append(
                f"low confidence {sequence.label} {sequence.probability:.2f}"
                + (f" (also {', '.join(runner)})" if runner else "")
            )
        tops = {n: o.sequence.label for n, o in answered.items() if o.sequence is not None}
        if params.flag_disagreement and len(set(tops.values())) > 1:
            review.append("models disagree: " + ", ".join(f"{n} {lbl}" for n, lbl in tops.items()))
    if orientation is None:
        reasons.append("orientation unknown (no image geometry)")
    return Combined(sequence, orientation, attributes, bool(review), review + reasons)
