from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import RECIPES, read_toy_corpus, recipe_headers, write_classic_series, write_toy_corpus

from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import iter_series_refs
from SeriesClassifierLib.models.calibration import (
    TemperatureScaler,
    apply_temperature,
    expected_calibration_error,
    negative_log_likelihood,
    review_threshold,
)
from SeriesClassifierLib.models.features import FeatureExtractor
from SeriesClassifierLib.models.forest import ForestModel, normalise_label


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    series, y = read_toy_corpus(root / "train", n_per_class=9, seed=0)
    targets = {"sequence": y, "acquisition": ["3D" if "3D" in c else "2D" for c in y],
               "derived": ["YES" if c == "DWI" else "NO" for c in y]}
    forest = ForestModel(n_estimators=40).fit(series, targets)
    return {"root": root, "series": series, "y": y, "forest": forest}


def test_forest_learns_the_toy_classes(toy, tmp_path):
    labels = write_toy_corpus(tmp_path, n_per_class=2, seed=99)
    test = [read_series(r) for r in iter_series_refs(tmp_path)]
    outputs = toy["forest"].predict_many(test)
    right = sum(o.sequence.label == labels[s.series_uid] for o, s in zip(outputs, test))
    assert right == len(test)
    for o, s in zip(outputs, test):
        assert o.orientation.label == s.orientation and o.orientation.probability == 1.0
        assert set(o.attributes) == {"acquisition", "derived"}
        assert abs(sum(o.sequence.probabilities.values()) - 1) < 1e-6


def test_reason_names_the_physics_and_the_label(toy):
    flair = next(s for s, y in zip(toy["series"], toy["y"]) if y == "FLAIR_2D")
    out = toy["forest"].predict(flair)
    assert out.reason.endswith("→ FLAIR_2D")
    assert "TI " in out.reason and " ms" in out.reason


def test_save_load_round_trip_as_plain_arrays(toy, tmp_path):
    from SeriesClassifierLib.models.forest_arrays import ARRAYS_FILE, INDEX_FILE, ArrayForest

    toy["forest"].save(tmp_path)
    assert (tmp_path / ARRAYS_FILE).is_file() and (tmp_path / INDEX_FILE).is_file()
    assert not (tmp_path / "forest.skops").exists()  # no pickled scikit-learn objects any more
    again = ForestModel.load(tmp_path)
    assert all(isinstance(e, ArrayForest) for e in again.estimators.values())
    a = toy["forest"].predict_proba(toy["series"][:5])
    b = again.predict_proba(toy["series"][:5])
    for task in a:
        np.testing.assert_array_equal(a[task], b[task])
    assert again.extractor.tokens == toy["forest"].extractor.tokens


class Payload:
    """Stands for anything a forged models folder could carry."""


