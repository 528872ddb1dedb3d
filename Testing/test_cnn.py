"""The multi-task CNN: heads from the vocabulary, storage, predict(series), training on a toy corpus."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import make_toy_corpus
from pydicom.data import get_testdata_file

from SeriesClassifierLib.models.cnn import CnnConfig, CnnModel, SeriesNet, count_parameters
from SeriesClassifierLib.models.novelty import EmbeddingNovelty
from SeriesClassifierLib.series import Series
from SeriesClassifierLib.training.cnn_train import (
    Cache,
    _class_weights_for_sampler,
    augment,
    build_cache,
    evaluate,
    main,
    sampler_weights,
    train_cnn,
)
from SeriesClassifierLib.vocabulary import load_vocabulary

TOY_CLASSES = ["T2_2D", "TOF_MRA", "FLAIR_2D"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A trained toy model: 3 learnable classes, 3 training profiles, a held-out profile."""
    root = tmp_path_factory.mktemp("toy")
    make_toy_corpus(root / "train", TOY_CLASSES, 12, ["pA", "pB", "pC"], seed=0)
    make_toy_corpus(root / "test", TOY_CLASSES, 4, ["pH"], seed=1)
    out = root / "model"
    torch.manual_seed(0)
    result = train_cnn(root / "train", out, test=root / "test", epochs=6, batch_size=32, size=64, k=4,
                       samples_per_epoch=384, workers=1, threads=1, patience=10, docs_dir=root)
    return {"root": root, "out": out, "result": result, "model": CnnModel.load(out)}


def test_heads_follow_the_vocabulary():
    v = load_vocabulary()
    config = CnnConfig.from_vocabulary(v)
    assert config.sequence_classes == v.sequence_codes
    assert "MIXED" not in config.orientation_classes
    assert set(config.orientation_classes) | {"MIXED"} == set(v.orientation_codes)
    assert list(config.attributes) == v.attribute_codes
    net = SeriesNet(config)
    out = net(torch.rand(3, 1, 128, 128))
    assert out["sequence"].shape == (3, len(v.sequence_codes))
    assert out["orientation"].shape == (3, len(config.orientation_classes))
    for a in v.attributes:
        assert out[a.code].shape == (3, len(a.values))
    # the auxiliary softmaxes feed the sequence head
    n_aux = len(config.orientation_classes) + sum(len(a.values) for a in v.attributes)
    assert net.sequence_head[0].in_features == config.widths[-1] + n_aux
    assert 1e5 < count_parameters(net) < 5e6


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    model = CnnModel.new()
    x = np.random.default_rng(0).random((4, 128, 128)).astype(np.float32)
    before = model.infer(x)
    model.save(tmp_path)
    assert (tmp_path / "cnn.safetensors").is_file() and (tmp_path / "cnn.json").is_file()
    loaded = CnnModel.load(tmp_path)
    after = loaded.infer(x)
    for k in before:
        np.testing.assert_allclose(before[k], after[k], atol=1e-6)
    assert json.loads((tmp_path / "cnn.json").read_text())["sequence_classes"] == model.config.sequence_classes


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="cnn.safetensors"):
        CnnModel.load(tmp_path)


def _series(files, uid="1.2.3"):
    return Series(series_uid=uid, study_uid="1", files=[Path(f) for f in files])


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR2_UNCR.dcm", "emri_small.dcm"])
def test_predict_real_files_returns_full_distributions_and_a_slice_profile(name):
    model = CnnModel.new()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.predict(_series([get_testdata_file(name)]))
    assert out.model == "cnn"
    assert abs(sum(out.sequence.probabilities.values()) - 1) < 1e-4
    assert set(out.sequence.probabilities) == set(model.config.sequence_classes)
    assert abs(sum(out.orientation.probabilities.values()) - 1) < 1e-4
    assert set(out.attributes) == set(model.config.attributes)
    n = 1 if name != "emri_small.dcm" else 8
    assert len(out.slice_profile) == n


def test_unreadable_pixels_give_no_output_and_a_reason():
    model = CnnModel.new()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.predict(_series([get_testdata_file("MR_truncated.dcm")], uid="9.9"))
    assert out.sequence is None and out.orientation is None
    assert "9.9" in out.reason and "MR_truncated.dcm" in out.reason


def test_skipped_series_is_not_read():
    s = _series([Path("/nonexistent.dcm")])
    s.skip_reason = "structured report"
    out = CnnModel.new().predict(s)
    assert out.sequence is None and "structured report" in out.reason


def test_augmentation_keeps_shape_range_and_only_flips_where_allowed():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, :, :8] = 1.0  # bright on the left
    y = augment(x.clone(), torch.zeros(64, dtype=torch.bool), gen)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    left, right = y[..., :16].mean(), y[..., 16:].mean()
    assert left > 3 * right  # no flips when nothing is flippable
    y2 = augment(x.clone(), torch.ones(64, dtype=torch.bool), gen)
    flipped = (y2[..., 16:].mean(dim=(1, 2, 3)) > y2[..., :16].mean(dim=(1, 2, 3))).float().mean()
    assert 0.2 < float(flipped) < 0.8  # about half flipped


