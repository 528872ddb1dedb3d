"""Tree ensembles as plain arrays: the forest file that loads the same on every scikit-learn.

A scikit-learn forest saved with skops (or pickle) is an object of the scikit-learn version that
wrote it: Slicer 5.6/5.8's Python 3.9 gets scikit-learn 1.6 at most, the models are trained with a
newer one, and every load then warns once per tree (or fails when the private ``Tree`` layout moves).
Here each tree is four arrays and a table of class fractions (children, split feature, threshold,
missing-value direction, node values), evaluated with numpy alone, giving the same probabilities,
bit for bit, as ``predict_proba`` of the forest they came from:

- samples go to float32 as scikit-learn's trees do, and compare ``x <= threshold`` in double;
- a missing value (NaN) goes where the split sent missing values in training;
- the leaves' class fractions are summed tree by tree in the forest's order and divided by the
  number of trees, as scikit-learn's ``ForestClassifier.predict_proba`` does.

Files (beside ``forest.json``): ``forest_trees.npz`` (numeric arrays only, read with
``allow_pickle=False``) and ``forest_trees.json`` (format, tasks, their classes, counts, checksum).
Everything is checked on load; a hostile or damaged file raises ``ForestArraysError`` (a
ValueError) naming what is wrong, never crashes or loops.

API::

    save_forest_arrays(estimators, folder, extra=None) -> Path   # {task: fitted forest or ArrayForest}
    load_forest_arrays(folder) -> dict[str, ArrayForest]
    has_forest_arrays(folder) -> bool
    ArrayForest.from_sklearn(forest); .predict_proba(X); .classes_; .n_features_in_; .n_trees
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS_FILE = "forest_trees.npz"
INDEX_FILE = "forest_trees.json"
FORMAT = "seriesclassifier-forest-arrays"
FORMAT_VERSION = 1
# A bound on what a file may ask us to allocate (the bundled forest has about 10^6 nodes in all).
MAX_NODES = 50_000_000
MAX_CLASSES = 10_000
_TASK = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_FIELDS = ("node_offsets", "children_left", "children_right", "feature", "threshold", "missing_left", "value")


class ForestArraysError(ValueError):
    """A forest-arrays file that is missing, damaged or not what it claims to be."""


class ArrayForest:
    """One task's tree ensemble as arrays; ``predict_proba`` matches scikit-learn's forest.

    Node arrays hold every tree one after another (``node_offsets[t]`` is tree t's root);
    child indices are global, and a leaf points at itself so every sample can take the same
    number of steps.
    """

    def __init__(self, classes: Any, n_features: int, node_offsets: np.ndarray, children_left: np.ndarray,
                 children_right: np.ndarray, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray,
                 value: np.ndarray) -> None:
        self.classes_ = np.asarray([str(c) for c in classes])
        self.n_features_in_ = int(n_features)
        self.node_offsets = np.asarray(node_offsets, dtype=np.int64)
        self.children_left = np.asarray(children_left, dtype=np.int64)
        self.children_right = np.asarray(children_right, dtype=np.int64)
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.value = np.asarray(value, dtype=np.float64)
        self._prepare()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sklearn(cls, forest: Any) -> ArrayForest:
        """Arrays from a fitted scikit-learn RandomForestClassifier / ExtraTreesClassifier (one output)."""
        classes, n_features, a = sklearn_arrays(forest)
        return cls(classes, n_features, a["node_offsets"], a["children_left"], a["children_right"], a["feature"],
                   a["threshold"], a["missing_left"], a["value"])

    def _prepare(self) -> None:
        """Global child indices (leaves point at themselves) and the number of steps to a leaf."""
        n = len(self.children_left)
        tree_of = np.repeat(np.arange(self.n_trees), np.diff(self.node_offsets))
        start = self.node_offsets[:-1][tree_of] if n else np.zeros(0, dtype=np.int64)
        leaf = self.children_left == -1
        own = np.arange(n, dtype=np.int64)
        self._left = np.where(leaf, own, self.children_left + start)
        self._right = np.where(leaf, own, self.children_right + start)
        self._feature = np.where(leaf, 0, self.feature)
        self._depth = _max_depth(self.children_left, self.children_right, self.node_offsets)

    @property
    def n_trees(self) -> int:
        return len(self.node_offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.children_left)

    # ------------------------------------------------------------------ prediction

    def apply(self, X: Any) -> np.ndarray:
        """The leaf (global node index) each sample reaches in each tree: (n_samples, n_trees)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected samples with {self.n_features_in_} features, got shape {X.shape}")
        X = X.astype(np.float64)  # exact: what the C comparison does with the float32 value
        node = np.broadcast_to(self.node_offsets[:-1], (X.shape[0], self.n_trees)).copy()
        rows = np.arange(X.shape[0])[:, None]
        for _ in range(self._depth):
            x = X[rows, self._feature[node]]
            nan = np.isnan(x)
            go_left = np.where(nan, self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self._left[node], self._right[node])
        return node

    def predict_proba(self, X: Any) -> np.ndarray:
        leaves = self.apply(X)
        out = np.zeros((leaves.shape[0], len(self.classes_)), dtype=np.float64)
        for t in range(self.n_trees):  # tree by tree, as scikit-learn accumulates
            out += self.value[leaves[:, t]]
        out /= self.n_trees
        return out

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ------------------------------------------------------------------ storage

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "node_offsets": self.node_offsets.astype(np.int64),
            "children_left": self.children_left.astype(np.int32),
            "children_right": self.children_right.astype(np.int32),
            "feature": self.feature.astype(np.int32),
            "threshold": self.threshold.astype(np.float64),
            "missing_left": self.missing_left.astype(np.uint8),
            "value": self.value.astype(np.float64),
        }


