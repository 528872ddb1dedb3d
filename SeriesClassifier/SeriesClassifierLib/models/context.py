"""Study context: what the header and the rest of the study say about one series' contrast and source.

``apply_context`` runs, after the series' own physics (``plausibility.py``), the two steps below.

A derived series (an ADC, a MIP, a minIP) tied to its source at header time (``derived.py``) can only be
what its source makes: an answer outside that family is restricted to it, and a person confirms.

A T1 whose header names a contrast agent, or acquired after a series that names one, is
post-contrast, though the forest weighs the agent against the rest of the header; sites also
write "+C", "POST" or "GAD" into descriptions the forest deliberately does not read (a person
confirms a description the study's own agent tags contradict: ``description_contradicted``). A
dynamic EPI run earlier in the study is not taken as evidence: a BOLD run before an MPRAGE
looks the same in the headers as a DSC bolus. Nothing here guesses a sequence: it only moves
a pre-contrast answer to its post-contrast twin, and says why.

Where no header of the study names an agent, one weaker hint remains: the last of several series
of one T1 protocol is most often the post-contrast repeat (on generated held-out studies with the
contrast tags removed, right for 30 of the 34 series it moved; benchmarks/contrast_context.py). A
repeat for motion looks the same, so that answer goes to review for a person to confirm.

Where the headers could not have said "post" at all (no description, no agent recorded anywhere in the
study: an anonymised study), a "pre" answer is a guess: it stays, and goes to a person with that reason.
"""

from __future__ import annotations

import math

from ..prediction import TaskPrediction
from ..series import Series
from ..vocabulary import load_vocabulary
from .derived import LINK_KEY
from .features import DESCRIPTION_FIELDS, contrast_agent, description_tokens
from .plausibility import apply_physics_rules


def contrast_evidence(series: Series) -> str | None:
    """Why the study says this series is post-contrast, or None when it does not."""
    h = series.header
    if contrast_agent(h.get("ContrastBolusAgent")) == 1.0:
        # the models read this too, but weigh it against everything else; a named agent is not a guess
        return f"its ContrastBolusAgent names an agent ({h.get('ContrastBolusAgent')!r})"
    context = h.get("StudyContext") or {}
    if context.get("agent_before"):
        return "an earlier series of the study names a contrast agent"
    return _description_mark(h)


def _description_mark(header: dict) -> str | None:
    for key in DESCRIPTION_FIELDS:
        text = str(header.get(key) or "")
        if "<contrast>" in description_tokens(text):
            return f"the {key} marks contrast ({text!r})"
    return None


def description_contradicted(series: Series) -> bool:
    """A description marks contrast, yet the study records its agent on other series and not up to this one.

    A protocol copied from a post-contrast series keeps its "+C"; where the scanner writes the agent into
    the headers, its absence here says the copy is the likelier story (on generated held-out studies, 4 of
    the 6 T1 series in this case were pre-contrast; benchmarks/contrast_context.py).
    """
    context = series.header.get("StudyContext") or {}
    return bool(context.get("agent_in_study") and not context.get("agent_before")
                and contrast_agent(series.header.get("ContrastBolusAgent")) != 1.0)


def repeat_evidence(series: Series) -> str | None:
    """Why the study hints this series is a post-contrast repeat, when no header of it names an agent."""
    context = series.header.get("StudyContext") or {}
    if context.get("agent_in_study") or not context.get("same_before") or context.get("same_after"):
        return None
    return "the last of several series of this protocol in a study that names no agent (a person should confirm)"


def contrast_unknowable(series: Series) -> str | None:
    """Why nothing in the headers can say pre or post, or None when something can.

    An anonymiser that follows the DICOM basic confidentiality profile removes the descriptions and blanks
    ContrastBolusAgent: "pre" is then only the absence of evidence (on generated held-out studies so
    stripped, 78 of 237 T1 series were answered wrong without review; benchmarks/contrast_context.py).
    """
    h = series.header
    if any(str(h.get(key) or "").strip() for key in DESCRIPTION_FIELDS):
        return None
    if not math.isnan(contrast_agent(h.get("ContrastBolusAgent"))):
        return None  # an agent, or an explicit "none"
    if (h.get("StudyContext") or {}).get("agent_in_study"):
        return None  # the study records agents, and not on this series
    return ("pre or post-contrast cannot be told from the headers: no description, and no contrast agent "
            "recorded in the study (a person should confirm)")


def apply_contrast_context(prediction: TaskPrediction, series: Series) -> tuple[TaskPrediction, str | None, bool]:
    """A pre-contrast answer becomes its post-contrast twin when the study says contrast was given.

    Returns (answer, why or None, whether a person should confirm it). A pre-contrast answer nothing in
    the headers could have contradicted is kept and sent to a person (``contrast_unknowable``).
    """
    post = load_vocabulary().post_contrast_of(prediction.label)
    if post is None:
        return prediction, None, False
    evidence = contrast_evidence(series)
    confirm = evidence is not None and description_contradicted(series)  # then the evidence is the description
    if confirm:
        evidence += ", but the study names its agent on other series and not on this one (a person should confirm)"
    if evidence is None:
        evidence = repeat_evidence(series)
        confirm = evidence is not None
    if evidence is None:
        unknowable = contrast_unknowable(series)
        return prediction, unknowable, unknowable is not None
    probabilities = dict(prediction.probabilities)
    probabilities[post], probabilities[prediction.label] = (probabilities.get(prediction.label, 0.0),
                                                            probabilities.get(post, 0.0))
    return TaskPrediction.from_probabilities(probabilities), f"post-contrast from the study: {evidence}", confirm


def apply_derived_context(prediction: TaskPrediction, series: Series) -> tuple[TaskPrediction, str | None, bool]:
    """A derived series answered outside its source's family is restricted to that family (renormalised).

    The family comes from the source's header facts and the vocabulary (``derived_family``). Returns
    (answer, why or None, whether a person should confirm it): a changed answer goes to review, since
    the link itself is read from headers and geometry that can mislead.
    """
    link = series.header.get(LINK_KEY) or {}
    family = load_vocabulary().derived_family(link.get("facts") or [])
    if not family or prediction.label in family:
        return prediction, None, False
    restricted = prediction.restricted_to(family)
    number = link.get("series_number")
    name = f"series {number}" if number is not None else f"series {link.get('series_uid', '')}"
    why = (f"derived from {name} ({link.get('evidence')}; {link.get('how')}): it can only be "
           f"{'/'.join(family)}, so {prediction.label} became {restricted.label}")
    return restricted, why, True


def apply_context(prediction: TaskPrediction, series: Series,
                  pixel_facts: dict[str, str] | None = None) -> tuple[TaskPrediction, str | None, bool]:
    """Every adjustment in turn (the series' own physics, header and pixels, its derived source, then
    contrast), as one ``combine`` adjust: the contrast step moves pre to post only after the class itself
    is settled."""
    notes, confirm = [], False
    steps = (lambda p, s: apply_physics_rules(p, s, pixel_facts), apply_derived_context, apply_contrast_context)
    for step in steps:
        prediction, note, ask = step(prediction, series)
        if note:
            notes.append(note)
            confirm = confirm or ask
    return prediction, "; ".join(notes) or None, confirm
