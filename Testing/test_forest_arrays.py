"""Forests as plain arrays (forest_arrays.py): scikit-learn's probabilities bit for bit, and files checked."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from SeriesClassifierLib.models.forest_arrays import (
    ARRAYS_FILE,
    INDEX_FILE,
    ArrayForest,
    ForestArraysError,
    has_forest_arrays,
    load_forest_arrays,
    save_forest_arrays,
)


def _data(rng, n=400, d=12, n_classes=5, missing=0.15):
    X = rng.normal(size=(n, d))
    X[:, 3] = rng.integers(0, 4, n)  # ties on a discrete feature
    y = np.array([f"C{int(v)}" for v in (np.abs(X[:, 0] * 2 + X[:, 1]) * 2).astype(int) % n_classes])
    X[rng.random(X.shape) < missing] = np.nan
    return X, y


def _probe(forest: ArrayForest, rng, n=300) -> np.ndarray:
    """Samples that land exactly on thresholds, just beside them, and on missing values."""
    inner = forest.children_left != -1
    X = rng.normal(size=(n, forest.n_features_in_))
    for j in range(forest.n_features_in_):
        t = forest.threshold[inner & (forest.feature == j) & np.isfinite(forest.threshold)]
        if len(t):
            X[:, j] = rng.choice(t, n) + rng.choice([0.0, 1e-7, -1e-7, 1e-3], n)
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


@pytest.mark.parametrize("kind", ["random_forest", "extra_trees", "weighted"])
def test_predictions_are_identical_to_scikit_learn(kind, tmp_path):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    rng = np.random.default_rng(1)
    X, y = _data(rng)
    cls = ExtraTreesClassifier if kind == "extra_trees" else RandomForestClassifier
    est = cls(n_estimators=25, random_state=0, class_weight="balanced" if kind == "weighted" else None,
              bootstrap=True, n_jobs=1).fit(X, y, sample_weight=rng.uniform(0.5, 3, len(y)))
    save_forest_arrays({"sequence": est}, tmp_path)
    (forest,) = load_forest_arrays(tmp_path).values()
    assert list(forest.classes_) == list(est.classes_) and forest.n_trees == 25
    for probe in (X, _probe(forest, rng)):
        np.testing.assert_array_equal(forest.predict_proba(probe), est.predict_proba(probe))
        np.testing.assert_array_equal(forest.predict(probe), est.predict(probe))


def test_the_bundle_loads_without_scikit_learn_objects_or_warnings():
    from SeriesClassifierLib.models.bundle import load_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = load_bundle(load_cnn=False)
    assert all(isinstance(e, ArrayForest) for e in bundle.forest.estimators.values())
    assert not bundle.problems


# ----------------------------------------------------------------------------- hostile files


@pytest.fixture()
def saved(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    X, y = _data(np.random.default_rng(2), n=120)
    save_forest_arrays({"sequence": RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)}, tmp_path)
    return tmp_path


def _tamper(folder: Path, **changes) -> None:
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, change in changes.items():
        arrays[f"sequence__{key}"] = change(arrays[f"sequence__{key}"].copy())
    np.savez(folder / ARRAYS_FILE, **arrays)
    index = json.loads((folder / INDEX_FILE).read_text())
    index["arrays_sha256"] = hashlib.sha256((folder / ARRAYS_FILE).read_bytes()).hexdigest()
    (folder / INDEX_FILE).write_text(json.dumps(index))


def _set(index, value):
    def change(a):
        a[index] = value
        return a

    return change


@pytest.mark.parametrize("changes, message", [
    ({"children_left": _set(0, 10**6)}, "out of range"),
    ({"children_left": _set(0, 0)}, "out of range"),  # a cycle: the root its own child
    ({"children_right": _set(0, -5)}, "one child|out of range"),
    ({"feature": _set(0, 99)}, "feature index"),
    ({"value": _set(0, np.inf)}, "finite"),
    ({"value": lambda a: a[:, :2]}, "shape"),
    ({"threshold": lambda a: a[:-1]}, "shape"),
    ({"node_offsets": lambda a: a[::-1].copy()}, "node_offsets"),
    ({"feature": lambda a: a.astype(np.float64)}, "integers"),
])
def test_a_damaged_or_hostile_file_gives_a_clear_error(saved, changes, message):
    _tamper(saved, **changes)
    with pytest.raises(ForestArraysError, match=message):
        load_forest_arrays(saved)


def test_pickles_checksums_and_junk_are_refused(saved, tmp_path):
    arrays = saved / ARRAYS_FILE
    good = arrays.read_bytes()
    arrays.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(ForestArraysError, match="checksum"):
        load_forest_arrays(saved)
    # an object array needs pickle: refused even with a matching checksum
    np.savez(arrays, **{"sequence__node_offsets": np.array([object()], dtype=object)})
    index = json.loads((saved / INDEX_FILE).read_text())
    index["arrays_sha256"] = hashlib.sha256(arrays.read_bytes()).hexdigest()
    (saved / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ForestArraysError):
        load_forest_arrays(saved)
    arrays.write_bytes(b"not a zip at all")
    index["arrays_sha256"] = hashlib.sha256(b"not a zip at all").hexdigest()
    (saved / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ForestArraysError, match="not a valid"):
        load_forest_arrays(saved)
    (saved / INDEX_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ForestArraysError, match="index"):
        load_forest_arrays(saved)


def test_a_hostile_forest_is_a_load_problem_not_a_crash(saved, tmp_path):
    from SeriesClassifierLib.errors import BundleError
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.resources import default_models_dir

    folder = tmp_path / "bundle"
    # without the manifest: the contents are checked even where no checksum says the files changed
    shutil.copytree(default_models_dir(), folder, ignore=shutil.ignore_patterns("cnn.*", "bundle_manifest.json"))
    shutil.copy(saved / ARRAYS_FILE, folder / ARRAYS_FILE)
    _tamper(folder, children_left=_set(1, 10**6))  # the index names sequence only: the other tasks are gone too
    with pytest.raises(BundleError, match=r"no usable model: forest: .*forest_trees\.npz"):
        load_bundle(folder, load_cnn=False)  # the forest was the only model asked for
    assert has_forest_arrays(folder)
