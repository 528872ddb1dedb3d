"""What a series' own physics rules out, whatever the models say.

The forest weighs every header value against the rest and the CNN sees no header: both can answer a
class the acquisition cannot be (a 2-D turbo spin echo read as ASL for its 64-pixel matrix; a
b = 1500 s/mm² image read as FLAIR for its TR and TE). The vocabulary's physics rules say which facts
rule out which classes; an answer they rule out is restricted to what remains (renormalised, as a
derived series to its source's family) and goes to review with the evidence. On the real development
set and on every generated profile, no labelled series breaks a rule (benchmarks/real_dev.py).
"""

from __future__ import annotations

from typing import Callable

from ..prediction import TaskPrediction
from ..series import Series
from ..vocabulary import load_vocabulary
from .physics import hard_facts


def rules_broken(series: Series, label: str) -> list[str]:
    """The facts of ``series`` that rule out ``label``: for checking the rules against labelled data."""
    return [r.fact for r in load_vocabulary().ruling_out(label, hard_facts(series.header))]


def apply_physics_rules(prediction: TaskPrediction, series: Series,
                        pixel_facts: dict[str, str] | None = None) -> tuple[TaskPrediction, str | None, bool]:
    """(answer, why or None, whether a person should confirm it): a ruled-out answer is restricted.

    ``pixel_facts`` are what the images themselves proved (``dicom.dynamics.pixel_facts``, carried by
    the CNN's output): as hard as the header's, except where a rule yields to a header fact (``unless``)."""
    header = hard_facts(series.header)
    return restrict_by_facts(prediction, {**header, **(pixel_facts or {})},
                             lambda fact: "the header" if fact in header else "the images")


def restrict_by_facts(prediction: TaskPrediction, facts: dict[str, str],
                      whose: Callable[[str], str]) -> tuple[TaskPrediction, str | None, bool]:
    """``prediction`` restricted to what ``facts`` leave, when they rule out its label (renormalised);
    ``whose(fact)`` names where a fact was read, for the reason."""
    vocabulary = load_vocabulary()
    rules = vocabulary.ruling_out(prediction.label, facts)
    if not rules:
        return prediction, None, False
    allowed = [c for c in vocabulary.sequence_codes if not vocabulary.ruling_out(c, facts)]
    if not allowed:
        return prediction, None, False
    restricted = prediction.restricted_to(allowed)
    evidence = "; ".join(f"{facts[r.fact]}: {r.why}" for r in rules)
    readers = list(dict.fromkeys(whose(r.fact) for r in rules))
    verb = "rules" if len(readers) == 1 and readers[0] == "the header" else "rule"
    why = f"{' and '.join(readers)} {verb} out {prediction.label} ({evidence}), so it became {restricted.label}"
    return restricted, why, True
