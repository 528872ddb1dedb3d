"""The CNN's training options: asymmetric and focal loss on hand-computed cases, task weights, augmentation
strength, majority vote, deeper stages, the options dataclass, the slice model trained end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from SeriesClassifierLib.models.aggregate import (
    LearnedAggregator,
    MajorityVote,
    MeanLogProb,
    SliceHead,
    majority_vote,
    mean_log_prob,
    pad_embeddings,
)
from SeriesClassifierLib.models.cnn import CnnConfig, CnnModel, SeriesNet
from SeriesClassifierLib.training.cnn_train import (
    Cache,
    LossOptions,
    TrainOptions,
    _sharpened,
    asymmetric_loss,
    augment,
    fit_cnn,
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


def _tiny_cache(config: CnnConfig, n_series: int = 12, k: int = 4, size: int = 32) -> Cache:
    """Random 32² slices of a few series (every third one slice short), labels among the first classes."""
    rng = np.random.default_rng(0)
    lengths = [k if i % 3 else k - 1 for i in range(n_series)]
    index = np.repeat(np.arange(n_series), lengths).astype(np.int32)
    counts = {"sequence": len(config.sequence_classes), "orientation": len(config.orientation_classes),
              **{a: len(v) for a, v in config.attributes.items()}}
    series = {h: rng.integers(0, min(c, 3), n_series).astype(np.int16) for h, c in counts.items()}
    return Cache((rng.random((len(index), size, size)) * 255).astype(np.uint8), index,
                 {h: v[index] for h, v in series.items()}, np.array([f"s{i}" for i in range(n_series)]),
                 np.array(["p"] * n_series), series)


def _tiny_options(**kw) -> TrainOptions:
    return TrainOptions(k=4, size=32, epochs=2, batch_size=8, samples_per_epoch=16, widths=[8, 8, 8, 16, 16],
                        threads=1, patience=3, max_minutes=1e9, **kw)


def test_the_series_loss_of_the_slice_head_reaches_the_backbone_through_the_embeddings(monkeypatch):
    from SeriesClassifierLib.training import cnn_train

    opts = _tiny_options(slice_model="gru")
    config = opts.cnn_config()
    cache = _tiny_cache(config)
    torch.manual_seed(0)
    net = SeriesNet(config).train()
    head = SliceHead(config.widths[-1], len(config.sequence_classes), "gru", hidden=4).train()
    out = net(torch.rand(7, 1, 32, 32))
    emb, mask = pad_embeddings(out["embedding"], [4, 3])
    assert head(emb, mask).shape == (2, len(config.sequence_classes))
    # one end-to-end step with the slice heads' losses switched off: only the series head's loss trains
    monkeypatch.setattr(cnn_train, "multitask_loss", lambda out, *a, **k: 0.0 * out["sequence"].sum())
    before = {k: v.clone() for k, v in [*net.state_dict().items(), *head.state_dict().items()]}
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.5)  # no decay: a change is a gradient
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    cnn_train._train_series_steps(net, head, opt, sched, cache, np.array([[0, 1, 2]]),
                                  cnn_train.flippable_planes(config), torch.Generator().manual_seed(0), config, opts)
    after = {**net.state_dict(), **head.state_dict()}
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])  # the backbone's first layer
    assert not torch.equal(after["layer4.conv2.0.weight"], before["layer4.conv2.0.weight"])
    assert not torch.equal(after["proj.weight"], before["proj.weight"])  # the neck's zero projection learns
    assert torch.equal(after["sequence_head.0.weight"], before["sequence_head.0.weight"])  # not via the slice heads


@pytest.mark.parametrize("neck", ["gru", "conv1d"])
def test_fit_cnn_trains_the_slice_head_end_to_end_and_saves_it_as_the_aggregator(tmp_path, neck):
    opts = _tiny_options(slice_model=neck)
    config = opts.cnn_config()
    cache = _tiny_cache(config)
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in SeriesNet(config).state_dict().items()}
    torch.manual_seed(0)
    model, history, _ = fit_cnn(cache, cache, config, opts, tmp_path)
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "cnn.safetensors"))
    assert model.config.aggregator == f"slice_{neck}" and isinstance(model.aggregator, LearnedAggregator)
    assert isinstance(model.aggregator.module, SliceHead) and model.aggregator.module.neck == neck
    assert any(k.startswith("agg.proj") for k in tensors) and float(tensors["agg.proj.weight"].abs().sum()) > 0
    assert not torch.equal(tensors["net.stem.0.weight"], start["stem.0.weight"])  # the backbone trained too
    series = model.output_from_slices(model.infer(cache.images[:4].astype(np.float32) / 255.0))
    assert sum(series.sequence.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert len(history) == 2


def test_without_a_slice_model_the_network_file_and_answers_are_as_before(tmp_path):
    """Option off: the bundled layout (no new tensors, no new cnn.json keys), the mean log-probability."""
    from safetensors.torch import load_file

    assert TrainOptions().slice_model == "none"
    opts = _tiny_options()
    config = opts.cnn_config()
    cache = _tiny_cache(config)
    torch.manual_seed(0)
    model, _, _ = fit_cnn(cache, cache, config, opts, tmp_path)
    assert {k.split(".")[0] for k in load_file(str(tmp_path / "cnn.safetensors"))} == {"net"}
    assert model.config.aggregator == "mean" and isinstance(model.aggregator, MeanLogProb)
    bundle = Path(__file__).resolve().parents[1] / "SeriesClassifier" / "Resources" / "Models"
    import json

    keys = set(json.loads((tmp_path / "cnn.json").read_text()))
    assert keys == set(CnnConfig.__dataclass_fields__) and "slice_model" not in keys
    assert set(json.loads((bundle / "cnn.json").read_text())) <= keys  # the bundle's file reads as before
    bundled = load_file(str(bundle / "cnn.safetensors"))
    bundle_net = SeriesNet(CnnConfig.from_json((bundle / "cnn.json").read_text()))
    assert {f"net.{k}" for k in bundle_net.state_dict()} == {k for k in bundled if k.startswith("net.")}
    assert not any(k.startswith("agg.") for k in bundled)
    slices = model.infer(cache.images[:4].astype(np.float32) / 255.0)
    series = model.output_from_slices(slices).sequence.probabilities
    expected = mean_log_prob(slices["sequence"])
    assert np.allclose([series[c] for c in model.config.sequence_classes], expected, atol=1e-6)
    with pytest.raises(ValueError, match="slice model"):
        fit_cnn(cache, cache, config, _tiny_options(slice_model="lstm"), tmp_path / "x")
    # whole-series batches without a slice model: the same file and aggregation, other weights
    torch.manual_seed(0)
    batched, _, _ = fit_cnn(cache, cache, config, _tiny_options(series_batches=True), tmp_path / "batched")
    assert {k.split(".")[0] for k in load_file(str(tmp_path / "batched" / "cnn.safetensors"))} == {"net"}
    assert isinstance(batched.aggregator, MeanLogProb)
    assert not torch.equal(batched.net.stem[0].weight, model.net.stem[0].weight)


def test_sharpening_steepens_edges_of_the_picked_unblurred_images_only():
    ramp = torch.linspace(0.2, 0.7, 32).clamp(0.3, 0.6)  # a soft edge between two plateaus
    x = ramp.view(1, 1, 1, 32).expand(4, 1, 32, 32).clone()
    pick = torch.tensor([True, True, False, True])
    allowed = torch.tensor([True, True, True, False])  # the last was blurred in this batch
    y = _sharpened(x, pick, torch.tensor([1.0, 0.3, 1.0, 1.0]), allowed)
    assert torch.equal(y[2:], x[2:])  # not picked, or blurred: unchanged
    steepest = (y[..., 1:] - y[..., :-1]).abs().amax(dim=(1, 2, 3))
    assert steepest[0] > steepest[1] > steepest[2]  # steeper with the amount
    assert float(y[0].max()) > 0.6 and float(y[0].min()) < 0.3  # the unsharp mask's overshoot at the edge
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert torch.allclose(_sharpened(flat, torch.tensor([True]), torch.tensor([1.5]), torch.tensor([True])), flat)
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    flippable = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(augment(x.clone(), flippable, gen_a), augment(x.clone(), flippable, gen_b, 1.0, 0.0))
    assert not torch.equal(augment(x.clone(), flippable, gen_a, 1.0, 1.0), augment(x.clone(), flippable, gen_b))
