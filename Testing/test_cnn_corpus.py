"""The thinned CNN training corpus (synth/cnn_corpus.py): fewer planes, same slice physics."""

from __future__ import annotations

from SeriesClassifierLib.synth.cnn_corpus import thin_spec
from SeriesClassifierLib.synth.spec import SeriesSpec


def test_thin_spec_keeps_thickness_and_covers_the_central_stack():
    spec = SeriesSpec("T1_3D_PRE", "SAGITTAL", acquisition="3D", slice_thickness=1.0, slice_spacing=1.0, n_slices=176)
    thin = thin_spec(spec, 10)
    assert thin.n_slices == 10 and thin.slice_thickness == 1.0
    assert abs((thin.n_slices - 1) * thin.slice_spacing - 0.75 * 175) < 1e-6
    assert thin.sequence == spec.sequence and thin.rows == spec.rows


def test_thin_spec_leaves_short_stacks_and_localizers():
    short = SeriesSpec("T2_2D", "AXIAL", n_slices=8)
    scout = SeriesSpec("SCOUT", "MIXED", n_slices=30)
    assert thin_spec(short, 10) is short and thin_spec(scout, 10) is scout