def test_augmentation_fills_and_adds_padding_bars():
    """Bars must not tell the class: some images lose theirs (noise floor), some get new ones."""
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(256, 1, 32, 32)
    x[:, :, 8:24, :] = 0.6  # rectangular-FOV padding bars at the top and bottom
    y = augment(x.clone(), torch.zeros(256, dtype=torch.bool), gen)
    filled = float((y[:, :, :2, 12:20].mean(dim=(1, 2, 3)) > 0.004).float().mean())
    assert 0.3 < filled < 0.9
    square = torch.full((256, 1, 32, 32), 0.6)
    y2 = augment(square, torch.zeros(256, dtype=torch.bool), gen)
    barred = float((y2[:, :, :, 12:20].amax(dim=(1, 3))[:, :1] < 0.05).float().mean())
    assert 0.05 < barred < 0.6


def test_toy_training_learns_and_writes_model_card_fields(toy):
    result = toy["result"]
    assert result["val_profile"] in {"pA", "pB", "pC"}
    assert result["test"]["sequence"]["accuracy"] >= 0.9
    config = json.loads((toy["out"] / "cnn.json").read_text())
    assert config["training"]["val_profile"] == result["val_profile"]
    assert config["metrics"]["test"]["n_series"] == 12
    assert (toy["root"] / "cnn_confusion_sequence.png").is_file()
    assert result["aggregation"]["kept"] in {"mean", "gru"}


def test_cache_holds_every_labelled_series_as_uint8(toy):
    caches = list((toy["out"] / "cache").glob("train_*.npz"))
    cache = Cache.load(caches[0])
    assert cache.images.dtype == np.uint8
    assert len(cache.uids) == 36
    assert cache.images.shape[1:] == (64, 64)
    # per-slice plane from the slice's own geometry
    planes = set(cache.labels["orientation"].tolist())
    assert len(planes) == 3


def test_trained_model_predicts_series_from_dicom_like_from_cache(toy):
    model = toy["model"]
    test_root = toy["root"] / "test"
    cache = build_cache(test_root, model.config, toy["out"] / "cache" / "test_k4_s64.npz")
    metrics = evaluate(model, cache)
    folder = next(p for p in sorted(test_root.iterdir()) if p.is_dir())
    out = model.predict(_series(sorted(folder.glob("*.dcm"))))
    assert out.sequence.label in TOY_CLASSES
    assert metrics["sequence"]["accuracy"] >= 0.9


def test_resume_continues_from_the_checkpoint(toy, tmp_path):
    out = tmp_path / "m"
    common = dict(epochs=3, batch_size=32, size=64, k=4, samples_per_epoch=64, workers=1, threads=1, patience=10,
                  fit_gru=False, cache_dir=toy["out"] / "cache")
    train_cnn(toy["root"] / "train", out, **{**common, "epochs": 2})
    r = train_cnn(toy["root"] / "train", out, resume=True, **common)
    assert [h["epoch"] for h in r["history"]] == [0, 1, 2]


def test_command_line_runs(toy, tmp_path):
    out = tmp_path / "cli"
    rc = main(["--train", str(toy["root"] / "train"), "--out", str(out), "--epochs", "1", "--size", "64", "--k", "4",
               "--samples-per-epoch", "64", "--workers", "1", "--threads", "1", "--no-gru",
               "--cache-dir", str(toy["out"] / "cache")])
    assert rc == 0
    assert (out / "cnn.safetensors").is_file() and (out / "train.log").is_file()
    assert "cnn_train" in json.loads((out / "cnn.json").read_text())["training"]["command"]


def test_cache_rebuilt_when_the_corpus_grows_and_corpora_concatenate(tmp_path):
    config = CnnConfig.from_vocabulary(slice_options={"k": 2, "size": 32})
    make_toy_corpus(tmp_path / "a", TOY_CLASSES[:2], 1, ["p"], seed=0, n_slices=3)
    first = build_cache(tmp_path / "a", config, tmp_path / "a.npz", workers=1)
    assert len(first.uids) == 2
    make_toy_corpus(tmp_path / "a", TOY_CLASSES[:2], 2, ["p"], seed=1, n_slices=3)  # the corpus grew
    grown = build_cache(tmp_path / "a", config, tmp_path / "a.npz", workers=1)
    assert len(grown.uids) == 4
    both = Cache.concat([first, grown])
    assert len(both.uids) == 6 and len(both.images) == len(first.images) + len(grown.images)
    assert both.series_index.max() == 5
    assert set(both.series_index[len(first.images):].tolist()) == {2, 3, 4, 5}


