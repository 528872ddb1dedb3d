"""Which rows the module's results table lists (review filters, search) and which is next to review, decided
from the rows' values (``mrml.result_row``), not from the table's display text."""

from __future__ import annotations

import pytest

from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction
from SeriesClassifierLib.slicer.mrml import result_row
from SeriesClassifierLib.slicer.results_view import (
    GUESS_RGB,
    MIDDLING_RGB,
    REVIEW_FILTERS,
    SURE_RGB,
    UNSURE_RGB,
    awaits_review,
    row_visible,
    sequence_colour,
)


def _row(uid: str, description: str, sequence: str, needs_review: bool, label: dict | None = None) -> dict:
    p = SeriesPrediction(uid, "1.9", "PAT", 1, description,
                         sequence=TaskPrediction.from_probabilities({sequence: 0.8, "PD": 0.2}),
                         orientation=TaskPrediction.from_probabilities({"AXIAL": 1.0}), needs_review=needs_review)
    return result_row(p, label)


@pytest.fixture
def rows() -> dict[str, dict]:
    return {
        "flagged": _row("1", "ax t2 tse", "T2_2D", True),
        "sure": _row("2", "t1 mprage", "T1_3D_PRE", False),
        "accepted": _row("3", "flair", "FLAIR_2D", True, {"sequence": "FLAIR_2D", "state": "accepted"}),
        "corrected": _row("4", "dwi", "ADC", True, {"sequence": "DWI", "orientation": "AXIAL", "state": "corrected"}),
    }


def _listed(rows: dict[str, dict], mode: str, search: str = "") -> set[str]:
    return {name for name, row in rows.items() if row_visible(row, mode, search)}


def test_each_review_filter_lists_its_rows(rows):
    assert [f.name for f in REVIEW_FILTERS] == ["all", "needs_review", "unreviewed", "corrected"]
    assert _listed(rows, "all") == set(rows)
    assert _listed(rows, "needs_review") == {"flagged"}  # flagged and not yet reviewed by a person
    assert _listed(rows, "unreviewed") == {"flagged", "sure"}
    assert _listed(rows, "corrected") == {"corrected"}


def test_search_looks_in_description_and_codes_case_insensitively(rows):
    assert _listed(rows, "all", "  MPRAGE ") == {"sure"}
    assert _listed(rows, "all", "t2_2d") == {"flagged"}
    assert _listed(rows, "all", "dwi") == {"corrected"}  # the corrected sequence, and the description
    assert _listed(rows, "all", "axial") == set(rows)
    assert _listed(rows, "unreviewed", "flair") == set()  # both must hold


def test_next_to_review_is_what_awaits_a_person(rows):
    assert [name for name, row in rows.items() if awaits_review(row)] == ["flagged"]
    assert not awaits_review({})  # a row the table holds no values for


def test_an_unknown_filter_is_an_error_not_a_silent_all(rows):
    with pytest.raises(ValueError, match="unknown review filter"):
        row_visible(rows["sure"], "everything")


def test_the_sequence_colour_says_how_far_the_answer_can_be_trusted():
    def colour(probability: float, outcome: str = "classified") -> tuple[int, int, int]:
        return sequence_colour({"sequence_probability": probability, "outcome": outcome})

    assert [colour(p) for p in (0.3, 0.5, 0.79, 0.8, 0.99)] == [UNSURE_RGB, MIDDLING_RGB, MIDDLING_RGB, SURE_RGB,
                                                                SURE_RGB]
    assert colour(float("nan")) == UNSURE_RGB  # no sequence at all
    assert colour(0.99, "unknown") == GUESS_RGB  # a guess stays grey however sure the models were
    assert sequence_colour(_row("9", "x", "T2_2D", False)) == SURE_RGB  # a result_row as the Widget gets it (0.8)
