"""Model bundles verified before use (issue 17, items 1 and 4): a checksum manifest, and contents in range.

Each test makes its hostile bundle from a copy of the bundled models or a tiny forest, and checks that it is
refused with a message naming the file and the problem, through the engine and through the command line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import read_toy_corpus, write_series

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.errors import BundleError
from SeriesClassifierLib.models.bundle import (
    MANIFEST_FILE,
    bundle_version,
    load_bundle,
    manifest_problems,
    write_manifest,
)
from SeriesClassifierLib.models.ensemble import EnsembleParams
from SeriesClassifierLib.models.forest import ForestModel
from SeriesClassifierLib.models.forest_arrays import ARRAYS_FILE, INDEX_FILE, ForestArraysError
from SeriesClassifierLib.resources import default_models_dir


@pytest.fixture()
def bundled(tmp_path) -> Path:
    """A copy of the bundled models, manifest included."""
    return Path(shutil.copytree(default_models_dir(), tmp_path / "models"))


@pytest.fixture(scope="module")
def toy_forest(tmp_path_factory) -> ForestModel:
    series, y = read_toy_corpus(tmp_path_factory.mktemp("toy"), n_per_class=4, seed=3)
    return ForestModel(n_estimators=5).fit(series, {"sequence": y})


def test_the_bundled_models_carry_a_manifest_that_matches(bundled):
    assert (default_models_dir() / MANIFEST_FILE).is_file()
    assert manifest_problems(default_models_dir()) == {}
    assert load_bundle(bundled, load_cnn=False).forest is not None


def test_a_changed_byte_is_refused_with_the_file_named(bundled):
    npz = bundled / ARRAYS_FILE
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"forest_trees\.npz: checksum differs from bundle_manifest\.json"):
        load_bundle(bundled, load_cnn=False)


def test_a_file_added_after_the_bundle_was_made_is_refused(bundled):
    (bundled / "forest.skops").write_bytes(b"anything")
    assert "forest" in manifest_problems(bundled)
    assert "not in bundle_manifest.json" in manifest_problems(bundled)["forest"]


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -1.0, "1"], ids=["nan", "inf", "negative", "text"])
def test_ensemble_weights_must_be_finite_numbers(bundled, weight):
    _edit_json(bundled / "ensemble.json", lambda d: d["weights"].update(cnn=weight))
    write_manifest(bundled)  # a bundle made with the bad value: the checksums match, the contents do not
    with pytest.raises(BundleError, match=r"ensemble\.json: weight of 'cnn' is"):
        load_bundle(bundled, load_cnn=False)


@pytest.mark.parametrize("key", ["review_threshold", "disagreement_confidence"])
def test_ensemble_thresholds_must_lie_in_0_1(tmp_path, key):
    (tmp_path / "ensemble.json").write_text(json.dumps({key: float("nan")}))
    with pytest.raises(BundleError, match=key):
        EnsembleParams.load(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({key: 0.5}))
    assert getattr(EnsembleParams.load(tmp_path), key) == 0.5


@pytest.mark.parametrize(("key", "value", "message"), [
    ("alone_weights", {"cnn": float("nan")}, "alone_weights: weight of 'cnn'"),
    ("alone_weights", [0.5], "alone_weights must be an object"),
    ("review_alone", "cnn", "review_alone must be a list"),
])
def test_settings_for_a_lone_model_are_checked(tmp_path, key, value, message):
    (tmp_path / "ensemble.json").write_text(json.dumps({key: value}))
    with pytest.raises(BundleError, match=message):
        EnsembleParams.load(tmp_path)


@pytest.mark.parametrize("temperature", [float("nan"), 0.0, float("inf"), -2.0])
def test_forest_temperatures_must_be_finite_and_positive(bundled, temperature):
    _edit_json(bundled / "forest.json", lambda d: d["temperatures"].update(sequence=temperature))
    write_manifest(bundled)
    with pytest.raises(BundleError, match=r"forest\.json: temperature of 'sequence' is"):
        load_bundle(bundled, load_cnn=False)


def test_a_forest_arrays_child_index_out_of_range_is_refused(toy_forest, tmp_path):
    import hashlib

    toy_forest.save(tmp_path)
    with np.load(tmp_path / ARRAYS_FILE) as z:
        arrays = {k: z[k] for k in z.files}
    left = arrays["sequence__children_left"]
    left[np.flatnonzero(left != -1)[0]] = 10**9
    np.savez_compressed(tmp_path / ARRAYS_FILE, **arrays)
    _edit_json(tmp_path / INDEX_FILE,
               lambda d: d.update(arrays_sha256=hashlib.sha256((tmp_path / ARRAYS_FILE).read_bytes()).hexdigest()))
    with pytest.raises(ForestArraysError, match="children_left out of range"):
        ForestModel.load(tmp_path)


def test_a_skops_forest_of_trusted_types_with_a_wild_child_index_is_refused(toy_forest, tmp_path):
    """Issue 17 item 1: scikit-learn's C code would follow the index out of memory (SIGSEGV)."""
    import copy

    import skops.io as sio

    toy_forest.save(tmp_path)
    (tmp_path / ARRAYS_FILE).unlink()
    (tmp_path / INDEX_FILE).unlink()
    estimators = copy.deepcopy(toy_forest.estimators)
    tree = estimators["sequence"].estimators_[0].tree_
    state = tree.__getstate__()
    inner = np.flatnonzero(state["nodes"]["left_child"] != -1)[0]
    state["nodes"]["left_child"][inner] = 10**9
    tree.__setstate__(state)
    sio.dump(estimators, tmp_path / "forest.skops")
    with pytest.raises(ForestArraysError, match=r"forest\.skops \[sequence\]: children_left out of range"):
        ForestModel.load(tmp_path)
    with pytest.raises(BundleError, match="no usable model"):
        load_bundle(tmp_path, load_cnn=False)