def _novelty_model(rng) -> CnnModel:
    model = CnnModel.new(widths=[8, 8, 8, 8, 8])
    reference = rng.normal(size=(40, 8)) + np.array([5.0] + [0.0] * 7)  # training embeddings point one way
    held_out = rng.normal(size=(20, 8)) + np.array([5.0] + [0.0] * 7)
    model.novelty = EmbeddingNovelty.fit(reference, held_out, percentile=95.0, k=5)
    return model


def _slice_outputs(model: CnnModel, embedding: np.ndarray) -> dict[str, np.ndarray]:
    n = len(model.config.sequence_classes)
    return {"sequence": np.full((2, n), 1.0 / n), "orientation": np.full((2, 4), 0.25),
            **{a: np.full((2, len(v)), 1.0 / len(v)) for a, v in model.config.attributes.items()},
            "embedding": np.stack([embedding, embedding])}


def test_the_cnn_says_when_images_are_unlike_its_training_images():
    rng = np.random.default_rng(0)
    model = _novelty_model(rng)
    familiar = model.output_from_slices(_slice_outputs(model, np.array([5.0] + [0.0] * 7)))
    assert familiar.unfamiliar is None
    strange = model.output_from_slices(_slice_outputs(model, np.array([0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0])))
    assert strange.unfamiliar.startswith("images unlike its training images (embedding distance")


def test_the_novelty_reference_is_saved_and_loaded_with_the_weights(tmp_path):
    model = _novelty_model(np.random.default_rng(1))
    model.save(tmp_path)
    loaded = CnnModel.load(tmp_path)
    np.testing.assert_allclose(loaded.novelty.reference, model.novelty.reference, rtol=1e-6)
    assert loaded.novelty.threshold == pytest.approx(model.novelty.threshold)
    assert json.loads((tmp_path / "cnn.json").read_text())["novelty"]["k"] == 5


def test_a_damaged_novelty_reference_is_refused_naming_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from SeriesClassifierLib.errors import BundleError

    _novelty_model(np.random.default_rng(2)).save(tmp_path)
    tensors = load_file(str(tmp_path / "cnn.safetensors"))
    tensors["novelty.reference"][0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "cnn.safetensors"))
    with pytest.raises(BundleError, match="cnn.safetensors: the embedding novelty holds NaN"):
        CnnModel.load(tmp_path)


def _as_real_corpus(root: Path, sources: dict[str, str]) -> Path:
    """A toy corpus relabelled as ``build_real_dev.py`` writes real series: a source per series, no profile."""
    import csv

    with open(root / "labels.csv", newline="", encoding="utf-8") as fp:
        rows = list(csv.DictReader(fp))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fp:
        out = csv.writer(fp)
        out.writerow(["series_uid", "sequence", "orientation", "vendor", "case", "source"])
        for i, r in enumerate(rows):
            out.writerow([r["series_uid"], r["sequence"], r["orientation"], "TEST", f"case{i}", sources[r["profile"]]])
    return root


def test_sampler_draws_the_real_share_balanced_among_real_classes():
    labels = np.array([0] * 90 + [1] * 10 + [0] * 3 + [1] * 1)
    real = np.array([False] * 100 + [True] * 4)
    w = sampler_weights(labels, real, 0.25)
    assert w.sum() == pytest.approx(1.0)
    assert w[real].sum() == pytest.approx(0.25)
    # within the real slices, a class's share goes as the square root of its count (as for the generated)
    assert w[real & (labels == 0)].sum() / w[real & (labels == 1)].sum() == pytest.approx(np.sqrt(3))
    assert np.allclose(sampler_weights(labels, real, 0.0), _class_weights_for_sampler(labels))


def test_real_series_train_beside_generated_ones_and_a_left_out_source_is_not_seen(tmp_path):
    make_toy_corpus(tmp_path / "gen", TOY_CLASSES, 3, ["pA", "pB"], seed=0, n_slices=3)
    make_toy_corpus(tmp_path / "real", TOY_CLASSES, 2, ["x", "y"], seed=2, n_slices=3)
    _as_real_corpus(tmp_path / "real", {"x": "lab/one", "y": "lab/two"})
    common = dict(epochs=1, batch_size=16, size=32, k=2, samples_per_epoch=32, workers=1, threads=1,
                  fit_gru=False, cache_dir=tmp_path / "cache", real=tmp_path / "real", real_share=0.5)
    both = train_cnn(tmp_path / "gen", tmp_path / "both", **common)
    one = train_cnn(tmp_path / "gen", tmp_path / "one", exclude_profiles=["real:lab/two"], **common)
    cache = Cache.load(tmp_path / "cache" / "real_real_k2_s32.npz")
    assert sorted(set(cache.profiles.tolist())) == ["real:lab/one", "real:lab/two"]
    assert both["val_profile"] in {"pA", "pB"} and one["val_profile"] == both["val_profile"]
    n_series = {name: json.loads((tmp_path / name / "cnn.json").read_text())["training"]["n_series"]
                for name in ("both", "one")}
    assert n_series["both"] - n_series["one"] == 3  # lab/two's three series