def test_a_file_with_unexpected_types_is_refused(toy, tmp_path):
    """An older bundle's skops file is still read (no arrays beside it): only with trusted types."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from SeriesClassifierLib.models.forest_arrays import ARRAYS_FILE, INDEX_FILE

    toy["forest"].save(tmp_path)
    (tmp_path / ARRAYS_FILE).unlink()
    (tmp_path / INDEX_FILE).unlink()
    sio.dump({"sequence": Payload()}, tmp_path / "forest.skops")
    with pytest.raises(ValueError, match="not trusted"):
        ForestModel.load(tmp_path)
    # trusted by skops, but not a forest: refused too
    sio.dump({"sequence": FunctionTransformer(func=np.log1p)}, tmp_path / "forest.skops")
    with pytest.raises(ValueError, match="not a forest"):
        ForestModel.load(tmp_path)


def test_labels_are_normalised_to_the_vocabulary():
    assert normalise_label("contrast", "True") == "POST"
    assert normalise_label("contrast", "PRE") == "PRE"
    assert normalise_label("fat_suppressed", "0") == "NO"
    assert normalise_label("derived", "yes") == "YES"
    assert normalise_label("sequence", "flair_2d") == "FLAIR_2D"
    assert normalise_label("sequence", "") is None
    with pytest.raises(ValueError, match="valid codes"):
        normalise_label("sequence", "T1_MPRAGE")


def test_description_features_are_optional_and_separate(toy):
    with_desc = ForestModel(FeatureExtractor(use_description=True), n_estimators=10).fit(
        toy["series"], {"sequence": toy["y"]})
    assert any(t.startswith("desc:") for t in with_desc.extractor.tokens)
    assert not any(t.startswith("desc:") for t in toy["forest"].extractor.tokens)


def test_temperature_scaling_lowers_nll_and_keeps_ranking():
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.0
    over = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.3)  # overconfident
    scaler = TemperatureScaler().fit(over, y)
    fixed = scaler.transform(over)
    assert scaler.temperature > 1.5
    assert negative_log_likelihood(fixed, y) < negative_log_likelihood(over, y)
    assert expected_calibration_error(fixed, y) < expected_calibration_error(over, y)
    np.testing.assert_array_equal(fixed.argmax(1), over.argmax(1))


def test_ece_is_zero_for_perfect_confident_answers_and_large_for_wrong_ones():
    p = np.eye(3)[[0, 1, 2, 0]]
    assert expected_calibration_error(p, np.array([0, 1, 2, 0])) == pytest.approx(0.0)
    assert expected_calibration_error(p, np.array([1, 2, 0, 1])) == pytest.approx(1.0)


def test_review_threshold_reaches_the_target_accuracy():
    confidence = np.array([0.95, 0.9, 0.85, 0.8, 0.6, 0.55, 0.52])
    correct = np.array([1, 1, 1, 1, 0, 1, 0], bool)
    assert review_threshold(confidence, correct, 0.99) == pytest.approx(0.8)
    assert review_threshold(confidence, np.zeros(7, bool), 0.99) == 0.9  # never: the upper bound


def test_unknown_tasks_with_one_class_are_left_out(tmp_path):
    uid, _ = write_classic_series(tmp_path / "a", recipe_headers("T2_2D", np.random.default_rng(0)))
    uid2, _ = write_classic_series(tmp_path / "b", recipe_headers("T1_2D_PRE", np.random.default_rng(0)))
    series = [read_series(r) for r in iter_series_refs(tmp_path)]
    forest = ForestModel(n_estimators=5).fit(series, {"sequence": ["T2_2D", "T1_2D_PRE"], "contrast": ["PRE", None]})
    assert "contrast" not in forest.estimators and "sequence" in forest.estimators
    assert len(RECIPES) >= 5


def test_the_bundled_forest_is_small_trusted_and_documented():
    import json

    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.vocabulary import load_vocabulary

    folder = default_models_dir()
    path = folder / "forest_trees.npz"
    assert path.stat().st_size < 20 * 1024 * 1024
    assert not (folder / "forest.skops").exists()  # the arrays replace it (forest_arrays.py)
    forest = ForestModel.load(folder)
    assert not forest.extractor.use_description  # the bundled model stands without descriptions
    assert set(forest.classes("sequence")) == set(load_vocabulary().sequence_codes)
    config = json.loads((folder / "forest.json").read_text())
    assert config["version"] and config["heldout"]["tasks"]["sequence"]["accuracy"] >= 0.97
    card = (folder / "MODEL_CARD.md").read_text()
    assert "seriesclassifier train" in card and "Held-out" in card and "McGill" in card


@pytest.mark.torch  # the CNN training module imports torch
def test_cnn_and_forest_calibration_errors_use_one_binning():
    """The CNN's training metrics and the forest's report the same ECE (15 bins) for the same predictions."""
    from SeriesClassifierLib.training import cnn_train

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=400)
    y = rng.integers(0, 5, size=400)
    metrics = cnn_train._classification_metrics(y, p, list("abcde"))
    assert metrics["ece"] == pytest.approx(expected_calibration_error(p, y))
    assert metrics["ece"] != pytest.approx(expected_calibration_error(p, y, n_bins=10))
    assert not hasattr(cnn_train, "expected_calibration_error")  # no second copy to drift


def test_pre_and_post_of_one_technique_are_split_by_the_contrast_task():
    from SeriesClassifierLib.models.forest import split_pre_post
    from SeriesClassifierLib.prediction import TaskPrediction

    # the sequence task: post for its technique; the contrast task: no agent anywhere, pre
    sequence = TaskPrediction.from_probabilities({"T1_3D_POST": 0.9, "T1_3D_PRE": 0.05, "FLAIR_3D": 0.05})
    split = split_pre_post(sequence, TaskPrediction.from_probabilities({"PRE": 0.8, "POST": 0.2}))
    assert split.label == "T1_3D_PRE"
    assert split.probabilities["T1_3D_PRE"] == pytest.approx(0.95 * 0.8)
    assert split.probabilities["T1_3D_POST"] == pytest.approx(0.95 * 0.2)
    assert split.probabilities["FLAIR_3D"] == pytest.approx(0.05)  # a class without a pre/post twin is untouched
    assert sum(split.probabilities.values()) == pytest.approx(1.0)


def test_a_bundle_saved_before_the_split_keeps_its_answers(toy, tmp_path):
    import json

    from SeriesClassifierLib.models.forest import CONFIG_FILE

    toy["forest"].save(tmp_path)
    assert ForestModel.load(tmp_path).contrast_splits_pre_post
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    del config["contrast_splits_pre_post"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    assert not ForestModel.load(tmp_path).contrast_splits_pre_post


def test_attribute_tasks_consider_more_features_per_split_than_the_sequence_task(toy, tmp_path):
    import json

    from SeriesClassifierLib.models.forest import CONFIG_FILE

    forest = toy["forest"]
    assert forest.estimators["sequence"].max_features == "sqrt"
    assert forest.estimators["acquisition"].max_features == forest.attribute_max_features == 0.3
    forest.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["attribute_max_features"] == 0.3 and config["sequence_max_features"] == "sqrt"
    del config["sequence_max_features"]  # a bundle written before the setting existed keeps √n
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    assert ForestModel.load(tmp_path).sequence_max_features == "sqrt"
