"""The review threshold (and the dissent bar) fitted with every review rule in place, not the confidence alone.

``ensemble.fit_params`` picks the lowest pooled confidence whose accepted series reach the target
accuracy, looking at the confidence alone. In the product the threshold is one rule among several
(a confident dissent, a non-head body part, unseen header terms, values unlike the class): what must
reach the target is the accuracy of the series *no* rule sends to review. Fitted that way on real
data, the threshold can stay low where the other rules already catch the errors, and the review
queue shrinks without letting more wrong answers through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.bundle import ModelBundle
from ..models.ensemble import EnsembleParams
from ..prediction import ModelOutput
from ..run.pipeline import decide
from ..series import Series

GRID = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
DISSENT_GRID = GRID  # the dissent bar is a confidence too, on the same scale


def _decisions(series: Sequence[Series], outputs: Sequence[dict[str, ModelOutput]], truth: Sequence[str],
               params: EnsembleParams) -> list[tuple[bool, bool]]:
    """(sent to review, right) for each series under ``params``."""
    bundle = ModelBundle(ensemble=params, version="review-fit")
    out = []
    for s, o, t in zip(series, outputs, truth):
        p = decide(s, o, bundle)
        out.append((p.needs_review, p.sequence is not None and p.sequence.label == t))
    return out


def fit_review_threshold(series: Sequence[Series], outputs: Sequence[dict[str, ModelOutput]],
                         truth: Sequence[str], params: EnsembleParams, target_accuracy: float = 0.98,
                         grid: Sequence[float] = GRID) -> float:
    """The lowest threshold under which the errors it could still catch are at most ``1 - target_accuracy``.

    Errors the highest threshold allowed still lets through are beyond any threshold's reach: they are
    counted in the accepted total, but they do not push the threshold up. Otherwise a single confident
    error in a fit set of a few dozen series sends every series below the top of the grid to review
    (measured on the real development set: 7 of 21 leave-source-out folds at the bound).
    """
    def at(t: float) -> list[tuple[bool, bool]]:
        trial = EnsembleParams.from_dict({**params.to_dict(), "review_threshold": float(t)})
        return _decisions(series, outputs, truth, trial)

    beyond_reach = sum(not reviewed and not right for reviewed, right in at(grid[-1]))
    for t in grid:
        accepted = [right for reviewed, right in at(t) if not reviewed]
        catchable = len(accepted) - sum(accepted) - beyond_reach
        if not accepted or catchable <= (1.0 - target_accuracy) * len(accepted):
            return float(t)
    return float(grid[-1])


def fit_review_rules(series: Sequence[Series], outputs: Sequence[dict[str, ModelOutput]], truth: Sequence[str],
                     params: EnsembleParams, target_accuracy: float = 0.98,
                     dissent_grid: Sequence[float] = DISSENT_GRID) -> EnsembleParams:
    """The dissent bar (``disagreement_confidence``) and the review threshold fitted together.

    How confident a dissenting model must be, after its weight, to send a series to review depends on the
    scale of the fitted pooling weights, which moves with the models (a sharper forest scaled both weights
    up 1.8× on the real development set, and the CNN's dissent then flagged five right answers). For each
    bar the threshold is fitted as ``fit_review_threshold`` does. A bar may only spare right answers: one
    that lets through more wrong answers than the lowest bar does is not eligible. Of the rest, the one
    sending the fewest series to review is kept (a tie: the lower, more cautious bar).
    """
    fitted = EnsembleParams.from_dict(params.to_dict())
    best: tuple[int, float, float] | None = None
    allowed_wrong: int | None = None
    for bar in sorted(dissent_grid):
        trial = EnsembleParams.from_dict({**params.to_dict(), "disagreement_confidence": float(bar)})
        trial.review_threshold = fit_review_threshold(series, outputs, truth, trial, target_accuracy)
        decisions = _decisions(series, outputs, truth, trial)
        wrong = sum(not reviewed and not right for reviewed, right in decisions)
        allowed_wrong = wrong if allowed_wrong is None else allowed_wrong
        reviewed = sum(r for r, _ in decisions)
        if wrong <= allowed_wrong and (best is None or reviewed < best[0]):
            best = (reviewed, float(bar), trial.review_threshold)
    if best is not None:
        fitted.disagreement_confidence, fitted.review_threshold = best[1], best[2]
    return fitted


UNKNOWN_GRID = tuple(np.round(np.arange(0.2, 0.951, 0.05), 2))


def fit_unknown_threshold(series: Sequence[Series], outputs: Sequence[dict[str, ModelOutput]],
                          truth: Sequence[str], params: EnsembleParams, max_accuracy: float = 0.34,
                          min_count: int = 3, grid: Sequence[float] = UNKNOWN_GRID) -> float:
    """The highest confidence below which the answers are right at most ``max_accuracy`` of the time.

    Below it the outcome is "unknown": a guess right one time in three is a hint for the reviewer, not
    an answer to count or export. Kept under the review threshold so "review" (an answer to check)
    stays its own tier; 0.0 when no threshold leaves ``min_count`` series below it that bad.
    """
    trial = EnsembleParams.from_dict({**params.to_dict(), "unknown_threshold": 0.0})
    bundle = ModelBundle(ensemble=trial, version="unknown-fit")
    scored = []
    for s, o, t in zip(series, outputs, truth):
        p = decide(s, o, bundle)
        if p.sequence is not None and p.unknown is None:  # already unknown for another reason: not evidence here
            scored.append((p.sequence.probability, p.sequence.label == t))
    for threshold in sorted((t for t in grid if t < params.review_threshold), reverse=True):
        below = [right for confidence, right in scored if confidence < threshold]
        if len(below) >= min_count and np.mean(below) <= max_accuracy:
            return float(threshold)
    return 0.0
