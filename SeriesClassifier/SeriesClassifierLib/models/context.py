"""Study context: what the header and the rest of the study say about one series' contrast.

A T1 whose header names a contrast agent, or acquired after a series that names one, is
post-contrast, though the forest weighs the agent against the rest of the header; sites also
write "+C", "POST" or "GAD" into descriptions the forest deliberately does not read. A
dynamic EPI run earlier in the study is not taken as evidence: a BOLD run before an MPRAGE
looks the same in the headers as a DSC bolus. Nothing here guesses a sequence: it only moves
a pre-contrast answer to its post-contrast twin, and says why.
"""

from __future__ import annotations

from ..prediction import TaskPrediction
from ..series import Series
from ..vocabulary import load_vocabulary
from .features import DESCRIPTION_FIELDS, contrast_agent, description_tokens


def contrast_evidence(series: Series) -> str | None:
    """Why the study says this series is post-contrast, or None when it does not."""
    h = series.header
    if contrast_agent(h.get("ContrastBolusAgent")) == 1.0:
        # the models read this too, but weigh it against everything else; a named agent is not a guess
        return f"its ContrastBolusAgent names an agent ({h.get('ContrastBolusAgent')!r})"
    for key in DESCRIPTION_FIELDS:
        text = str(h.get(key) or "")
        if "<contrast>" in description_tokens(text):
            return f"the {key} marks contrast ({text!r})"
    context = h.get("StudyContext") or {}
    if context.get("agent_before"):
        return "an earlier series of the study names a contrast agent"
    return None


def apply_contrast_context(prediction: TaskPrediction, series: Series) -> tuple[TaskPrediction, str | None]:
    """A pre-contrast answer becomes its post-contrast twin when the study says contrast was given."""
    post = load_vocabulary().post_contrast_of(prediction.label)
    if post is None:
        return prediction, None
    evidence = contrast_evidence(series)
    if evidence is None:
        return prediction, None
    probabilities = dict(prediction.probabilities)
    probabilities[post], probabilities[prediction.label] = (probabilities.get(prediction.label, 0.0),
                                                            probabilities.get(post, 0.0))
    return TaskPrediction.from_probabilities(probabilities), f"post-contrast from the study: {evidence}"
