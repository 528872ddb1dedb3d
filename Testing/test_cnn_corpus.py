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


def test_cnn_samples_leaves_out_what_the_cnn_cannot_read_and_says_so(capsys):
    from types import SimpleNamespace

    from SeriesClassifierLib.training.corpus import cnn_samples

    class Model:
        def sample(self, series):
            if series.series_uid == "no-pixels":
                raise ValueError("no pixel data")
            return f"slices of {series.series_uid}"

    series = [SimpleNamespace(series_uid=uid, skipped=uid == "skipped") for uid in ("a", "skipped", "no-pixels", "b")]
    got = [(s.series_uid, sampled) for s, sampled in cnn_samples(Model(), series, name=lambda s: s.series_uid.upper())]
    assert got == [("a", "slices of a"), ("b", "slices of b")]
    assert capsys.readouterr().err == "left out NO-PIXELS: no pixel data\n"  # a skipped series is not news
