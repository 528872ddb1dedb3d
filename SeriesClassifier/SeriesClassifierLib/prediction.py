"""What the models say about one series, and what the store and exports read.

Plain dataclasses with a JSON round trip, so the Slicer worker can stream them
one line per series and the label store can keep them as they were.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TaskPrediction:
    """One task's answer: the label, its probability, the full distribution."""

    label: str
    probability: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        # ties broken by name: tree votes tie often, and a stored distribution comes back in another order
        return sorted(self.probabilities.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    def top_text(self, k: int = 3) -> str:
        """``T1_3D_POST:0.7000;FLAIR_2D:0.2000;PD:0.1000``: the one spelling of top-k in every table we write."""
        return ";".join(f"{label}:{p:.4f}" for label, p in self.top(k))

    def restricted_to(self, codes: list[str]) -> TaskPrediction:
        """The answer among ``codes`` only, renormalised; all equal when the distribution gives them nothing."""
        mass = {c: self.probabilities.get(c, 0.0) for c in codes}
        total = sum(mass.values())
        return TaskPrediction.from_probabilities({c: (p / total if total > 0 else 1.0 / len(codes))
                                                  for c, p in mass.items()})

    @classmethod
    def from_probabilities(cls, probabilities: dict[str, float]) -> TaskPrediction:
        label, p = max(probabilities.items(), key=lambda kv: kv[1])
        return cls(label=label, probability=float(p), probabilities={k: float(v) for k, v in probabilities.items()})


@dataclass
class ModelOutput:
    """What one model (forest, cnn) said, before the ensemble."""

    model: str
    sequence: TaskPrediction | None = None
    orientation: TaskPrediction | None = None
    attributes: dict[str, TaskPrediction] = field(default_factory=dict)
    reason: str = ""
    slice_profile: list[dict[str, float]] | None = None  # per sampled slice: sequence label -> probability
    novelty: list[str] = field(default_factory=list)  # why this series is unlike the model's training data
    unfamiliar: str | None = None  # why this series is unlike what the model learnt from: its answer is a guess
    facts: dict[str, str] = field(default_factory=dict)  # what the model's own input proves (vocabulary rules)


# What became of one series, for people and exports: the models' answer stands, a person should look,
# the models cannot tell (their best guess is kept only as a hint), or the series could not be classified.
CLASSIFIED, REVIEW, UNKNOWN, FAILED = "classified", "review", "unknown", "failed"
OUTCOMES = (CLASSIFIED, REVIEW, UNKNOWN, FAILED)


@dataclass
class SeriesPrediction:
    series_uid: str
    study_uid: str = ""
    patient_id: str = ""
    series_number: int | None = None
    series_description: str = ""
    n_images: int = 0  # files
    n_frames: int = 0  # image frames over all files (an enhanced multi-frame file holds many)
    image_type: list[str] = field(default_factory=list)  # ImageType values (TRACEW, EXP, MPR … pick BIDS names)
    sequence: TaskPrediction | None = None
    orientation: TaskPrediction | None = None
    attributes: dict[str, TaskPrediction] = field(default_factory=dict)
    needs_review: bool = False
    reasons: list[str] = field(default_factory=list)
    models: dict[str, ModelOutput] = field(default_factory=dict)
    slice_profile: list[dict[str, float]] | None = None  # per sampled slice: label → probability
    model_version: str = ""
    error: str | None = None  # set when the series could not be classified; the rest still ran
    unknown: str | None = None  # why the models cannot tell what this series is (its guess stays in sequence)
    # the series this one was derived from (an ADC's DWI, a MIP's TOF), found in the study's headers; "" when none
    source_series_uid: str = ""
    source_series_number: int | None = None

    @property
    def outcome(self) -> str:
        """``classified``, ``review``, ``unknown`` or ``failed`` (see OUTCOMES)."""
        if self.error or self.sequence is None:
            return FAILED
        if self.unknown:
            return UNKNOWN
        return REVIEW if self.needs_review else CLASSIFIED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def task(self, head: str) -> TaskPrediction | None:
        """What one head said: ``sequence``, ``orientation`` or an auxiliary attribute's code."""
        if head in ("sequence", "orientation"):
            return getattr(self, head)
        return self.attributes.get(head)

    def predicted_class(self, head: str) -> str | None:
        """The class a head predicted (the default target of Grad-CAM), None when the head said nothing."""
        task = self.task(head)
        return task.label if task is not None else None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeriesPrediction:
        d = dict(d)
        for key in ("sequence", "orientation"):
            if d.get(key) is not None:
                d[key] = TaskPrediction(**d[key])
        d["attributes"] = {k: TaskPrediction(**v) for k, v in (d.get("attributes") or {}).items()}
        models = {}
        for name, m in (d.get("models") or {}).items():
            m = dict(m)
            for key in ("sequence", "orientation"):
                if m.get(key) is not None:
                    m[key] = TaskPrediction(**m[key])
            m["attributes"] = {k: TaskPrediction(**v) for k, v in (m.get("attributes") or {}).items()}
            models[name] = ModelOutput(**m)
        d["models"] = models
        return cls(**d)