def sklearn_arrays(forest: Any) -> tuple[Any, int, dict[str, np.ndarray]]:
    """(classes, number of features, node arrays) of a scikit-learn forest, children local to each tree."""
    if getattr(forest, "n_outputs_", 1) != 1:
        raise ValueError("only single-output forests are supported")
    lefts, rights, feats, thrs, miss, values, offsets = [], [], [], [], [], [], [0]
    for est in forest.estimators_:
        tree = est.tree_
        n = int(tree.node_count)
        left = np.asarray(tree.children_left[:n], dtype=np.int64)
        right = np.asarray(tree.children_right[:n], dtype=np.int64)
        try:  # scikit-learn >= 1.3 records where missing values went
            missing = np.asarray(tree.missing_go_to_left[:n], dtype=bool)
        except AttributeError:
            missing = np.zeros(n, dtype=bool)
        value = np.array(tree.value[:n, 0, :], dtype=np.float64)
        leaf = left == -1
        totals = value.sum(axis=1)
        if not np.allclose(totals[leaf], 1.0):  # scikit-learn < 1.4 stores counts: its predict_proba divides
            value = value / np.where(totals > 0, totals, 1.0)[:, None]
        value[~leaf] = 0.0  # only leaves are ever read; zeros compress to nothing
        lefts.append(left)
        rights.append(right)
        feats.append(np.where(leaf, -1, np.asarray(tree.feature[:n], dtype=np.int64)))
        thrs.append(np.where(leaf, 0.0, np.asarray(tree.threshold[:n], dtype=np.float64)))
        miss.append(missing & ~leaf)
        values.append(value)
        offsets.append(offsets[-1] + n)
    arrays = {"node_offsets": np.array(offsets, dtype=np.int64), "children_left": np.concatenate(lefts),
              "children_right": np.concatenate(rights), "feature": np.concatenate(feats),
              "threshold": np.concatenate(thrs), "missing_left": np.concatenate(miss), "value": np.concatenate(values)}
    return forest.classes_, int(forest.n_features_in_), arrays


