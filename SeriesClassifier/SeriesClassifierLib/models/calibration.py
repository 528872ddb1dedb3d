"""Probability calibration and the numbers that judge it.

Temperature scaling: one scalar per task, fit by minimising the negative log-likelihood
of held-out predictions. It keeps the ranking (top-1 never changes) and only makes the
probabilities honest, which is what the review threshold relies on. For a forest the
held-out predictions come from out-of-bag votes (each tree scores the samples it did not
see), so calibration needs no data taken away from training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-4


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, dtype=float), _EPS, 1.0))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale probabilities (rows sum to 1) by a temperature: p^(1/T), renormalised."""
    z = _log(probabilities) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(probabilities[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.mean(np.log(p)))


@dataclass
class TemperatureScaler:
    """sklearn-like: fit(probabilities, y) on held-out predictions, transform(probabilities)."""

    temperature: float = 1.0

    def fit(self, probabilities: np.ndarray, y: np.ndarray) -> TemperatureScaler:
        probabilities = np.asarray(probabilities, dtype=float)
        y = np.asarray(y, dtype=int)
        if len(y) == 0 or probabilities.shape[1] < 2:
            self.temperature = 1.0
            return self

        def loss(log_t: float) -> float:
            return negative_log_likelihood(apply_temperature(probabilities, float(np.exp(log_t))), y)

        from scipy.optimize import minimize_scalar  # fitting only; loading a bundle must not import scipy

        result = minimize_scalar(loss, bounds=(np.log(0.25), np.log(10.0)), method="bounded")
        self.temperature = float(np.exp(result.x))
        return self

    def transform(self, probabilities: np.ndarray) -> np.ndarray:
        return apply_temperature(probabilities, self.temperature)


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 probability: mean |accuracy - confidence| over equal-width bins, weighted by count."""
    probabilities = np.asarray(probabilities, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return float("nan")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def review_threshold(
    confidence: np.ndarray, correct: np.ndarray, target_accuracy: float = 0.99, bounds: tuple[float, float] = (0.5, 0.9)
) -> float:
    """Smallest confidence threshold whose accepted predictions reach the target accuracy.

    Predictions below it go to review. Clipped to ``bounds`` so a tiny or perfect held-out
    set neither sends everything to review nor nothing at all.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    lo, hi = bounds
    for t in np.unique(np.concatenate([[lo], confidence])):
        if t < lo:
            continue
        accepted = confidence >= t
        if not accepted.any():
            break
        if correct[accepted].mean() >= target_accuracy:
            return float(min(max(t, lo), hi))
    return float(hi)
