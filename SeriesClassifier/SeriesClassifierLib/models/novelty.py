"""What the models cannot know: a series unlike anything they were trained on.

A forest votes confidently on any row of numbers, so its probability alone cannot say "I
have never seen this". These checks can, from the header, and each returns the reason a
person reads in the review list:

- the body part is not a head: the models know brain MRI only;
- the header uses DICOM defined terms of ScanningSequence or SequenceVariant never seen in
  training (RM research mode, SERVICE): a technique the models do not know. ScanOptions and
  ImageType values past the second are vendor words, new at every site, so they are not checked;
- a physics value lies outside what the predicted class had in training (a "DWI" with
  TE 3 ms is not a DWI the forest knows).

The CNN has its own check, on the pixels: ``EmbeddingNovelty``, the distance from a series'
image embedding to the nearest images of its training kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..series import Series
from .physics import number

# Any of these inside BodyPartExamined means a head (DICOM defined terms and what sites write).
HEAD_WORDS = ("HEAD", "BRAIN", "SKULL", "NEURO", "CRAN", "CEREB", "KOPF", "SCHAEDEL", "SCHADEL", "TETE", "CABEZA",
              "ORBIT", "SELLA", "PITUITARY", "HYPOPHY", "IAC", "FACE")
# Token prefixes of the small sets of DICOM defined terms: a new one is news.
DEFINED_TERM_PREFIXES = ("ss:", "sv:")
# (header keyword, label, unit): values whose training range per class is kept
RANGE_VALUES = (("RepetitionTime", "TR", " ms"), ("EchoTime", "TE", " ms"), ("InversionTime", "TI", " ms"),
                ("FlipAngle", "flip", "°"))
RANGE_FACTOR = 1.5  # a value counts as strange beyond 1.5 × the 99.5 % point or under the 0.5 % point / 1.5


def not_brain_reason(series: Series) -> str | None:
    part = str(series.header.get("BodyPartExamined") or "").strip()
    if not part or any(w in part.upper() for w in HEAD_WORDS):
        return None
    return f"BodyPartExamined is {part!r}: the models know brain MRI only"


def unseen_terms(tokens: Sequence[str], known: set[str]) -> list[str]:
    """Defined-term tokens of a header that training never saw."""
    return sorted(t for t in tokens if t.startswith(DEFINED_TERM_PREFIXES) and t not in known)


def class_ranges(series: Sequence[Series], labels: Sequence[str | None]) -> dict[str, dict[str, list[float]]]:
    """Per class, the 0.5–99.5 % range of each value in ``RANGE_VALUES`` over its training series."""
    values: dict[str, dict[str, list[float]]] = {}
    for s, label in zip(series, labels):
        if label is None:
            continue
        for key, *_ in RANGE_VALUES:
            v = number(s.header.get(key))
            if not math.isnan(v):
                values.setdefault(label, {}).setdefault(key, []).append(v)
    return {
        label: {key: [float(np.percentile(v, 0.5)), float(np.percentile(v, 99.5))]
                for key, v in per_key.items() if len(v) >= 5}
        for label, per_key in values.items()
    }


def out_of_range(header: dict[str, Any], label: str, ranges: dict[str, dict[str, list[float]]]) -> list[str]:
    """'TE 3 ms (DWI in training: 45–130 ms)' for each value the predicted class never had."""
    out = []
    for key, name, unit in RANGE_VALUES:
        v = number(header.get(key))
        lo_hi = ranges.get(label, {}).get(key)
        if math.isnan(v) or lo_hi is None:
            continue
        lo, hi = lo_hi
        if v < lo / RANGE_FACTOR or v > hi * RANGE_FACTOR:
            out.append(f"{name} {v:.3g}{unit} ({label} in training: {lo:.3g}–{hi:.3g}{unit})")
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class EmbeddingNovelty:
    """Images unlike the CNN's training images: cosine distance to the k nearest reference embeddings.

    The reference is the mean embedding of generated series like the training data; the threshold a
    percentile of the same distance on held-out generated profiles, so nothing real sets it. On the
    real development set the distance separates the CNN's wrong answers from its right ones better
    than its own confidence does (docs/REAL_DATA.md). Beyond the threshold the CNN's answer is marked
    unfamiliar: beside the forest it still votes (on the development set its dissent caught more
    errors than dropping it saved), alone it is a guess (outcome "unknown").
    """

    reference: np.ndarray  # (n, D) unit vectors
    threshold: float
    k: int = 5
    percentile: float = 95.0

    @classmethod
    def fit(cls, reference: np.ndarray, held_out: np.ndarray, percentile: float = 95.0, k: int = 5
            ) -> EmbeddingNovelty:
        novelty = cls(_unit_rows(reference), threshold=float("inf"), k=k, percentile=percentile)
        novelty.threshold = float(np.percentile(novelty.distances(held_out), percentile))
        return novelty

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """(m, D) series embeddings → (m,) mean cosine distance to their k nearest references."""
        similarity = _unit_rows(np.atleast_2d(embeddings)) @ self.reference.T
        k = min(self.k, self.reference.shape[0])
        return 1.0 - np.sort(similarity, axis=1)[:, -k:].mean(axis=1)

    def note(self, embedding: np.ndarray) -> str | None:
        """Why the CNN should not be trusted on this series, or None."""
        distance = float(self.distances(embedding)[0])
        if distance <= self.threshold:
            return None
        return (f"images unlike its training images (embedding distance {distance:.2f}; "
                f"{self.percentile:g} % of held-out generated series lie within {self.threshold:.2f})")
