from __future__ import annotations

import math

import numpy as np
import pytest

from SeriesClassifierLib.dicom.orientation import plane_of, series_orientation, slice_normal, summarize
from SeriesClassifierLib.vocabulary import load_vocabulary

AXIAL = (1, 0, 0, 0, 1, 0)
SAGITTAL = (0, 1, 0, 0, 0, -1)
CORONAL = (1, 0, 0, 0, 0, -1)


def tilted_axial(degrees: float, about: str = "x"):
    """Axial plane rotated about the left-right (x) or anterior-posterior (y) axis."""
    a = math.radians(degrees)
    if about == "x":
        return (1, 0, 0, 0, math.cos(a), math.sin(a))
    return (math.cos(a), 0, math.sin(a), 0, 1, 0)


def test_cardinal_planes():
    assert plane_of(AXIAL) == "AXIAL"
    assert plane_of(SAGITTAL) == "SAGITTAL"
    assert plane_of(CORONAL) == "CORONAL"


def test_normal_is_unit_and_sign_free_for_the_plane():
    n = slice_normal(AXIAL)
    assert np.allclose(n, [0, 0, 1])
    flipped = (-1, 0, 0, 0, 1, 0)  # normal points the other way: still axial
    assert plane_of(flipped) == "AXIAL"


def test_oblique_threshold_comes_from_the_vocabulary():
    threshold = load_vocabulary().oblique_threshold_degrees
    assert plane_of(tilted_axial(threshold - 1)) == "AXIAL"
    assert plane_of(tilted_axial(threshold + 1)) == "OBLIQUE"
    assert plane_of(tilted_axial(threshold + 1, "y")) == "OBLIQUE"
    # double oblique: 15° about two axes is > 20° from z overall
    a = math.radians(15)
    r = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    s = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    row, col = s @ r @ np.array([1, 0, 0]), s @ r @ np.array([0, 1, 0])
    assert plane_of((*row, *col)) == "OBLIQUE"


def test_tilted_sagittal_and_coronal_stay_in_plane_below_threshold():
    a = math.radians(12)
    assert plane_of((0, math.cos(a), math.sin(a), 0, 0, -1)) == "SAGITTAL"
    assert plane_of((math.cos(a), math.sin(a), 0, 0, 0, -1)) == "CORONAL"


def test_three_plane_localizer_is_one_mixed_series():
    iops = [AXIAL] * 5 + [SAGITTAL] * 5 + [CORONAL] * 5
    summary = summarize(iops)
    assert summary.orientation == "MIXED"
    assert summary.n_planes == 3
    assert sorted(summary.planes) == ["AXIAL", "CORONAL", "SAGITTAL"]


def test_two_nearly_parallel_stacks_are_not_mixed():
    iops = [AXIAL] * 10 + [tilted_axial(8)] * 10
    assert series_orientation(iops) == "AXIAL"


def test_stacks_in_the_same_plane_label_but_far_apart_are_mixed():
    # radial MIPs: 0°, 30°, 60°, 90° around the vertical axis are different planes
    iops = [(math.cos(math.radians(t)), math.sin(math.radians(t)), 0, 0, 0, -1) for t in (0, 30, 60, 90)]
    assert series_orientation(iops) == "MIXED"


def test_degenerate_orientations():
    with pytest.raises(ValueError):
        slice_normal((1, 0, 0, 1, 0, 0))
    with pytest.raises(ValueError):
        slice_normal((1, 0, 0))
    assert series_orientation([]) is None
    assert series_orientation([(0, 0, 0, 0, 0, 0)]) is None
