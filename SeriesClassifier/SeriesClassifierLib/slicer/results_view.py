"""What the module's results table shows: which rows each review filter lists, which row is next to review,
how a row is coloured and emphasised.

The Widget keeps one ``mrml.result_row`` per series and asks here, instead of reading its own cells back
(a cell holds display text, translated and formatted, not the state) or numbering the filter modes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["REVIEW_FILTERS", "SEARCH_COLUMNS", "ReviewFilter", "awaits_review", "row_visible", "sequence_colour"]


@dataclass(frozen=True)
class ReviewFilter:
    name: str  # what the filter box stores as the item's data
    title: str  # what it shows (translated by the module)


REVIEW_FILTERS = (
    ReviewFilter("all", "All series"),
    ReviewFilter("needs_review", "Needs review"),
    ReviewFilter("unreviewed", "Unreviewed"),
    ReviewFilter("corrected", "Corrected"),
)

# The columns the search field looks in.
SEARCH_COLUMNS = ("series_description", "sequence", "label_sequence", "orientation")


def awaits_review(row: Mapping[str, Any]) -> bool:
    """Flagged for review and not yet accepted or corrected: what "next to review" (N) jumps to."""
    return bool(row.get("needs_review")) and row.get("review_state", "unreviewed") == "unreviewed"


def _passes(row: Mapping[str, Any], mode: str) -> bool:
    state = row.get("review_state", "unreviewed")
    if mode == "all":
        return True
    if mode == "needs_review":
        return awaits_review(row)
    if mode == "unreviewed":
        return state == "unreviewed"
    if mode == "corrected":
        return state == "corrected"
    raise ValueError(f"unknown review filter {mode!r}; known: {', '.join(f.name for f in REVIEW_FILTERS)}")


def row_visible(row: Mapping[str, Any], mode: str = "all", search: str = "") -> bool:
    """Whether a results-table row is listed under the filter ``mode`` and the search text (case-insensitive,
    a substring of the description, the predicted or corrected sequence, or the orientation)."""
    if not _passes(row, mode):
        return False
    text = search.strip().lower()
    return not text or any(text in str(row.get(c, "")).lower() for c in SEARCH_COLUMNS)


# Background of a row's sequence cells: how far its answer can be trusted at a glance.
UNSURE_RGB, MIDDLING_RGB, SURE_RGB, GUESS_RGB = (255, 205, 205), (255, 236, 190), (214, 242, 214), (220, 220, 220)


def sequence_colour(row: Mapping[str, Any]) -> tuple[int, int, int]:
    """Red below 0.5 (or no probability), amber below 0.8, green above; grey where the outcome is unknown,
    whatever the probability (the sequence shown is then only the models' guess)."""
    if row.get("outcome") == "unknown":
        return GUESS_RGB
    p = row.get("sequence_probability", math.nan)
    if p != p or p < 0.5:  # NaN: no sequence predicted
        return UNSURE_RGB
    return MIDDLING_RGB if p < 0.8 else SURE_RGB