def checked_from_sklearn(task: str, forest: Any, path: str | Path) -> ArrayForest:
    """A scikit-learn forest read from a file, as checked arrays; ForestArraysError naming the file otherwise.

    A skops file of trusted types only can still hold a child index of 10⁹, which scikit-learn's C code
    follows out of memory (SIGSEGV): its trees are checked as an arrays file is, and never run by scikit-learn.
    """
    try:
        classes, n_features, arrays = sklearn_arrays(forest)
    except Exception as e:  # noqa: BLE001 - whatever the file built, it is not a usable forest
        raise ForestArraysError(f"{path} [{task}]: not a usable forest ({type(e).__name__}: {e})") from e
    meta = {"classes": [str(c) for c in classes], "n_features": n_features}
    return _checked_forest(task, meta, {f"{task}__{k}": v for k, v in arrays.items()}, Path(path))


def _max_depth(left: np.ndarray, right: np.ndarray, offsets: np.ndarray) -> int:
    """Steps from a root to the deepest leaf over all trees, one vectorised step per level (children
    are validated to lie after their parent, so this ends within the node count)."""
    if len(left) == 0:
        return 0
    tree_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    base = offsets[:-1][tree_of]
    frontier = np.asarray(offsets[:-1], dtype=np.int64)
    depth = 0
    while True:
        frontier = frontier[left[frontier] != -1]
        if frontier.size == 0:
            return depth
        depth += 1
        frontier = np.concatenate([left[frontier] + base[frontier], right[frontier] + base[frontier]])


# ---------------------------------------------------------------------- files


def has_forest_arrays(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / ARRAYS_FILE).is_file() and (folder / INDEX_FILE).is_file()