def test_the_cli_refuses_a_hostile_bundle_with_a_message(bundled, tmp_path, capsys):
    _edit_json(bundled / "ensemble.json", lambda d: d["weights"].update(forest=float("nan")))
    write_series(tmp_path / "study", "t2_tse_tra")  # a series to classify: models are loaded only for one
    code = main(["classify", str(tmp_path / "study"), "--out", str(tmp_path / "out.csv"), "--models", str(bundled),
                 "--no-cnn", "--quiet", "--store", str(tmp_path / "labels.db")])
    err = capsys.readouterr().err
    assert code == 2
    assert "ensemble.json" in err and "Traceback" not in err
    assert not (tmp_path / "out.csv").exists()


# ----------------------------------------------------------------------------- the CNN (torch)


def _small_cnn(folder: Path):
    from SeriesClassifierLib.models.cnn import CnnModel

    model = CnnModel.new(widths=[4, 4, 4, 4, 4], seq_hidden=8, gru_hidden=4)
    model.save(folder)
    return folder / "cnn.safetensors"


def _rewrite(weights: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    change(tensors)
    save_file(tensors, str(weights))


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["nan", "int8", "shape", "extra"])
def test_cnn_weights_are_checked_before_use(tmp_path, kind):
    import torch

    from SeriesClassifierLib.models.cnn import CnnModel

    weights = _small_cnn(tmp_path)
    first = next(k for k in CnnModel.load(tmp_path).net.state_dict() if k.endswith("weight"))
    changes = {
        "nan": lambda t: t[f"net.{first}"].view(-1).__setitem__(0, float("nan")),
        "int8": lambda t: t.update({f"net.{first}": t[f"net.{first}"].to(torch.int8)}),
        "shape": lambda t: t.update({f"net.{first}": t[f"net.{first}"][:1].clone()}),
        "extra": lambda t: t.update({"net.hidden_payload": torch.zeros(3)}),
    }
    _rewrite(weights, changes[kind])
    message = {"nan": "NaN or infinite", "int8": "torch.int8", "shape": "expected", "extra": "does not have"}[kind]
    with pytest.raises(BundleError, match=message) as info:
        CnnModel.load(tmp_path)
    assert "cnn.safetensors" in str(info.value)


@pytest.mark.torch
def test_cnn_sizes_are_checked_before_the_network_is_allocated(tmp_path):
    from SeriesClassifierLib.models.cnn import CnnModel

    _small_cnn(tmp_path)
    _edit_json(tmp_path / "cnn.json", lambda d: d.update(widths=[4, 4, 4, 4, 10**6]))
    with pytest.raises(BundleError, match=r"cnn\.json: layer sizes"):
        CnnModel.load(tmp_path)


def test_the_version_changes_with_the_decision_settings(tmp_path):
    # stored predictions are keyed by this version: new ensemble settings must not reuse the old answers
    (tmp_path / "forest.json").write_text(json.dumps({"version": "1.0"}))
    (tmp_path / "ensemble.json").write_text(json.dumps({"review_threshold": 0.55}))
    before = bundle_version(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({"review_threshold": 0.5}))
    after = bundle_version(tmp_path)
    assert before.startswith("forest-1.0+ensemble-") and after.startswith("forest-1.0+ensemble-") and before != after


def test_the_version_changes_with_the_physics_rules(tmp_path, monkeypatch):
    import dataclasses

    from SeriesClassifierLib.models import bundle as bundle_module
    from SeriesClassifierLib.vocabulary import load_vocabulary

    (tmp_path / "forest.json").write_text(json.dumps({"version": "1.0"}))
    (tmp_path / "ensemble.json").write_text(json.dumps({"review_threshold": 0.5}))
    before = bundle_version(tmp_path)
    fewer = dataclasses.replace(load_vocabulary(), physics_rules=load_vocabulary().physics_rules[:1])
    monkeypatch.setattr(bundle_module, "load_vocabulary", lambda: fewer)
    assert bundle_version(tmp_path) != before


def test_the_version_changes_when_a_new_default_changes_the_decision(tmp_path, monkeypatch):
    # an ensemble.json written before a setting existed gets the setting's default: its answers change,
    # so must the version, although the file did not
    from SeriesClassifierLib.models import bundle as bundle_module

    (tmp_path / "forest.json").write_text(json.dumps({"version": "1.0"}))
    (tmp_path / "ensemble.json").write_text(json.dumps({"review_threshold": 0.5}))
    before = bundle_version(tmp_path)
    loaded = bundle_module.EnsembleParams.load(tmp_path)
    monkeypatch.setattr(bundle_module.EnsembleParams, "load", classmethod(
        lambda cls, folder: cls.from_dict({**loaded.to_dict(), "crown_compromise": not loaded.crown_compromise})))
    assert bundle_version(tmp_path) != before
