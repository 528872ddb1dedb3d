"""The CNN's training options: asymmetric and focal loss on hand-computed cases, task weights, augmentation
strength, majority vote, deeper stages, the options dataclass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from SeriesClassifierLib.models.aggregate import MajorityVote, majority_vote, mean_log_prob
from SeriesClassifierLib.models.cnn import CnnConfig, CnnModel, SeriesNet
from SeriesClassifierLib.training.cnn_train import (
    LossOptions,
    TrainOptions,
    asymmetric_loss,
    augment,
    focal_cross_entropy,
    multitask_loss,
    task_weights,
)


def test_asl_without_focusing_or_clip_is_the_binary_cross_entropy_of_the_softmax():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    p = torch.softmax(logits, dim=1)
    bce = F.binary_cross_entropy(p, F.one_hot(target, 3).float(), reduction="sum") / 2
    assert asymmetric_loss(logits, target, 0.0, 0.0, 0.0).item() == pytest.approx(bce.item(), rel=1e-5)


def test_asl_by_hand_focusing_and_clip():
    # probabilities 0.6 / 0.3 / 0.1 (logits are their logs), true class 0
    p = [0.6, 0.3, 0.1]
    logits = torch.log(torch.tensor([p]))
    target = torch.tensor([0])
    gp, gn, m = 1.0, 2.0, 0.15
    pos = -((1 - 0.6) ** gp) * math.log(0.6)
    neg = -((0.3 - m) ** gn) * math.log(1 - (0.3 - m))  # 0.1 - m < 0: that easy negative costs nothing
    assert asymmetric_loss(logits, target, gp, gn, m).item() == pytest.approx(pos + neg, rel=1e-5)


def test_asl_ignores_unknown_targets_and_spares_easy_negatives():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    both = asymmetric_loss(logits, torch.tensor([0, -1]), 0.0, 4.0, 0.05)
    first = asymmetric_loss(logits[:1], torch.tensor([0]), 0.0, 4.0, 0.05)
    assert both.item() == pytest.approx(first.item())
    # the same confident mistake costs more with plain BCE than with ASL's down-weighted negatives
    wrong, y = torch.tensor([[0.0, 4.0, 0.0]]), torch.tensor([0])
    assert asymmetric_loss(wrong, y, 0.0, 4.0, 0.05) < asymmetric_loss(wrong, y, 0.0, 0.0, 0.0)


def test_focal_by_hand_and_gamma_zero_is_cross_entropy():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    target = torch.tensor([0])
    assert focal_cross_entropy(logits, target, 2.0).item() == pytest.approx(-(0.4**2) * math.log(0.6), rel=1e-5)
    assert focal_cross_entropy(logits, target, 0.0).item() == pytest.approx(F.cross_entropy(logits, target).item())


def test_task_weightings():
    config = CnnConfig.from_vocabulary()
    n_aux = 1 + len(config.attributes)
    ours, paper, single = (task_weights(config, s) for s in ("ours", "paper", "single"))
    assert ours["sequence"] == 1.0 and ours["orientation"] == 0.5
    assert all(ours[a] == 0.25 for a in config.attributes)
    assert paper["sequence"] == pytest.approx(0.7)
    assert sum(v for k, v in paper.items() if k != "sequence") == pytest.approx(0.3)
    assert paper["orientation"] == pytest.approx(0.3 / n_aux)
    assert single["sequence"] == 1.0 and sum(single.values()) == 1.0
    with pytest.raises(ValueError):
        task_weights(config, "half")


def test_multitask_loss_follows_the_weights_and_the_loss_choice():
    config = CnnConfig.from_vocabulary()
    torch.manual_seed(0)
    out = SeriesNet(config)(torch.rand(4, 1, 64, 64))
    targets = {h: torch.zeros(4, dtype=torch.long) for h in ["sequence", "orientation", *config.attributes]}
    seq_ce = F.cross_entropy(out["sequence"], targets["sequence"])
    single = multitask_loss(out, targets, config, loss=LossOptions(task_weights="single"))
    assert single.item() == pytest.approx(seq_ce.item(), rel=1e-5)
    asl = multitask_loss(out, targets, config, loss=LossOptions(loss="asl", task_weights="single"))
    assert asl.item() == pytest.approx(asymmetric_loss(out["sequence"], targets["sequence"]).item(), rel=1e-5)
    ours = multitask_loss(out, targets, config)
    expected = sum(w * F.cross_entropy(out[h], targets[h]) for h, w in task_weights(config).items())
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_augmentation_strength_zero_changes_little_and_one_is_the_default():
    x = torch.rand(6, 1, 32, 32) * 0.8 + 0.1
    flippable = torch.zeros(6, dtype=torch.bool)
    default = augment(x.clone(), flippable, torch.Generator().manual_seed(3))
    same = augment(x.clone(), flippable, torch.Generator().manual_seed(3), 1.0)
    weak = augment(x.clone(), flippable, torch.Generator().manual_seed(3), 0.0)
    assert torch.equal(default, same)
    assert (weak - x).abs().mean() < 0.2 * (default - x).abs().mean()


def test_majority_vote_takes_the_commonest_slice_answer():
    probs = np.array([[0.4, 0.6, 0.0]] * 3 + [[0.99, 0.01, 0.0]] * 2)
    p = majority_vote(probs)
    assert p.argmax() == 1 and p[1] == pytest.approx(0.6, abs=0.01)
    assert mean_log_prob(probs).argmax() != 2
    tie = np.array([[0.9, 0.1], [0.4, 0.6]])  # one vote each: the mean log-probability decides
    assert majority_vote(tie).argmax() == mean_log_prob(tie).argmax() == 0
    out = MajorityVote().aggregate({"sequence": probs, "orientation": probs})
    assert out["sequence"].argmax() == 1 and out["orientation"].argmax() == mean_log_prob(probs).argmax()


def test_deeper_stages_save_and_load_and_the_bundled_layout_is_unchanged(tmp_path):
    plain = SeriesNet(CnnConfig.from_vocabulary())
    assert "layer1.conv1.0.weight" in plain.state_dict()  # the bundled network's tensor names
    model = CnnModel.new(blocks=[2, 1, 1, 3], aggregator="vote")
    model.save(tmp_path)
    loaded = CnnModel.load(tmp_path)
    x = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    assert np.allclose(model.infer(x)["sequence"], loaded.infer(x)["sequence"], atol=1e-6)
    assert loaded.config.blocks == [2, 1, 1, 3] and isinstance(loaded.aggregator, MajorityVote)


def test_train_options_give_the_config_and_the_cache_tag():
    opts = TrainOptions(k=6, size=96, clahe=True, clahe_clip=3.0, clahe_tiles=4, widths=[8, 16, 24, 48, 64],
                        blocks=[1, 1, 2, 2], loss="asl", asl_gamma_neg=3.0)
    config = opts.cnn_config()
    assert config.options.k == 6 and config.options.clahe_clip == 3.0 and config.options.clahe_tiles == 4
    assert config.widths[-1] == 64 and config.blocks == [1, 1, 2, 2]
    assert opts.cache_tag() == "k6_s96_clahe3x4" and TrainOptions(clahe=True).cache_tag() == "k8_s128_clahe"
    assert opts.loss_options() == LossOptions(loss="asl", asl_gamma_neg=3.0)