def save_forest_arrays(estimators: Mapping[str, Any], folder: str | Path, extra: Mapping[str, Any] | None = None
                       ) -> Path:
    """Write ``{task: fitted forest}`` (scikit-learn forests or ArrayForest) as arrays; returns the .npz path.

    Written to temporary names and renamed, so a reader never sees half a forest.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tasks, payload = {}, {}
    for task, est in estimators.items():
        if not _TASK.match(str(task)):
            raise ValueError(f"task name {task!r} cannot be stored (letters, digits, underscores)")
        forest = est if isinstance(est, ArrayForest) else ArrayForest.from_sklearn(est)
        tasks[task] = {"classes": [str(c) for c in forest.classes_], "n_features": forest.n_features_in_,
                       "n_trees": forest.n_trees, "n_nodes": forest.n_nodes}
        for name, array in forest.arrays().items():
            payload[f"{task}__{name}"] = array
    arrays_path, index_path = folder / ARRAYS_FILE, folder / INDEX_FILE
    tmp = folder / (ARRAYS_FILE + ".part.npz")
    np.savez_compressed(tmp, **payload)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    index = {"format": FORMAT, "version": FORMAT_VERSION, "arrays_sha256": digest, "tasks": tasks}
    index.update(extra or {})
    tmp_index = folder / (INDEX_FILE + ".part")
    tmp_index.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(arrays_path)
    tmp_index.replace(index_path)
    return arrays_path


def load_forest_arrays(folder: str | Path) -> dict[str, ArrayForest]:
    """``{task: ArrayForest}`` from a folder, every array checked; ForestArraysError when anything is off."""
    folder = Path(folder)
    arrays_path, index_path = folder / ARRAYS_FILE, folder / INDEX_FILE
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ForestArraysError(f"{index_path}: not readable ({e})") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ForestArraysError(f"{index_path}: not a forest-arrays index")
    if not isinstance(index.get("version"), int) or index["version"] > FORMAT_VERSION:
        raise ForestArraysError(f"{index_path}: format version {index.get('version')!r} not understood here")
    tasks = index.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ForestArraysError(f"{index_path}: no tasks")
    try:
        data = arrays_path.read_bytes()
    except OSError as e:
        raise ForestArraysError(f"{arrays_path}: not readable ({e})") from e
    if index.get("arrays_sha256") and hashlib.sha256(data).hexdigest() != index["arrays_sha256"]:
        raise ForestArraysError(f"{arrays_path}: checksum differs from {INDEX_FILE} (damaged or replaced)")
    forests = {}
    try:
        with np.load(arrays_path, allow_pickle=False) as z:
            for task, meta in tasks.items():
                forests[task] = _checked_forest(task, meta, z, arrays_path)
    except ForestArraysError:
        raise
    except Exception as e:  # a zip that is not one, an object array, a truncated member ...
        raise ForestArraysError(f"{arrays_path}: not a valid forest-arrays file ({type(e).__name__}: {e})") from e
    return forests


def _checked_forest(task: str, meta: Any, z: Any, path: Path) -> ArrayForest:
    where = f"{path} [{task}]"

    def fail(message: str) -> ForestArraysError:
        return ForestArraysError(f"{where}: {message}")

    if not isinstance(task, str) or not _TASK.match(task) or not isinstance(meta, dict):
        raise fail("bad task entry")
    classes = meta.get("classes")
    n_features = meta.get("n_features")
    if (not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes)):
        raise fail("classes must be a list of distinct strings")
    if not isinstance(n_features, int) or not 0 < n_features < 10**6:
        raise fail(f"bad number of features {n_features!r}")
    arrays = {}
    names = set(z.files if hasattr(z, "files") else z)  # an .npz, or the arrays of a loaded scikit-learn forest
    for name in _FIELDS:
        key = f"{task}__{name}"
        if key not in names:
            raise fail(f"array {name} missing")
        a = z[key]
        if a.dtype.kind not in ("i", "u", "f", "b"):
            raise fail(f"array {name} has dtype {a.dtype}, not numeric")
        arrays[name] = a
    offsets = arrays["node_offsets"]
    if offsets.ndim != 1 or len(offsets) < 2 or offsets.dtype.kind not in "iu":
        raise fail("node_offsets must be a 1-D integer array with at least one tree")
    offsets = offsets.astype(np.int64)
    n = int(offsets[-1])
    if offsets[0] != 0 or np.any(np.diff(offsets) < 1) or n > MAX_NODES:
        raise fail("node_offsets must start at 0, grow by at least one node per tree and stay under the cap")
    if meta.get("n_trees") not in (None, len(offsets) - 1):
        raise fail("tree count differs from the index")
    for name in ("children_left", "children_right", "feature", "threshold", "missing_left"):
        if arrays[name].shape != (n,):
            raise fail(f"{name} has shape {arrays[name].shape}, expected ({n},)")
    for name in ("children_left", "children_right", "feature"):
        if arrays[name].dtype.kind not in "iu":
            raise fail(f"{name} must be integers")
    value = arrays["value"]
    if value.shape != (n, len(classes)):
        raise fail(f"value has shape {value.shape}, expected ({n}, {len(classes)})")
    left, right = arrays["children_left"].astype(np.int64), arrays["children_right"].astype(np.int64)
    feature = arrays["feature"].astype(np.int64)
    threshold = arrays["threshold"].astype(np.float64)
    value = value.astype(np.float64)
    tree_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    size = np.diff(offsets)[tree_of]
    local = np.arange(n) - offsets[:-1][tree_of]
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise fail("a node has one child")
    inner = ~leaf
    for name, child in (("children_left", left), ("children_right", right)):
        c = child[inner]
        if np.any(c <= local[inner]) or np.any(c >= size[inner]):
            raise fail(f"{name} out of range (children must lie after their parent, inside their tree)")
    if np.any(feature[inner] < 0) or np.any(feature[inner] >= n_features):
        raise fail(f"feature index out of range 0..{n_features - 1}")
    # Thresholds are not checked for finiteness: scikit-learn writes +inf (and 1.6 NaN) for splits that part
    # missing from present values; any value, even NaN, only steers a sample left or right, as in its C code.
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise fail("values must be finite and not negative")
    return ArrayForest(classes, n_features, offsets, left, right, feature, threshold,
                       arrays["missing_left"].astype(bool), value)
