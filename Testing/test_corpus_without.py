"""scripts/corpus_without.py: a training corpus and its slice cache without one class's small-matrix series."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import recipe_headers, write_classic_series

pytest.importorskip("torch")  # the cache lives in training.cnn_train

from SeriesClassifierLib.training.cnn_train import Cache  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "corpus_without.py"


def _script():
    spec = importlib.util.spec_from_file_location("corpus_without", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """Two studies of the factory's 8 × 8 images: a scout and a T2; their labels and a two-series cache."""
    rng = np.random.default_rng(0)
    uids = {}
    for study, sequence in (("study_0000", "SCOUT"), ("study_0001", "T2_2D")):
        uid, _ = write_classic_series(root / study / "s001", recipe_headers("T2_2D", rng), n=2)
        uids[sequence] = uid
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["series_uid", "sequence"])
        writer.writeheader()
        writer.writerows({"series_uid": u, "sequence": s} for s, u in uids.items())
    order = [uids["SCOUT"], uids["T2_2D"]]
    cache = Cache(images=np.stack([np.full((4, 4), i, np.uint8) for i in range(5)]),
                  series_index=np.array([0, 0, 1, 1, 1]), labels={"sequence": np.array([3, 3, 7, 7, 7])},
                  uids=np.array(order), profiles=np.array(["p", "p"]),
                  series_labels={"sequence": np.array([3, 7])}, n_labels=2)
    path = root.parent / "cache.npz"
    cache.save(path)
    return root, path, uids


def test_the_small_series_of_the_class_leave_labels_and_cache_and_the_rest_stays(tmp_path):
    corpus, cache, uids = _corpus(tmp_path / "corpus")
    out, out_cache = tmp_path / "out" / "corpus", tmp_path / "cache_out" / "corpus_k8_s128.npz"
    _script().main([str(corpus), str(cache), str(out), str(out_cache), "--sequence", "SCOUT", "--max-matrix", "128"])

    with open(out / "labels.csv", newline="", encoding="utf-8") as f:
        assert [r["series_uid"] for r in csv.DictReader(f)] == [uids["T2_2D"]]
    kept = Cache.load(out_cache)
    assert list(kept.uids) == [uids["T2_2D"]] and kept.n_labels == 1
    assert [int(im[0, 0]) for im in kept.images] == [2, 3, 4]  # the T2's own three slices
    assert list(kept.series_index) == [0, 0, 0] and list(kept.labels["sequence"]) == [7, 7, 7]
    assert (out / "study_0000" / "s001").is_dir()  # the studies are linked, not copied or lost


def test_series_larger_than_the_matrix_bound_are_kept(tmp_path):
    corpus, _, uids = _corpus(tmp_path / "corpus")
    assert _script().small_series(corpus, "SCOUT", 8) == {uids["SCOUT"]}
    assert _script().small_series(corpus, "SCOUT", 7) == set()  # the factory's images are 8 × 8
