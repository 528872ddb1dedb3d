"""Slice → series aggregation: mean log-prob, the MIXED rule, the learned GRU aggregator, the slice head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from SeriesClassifierLib.errors import BundleError
from SeriesClassifierLib.models.aggregate import (
    LearnedAggregator,
    MeanLogProb,
    SliceGRU,
    SliceHead,
    fit_gru,
    fit_slice_head,
    mean_log_prob,
    orientation_from_slices,
    pad_embeddings,
)
from SeriesClassifierLib.models.cnn import CnnModel

PLANES = ["AXIAL", "SAGITTAL", "CORONAL", "OBLIQUE"]
CODES = [*PLANES, "MIXED"]


def test_mean_log_prob_is_a_distribution_and_resists_one_confident_outlier():
    probs = np.array([[0.7, 0.2, 0.1]] * 7 + [[0.001, 0.998, 0.001]])
    p = mean_log_prob(probs)
    assert abs(p.sum() - 1) < 1e-6
    assert p.argmax() == 0
    # a max-rule would have picked class 1
    assert probs.max(axis=0).argmax() == 1


def test_agreeing_slices_give_their_plane():
    probs = np.tile([0.9, 0.04, 0.03, 0.03], (8, 1))
    out = orientation_from_slices(probs, PLANES, CODES)
    assert max(out, key=out.get) == "AXIAL"
    assert abs(sum(out.values()) - 1) < 1e-5
    assert out["MIXED"] < 0.05


def test_three_planes_make_a_mixed_series():
    eye = np.eye(4)[:3] * 0.9 + 0.025
    probs = np.concatenate([np.tile(eye[i], (3, 1)) for i in range(3)])
    out = orientation_from_slices(probs, PLANES, CODES)
    assert max(out, key=out.get) == "MIXED"
    assert abs(sum(out.values()) - 1) < 1e-5


def test_one_stray_slice_does_not_make_mixed():
    probs = np.tile([0.9, 0.04, 0.03, 0.03], (8, 1))
    probs[3] = [0.05, 0.85, 0.05, 0.05]
    out = orientation_from_slices(probs, PLANES, CODES)
    assert max(out, key=out.get) == "AXIAL"


def test_gru_learns_an_order_dependent_rule_the_mean_cannot():
    """Class 1 = a bright slice appears somewhere after slice 4; embeddings otherwise identical in distribution."""
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(400):
        e = rng.normal(0, 0.1, (8, 6)).astype(np.float32)
        y = i % 2
        pos = rng.integers(5, 8) if y else rng.integers(0, 3)
        e[pos, 0] += 3.0
        seqs.append(e)
        labels.append(y)
    agg = fit_gru(seqs[:300], np.array(labels[:300]), 2, epochs=25, seed=0, hidden=16)
    pred = [int(agg.aggregate({"sequence": np.full((8, 2), 0.5)}, s)["sequence"].argmax()) for s in seqs[300:]]
    assert np.mean(np.array(pred) == np.array(labels[300:])) > 0.9


def test_mean_aggregator_returns_every_head():
    probs = {"sequence": np.full((3, 4), 0.25), "orientation": np.full((3, 4), 0.25)}
    out = MeanLogProb().aggregate(probs)
    assert set(out) == {"sequence", "orientation"}


def test_model_with_gru_aggregator_saves_and_loads_it(tmp_path):
    torch.manual_seed(0)
    model = CnnModel.new()
    module = SliceGRU(model.config.widths[-1], len(model.config.sequence_classes), model.config.gru_hidden)
    model.set_aggregator(LearnedAggregator(module.eval()))
    x = np.random.default_rng(1).random((5, 128, 128)).astype(np.float32)
    before = model.output_from_slices(model.infer(x)).sequence.probabilities
    model.save(tmp_path)
    loaded = CnnModel.load(tmp_path)
    assert loaded.config.aggregator == "gru" and loaded.aggregator.name == "gru"
    after = loaded.output_from_slices(loaded.infer(x)).sequence.probabilities
    for k in before:
        assert abs(before[k] - after[k]) < 1e-5


@pytest.mark.parametrize("neck", ["gru", "conv1d", "none"])
def test_slice_head_gives_series_logits_starts_at_the_mean_and_ignores_padding(neck):
    torch.manual_seed(0)
    head = SliceHead(12, 5, neck, hidden=4).eval()
    series = [torch.randn(6, 12), torch.randn(3, 12)]
    x, mask = pad_embeddings(torch.cat(series), [6, 3])
    assert x.shape == (2, 6, 12) and mask.tolist()[1] == [True] * 3 + [False] * 3
    logits = head(x, mask)
    assert logits.shape == (2, 5)
    # the residual neck's projection starts at zero: the representation is the mean-pooled embedding
    assert torch.allclose(head.represent(x, mask), torch.stack([s.mean(dim=0) for s in series]), atol=1e-6)
    # once the neck has weights, padding still counts for nothing: the short series alone gives the same logits
    if neck != "none":
        torch.nn.init.normal_(head.proj.weight)
        assert not torch.allclose(head.represent(x, mask)[1], series[1].mean(dim=0))
    x[1, 3:] = 7.0  # garbage where the short series is padded
    assert torch.allclose(head(x, mask)[1], head(series[1][None])[0], atol=1e-5)


def test_slice_heads_fitted_on_frozen_embeddings_the_mean_cannot_see_order_the_neck_can():
    """The fair control of the GRU (no neck: a linear head on the mean) cannot learn an order rule; the GRU
    neck, fitted the same way, can."""
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(400):
        e = rng.normal(0, 0.1, (8, 6)).astype(np.float32)
        y = i % 2
        pos = rng.integers(5, 8) if y else rng.integers(0, 3)
        e[pos, 0] += 3.0
        seqs.append(e)
        labels.append(y)

    def accuracy(agg):
        pred = [int(agg.aggregate({"sequence": np.full((8, 2), 0.5)}, s)["sequence"].argmax()) for s in seqs[300:]]
        return np.mean(np.array(pred) == np.array(labels[300:]))

    y = np.array(labels[:300])
    assert accuracy(fit_slice_head(seqs[:300], y, 2, "none", epochs=25, seed=0, hidden=16)) < 0.7
    assert accuracy(fit_slice_head(seqs[:300], y, 2, "gru", epochs=25, seed=0, hidden=16)) > 0.9


def test_model_with_an_end_to_end_slice_head_saves_and_loads_it(tmp_path):
    torch.manual_seed(0)
    model = CnnModel.new(aggregator="slice_conv1d")
    head = SliceHead(model.config.widths[-1], len(model.config.sequence_classes), "conv1d", model.config.gru_hidden)
    torch.nn.init.normal_(head.proj.weight, std=0.1)
    model.set_aggregator(LearnedAggregator(head.eval()))
    model.config.aggregator = "slice_conv1d"  # what fit_cnn sets (set_aggregator names a frozen GRU)
    x = np.random.default_rng(1).random((5, 128, 128)).astype(np.float32)
    before = model.output_from_slices(model.infer(x)).sequence.probabilities
    model.save(tmp_path)
    loaded = CnnModel.load(tmp_path)
    assert isinstance(loaded.aggregator.module, SliceHead) and loaded.aggregator.module.neck == "conv1d"
    after = loaded.output_from_slices(loaded.infer(x)).sequence.probabilities
    assert max(abs(before[k] - after[k]) for k in before) < 1e-5
    config = (tmp_path / "cnn.json").read_text().replace('"slice_conv1d"', '"slice_lstm"')
    (tmp_path / "cnn.json").write_text(config)
    with pytest.raises(BundleError, match="slice_lstm|lstm"):
        CnnModel.load(tmp_path)
