"""The metadata forest: sequence and auxiliary attributes from DICOM headers.

One tree ensemble per task (sequence, contrast, acquisition, fat_suppressed, derived),
each calibrated by temperature scaling on its out-of-bag votes. Orientation is not
learnt: where geometry exists the plane is computed exactly (``orientation.py``) and
reported with probability 1; without geometry the forest says nothing about it and
the CNN (or a reviewer) decides.

Storage: the trees as plain arrays (``models/forest_arrays.py``: numpy only, the same on every
scikit-learn; older bundles' skops files are still read, with an explicit list of trusted types,
never ``trusted=True``), everything else (feature vocabulary, classes, temperatures,
explanation tables, training summary) in a JSON file beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError
from ..prediction import ModelOutput, TaskPrediction
from ..series import Series
from ..vocabulary import load_vocabulary
from .calibration import TemperatureScaler
from .features import FeatureExtractor, header_tokens, numeric_features
from .forest_arrays import (
    ARRAYS_FILE,
    checked_from_sklearn,
    has_forest_arrays,
    load_forest_arrays,
    save_forest_arrays,
)
from .novelty import class_ranges, out_of_range, unseen_terms

FOREST_FILE = "forest.skops"
CONFIG_FILE = "forest.json"

# Types a forest file may contain besides the ones skops trusts by default. Anything else
# in a file makes loading fail: a models folder can come from anyone.
TRUSTED_TYPES = frozenset(
    {
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.tree._tree.Tree",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.int64",
        "numpy.float64",
    }
)

_TRUTHY = {"1", "true", "yes", "y", "post", "3d"}


def attribute_tasks() -> list[str]:
    return load_vocabulary().attribute_codes


def normalise_label(task: str, value: Any) -> str | None:
    """A label from a labels file as a vocabulary value ('True' → 'YES', '1' → 'POST'); None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in {"nan", "none", "null"}:
        return None
    vocab = load_vocabulary()
    if task == "sequence":
        return vocab.check_sequence(text.upper())
    if task == "orientation":
        return vocab.check_orientation(text.upper())
    allowed = vocab.attribute(task).values
    if text.upper() in allowed:
        return text.upper()
    # Boolean spellings: the first value of a two-valued attribute is "no"/"pre", the second "yes"/"post".
    if len(allowed) == 2:
        return allowed[1] if text.lower() in _TRUTHY else allowed[0]
    raise ValueError(f"{task}: {value!r} is not one of {', '.join(allowed)}")


def _estimator(kind: str, n_estimators: int, random_state: int, class_weight: str | None,
               max_features: float | str = "sqrt"):
    # scikit-learn is imported here, for training only: predicting reads plain arrays and a cold start
    # (every Slicer worker, every CLI run) would otherwise pay about a second importing it.
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    cls = {"random_forest": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}[kind]
    return cls(
        n_estimators=n_estimators,
        min_samples_leaf=1,
        max_features=max_features,
        class_weight=class_weight,
        oob_score=True,
        bootstrap=True,
        n_jobs=1,
        random_state=random_state,
    )


def _fmt(value: float, unit: str = "") -> str:
    text = f"{value:.0f}" if abs(value) >= 10 else f"{value:.3g}"
    return f"{text}{unit}"


# (feature, label, unit): physics values a reader recognises, in the order they are worth naming.
_PHYSICS = (
    ("ti", "TI", " ms"),
    ("tr", "TR", " ms"),
    ("te", "TE", " ms"),
    ("flip", "flip", "°"),
    ("phys:b_max", "b", ""),
    ("etl", "ETL", ""),
    ("temporal_positions", "time points", ""),
)


def _class_physics(series: Sequence[Series], labels: list[str | None]) -> dict[str, list[str]]:
    """Per class, the physics values that separate it from the rest (|AUC - 0.5| of class vs others).

    Only values the class mostly has are considered, so a reason never leans on a tag the series lacks.
    """
    from scipy.stats import rankdata

    names = [n for n, _, _ in _PHYSICS]
    values = np.array([[numeric_features(s).get(n, math.nan) for n in names] for s in series], dtype=float)
    y = np.array([lbl or "" for lbl in labels])
    out: dict[str, list[str]] = {}
    for label in sorted(set(y) - {""}):
        mine = y == label
        scores = []
        for j, name in enumerate(names):
            col = values[:, j]
            present = ~np.isnan(col)
            if present[mine].mean() < 0.5 or present.sum() == mine.sum():
                continue
            ranks = rankdata(col[present])
            inside = mine[present]
            n1, n0 = inside.sum(), (~inside).sum()
            if n1 == 0 or n0 == 0:
                continue
            auc = (ranks[inside].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
            scores.append((abs(auc - 0.5), name))
        out[label] = [name for score, name in sorted(scores, reverse=True) if score >= 0.25][:3]
    return out


class ForestModel:
    """Header forest. ``fit(series, targets)`` with targets {task: labels}; ``predict(series) -> ModelOutput``."""

    name = "forest"

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        kind: str = "random_forest",
        n_estimators: int = 200,
        class_weight: str | None = "balanced_subsample",
        random_state: int = 0,
        contrast_splits_pre_post: bool = True,
        attribute_max_features: float | str = 0.3,
        sequence_max_features: float | str = "sqrt",
    ):
        self.extractor = extractor or FeatureExtractor()
        # pre and post of one technique (T1_3D_PRE/POST) split by the contrast task (see ``split_pre_post``)
        self.contrast_splits_pre_post = contrast_splits_pre_post
        # An attribute often rests on one header fact (a named agent: post-contrast). With √453 features per
        # split that fact is rarely on offer near the root and its trees mix it with everything else (a named
        # Dotarem read POST 0.48); 30 % of the features per split reads it (0.85).
        self.attribute_max_features = attribute_max_features
        self.sequence_max_features = sequence_max_features
        self.kind = kind
        self.n_estimators = n_estimators
        self.class_weight = class_weight
        self.random_state = random_state
        self.estimators: dict[str, Any] = {}
        self.scalers: dict[str, TemperatureScaler] = {}
        self.class_tokens: dict[str, dict[str, float]] = {}  # class -> token -> P(class | token)
        self.physics_order: list[str] = [name for name, _, _ in _PHYSICS]
        self.class_physics: dict[str, list[str]] = {}  # class -> physics values that set it apart, best first
        self.class_ranges: dict[str, dict[str, list[float]]] = {}  # class -> header value -> training range
        self.oob: dict[str, dict[str, Any]] = {}  # task -> {"probabilities", "y", "classes"} from fitting
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting

    def fit(
        self, series: Sequence[Series], targets: dict[str, Sequence[Any]], sample_weight: Sequence[float] | None = None
    ) -> ForestModel:
        """Fit one calibrated ensemble per task; labels may be None where unknown (row left out for that task).

        ``sample_weight`` lets a few corrected series of a site count for more than the many generic ones.
        """
        if not series:
            raise ValueError("no series to train on")
        X = self.extractor.fit_transform(series)
        weights = np.ones(len(series)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        for task, raw in targets.items():
            labels = [normalise_label(task, v) for v in raw]
            keep = np.array([v is not None for v in labels])
            y = np.array([v for v in labels if v is not None])
            if keep.sum() < 2 or len(set(y)) < 2:
                continue  # nothing to learn: a constant task answers with its one class below
            est = _estimator(self.kind, self.n_estimators, self.random_state, self.class_weight,
                             self.sequence_max_features if task == "sequence" else self.attribute_max_features)
            est.fit(X[keep], y, sample_weight=weights[keep])
            # A sample no tree left out (tiny data) has no OOB vote: uniform, so it cannot sway the temperature.
            oob = np.nan_to_num(est.oob_decision_function_, nan=0.0)
            empty = oob.sum(axis=1) <= 0
            oob[empty] = 1.0 / len(est.classes_)
            oob = oob / oob.sum(axis=1, keepdims=True)
            y_idx = np.searchsorted(est.classes_, y)
            self.scalers[task] = TemperatureScaler().fit(oob, y_idx)
            self.estimators[task] = est
            self.oob[task] = {"probabilities": oob, "y": y_idx, "classes": list(est.classes_)}
        if "sequence" in targets:
            self._fit_explanations(series, [normalise_label("sequence", v) for v in targets["sequence"]])
        self.info = {"n_series": len(series), "n_features": X.shape[1]}
        return self

    def _fit_explanations(self, series: Sequence[Series], labels: list[str | None]) -> None:
        """Per class, the tokens that point at it (P(class | token)), for readable reasons."""
        token_counts: dict[str, int] = {}
        joint: dict[str, dict[str, int]] = {}
        for s, label in zip(series, labels):
            if label is None:
                continue
            for t in header_tokens(s.header, self.extractor.use_description):
                token_counts[t] = token_counts.get(t, 0) + 1
                joint.setdefault(label, {}).setdefault(t, 0)
                joint[label][t] += 1
        self.class_tokens = {
            label: {
                t: round(c / token_counts[t], 3)
                for t, c in counts.items()
                if c >= 3 and c / token_counts[t] >= 0.3 and not t.startswith("mr:")
            }
            for label, counts in joint.items()
        }
        est = self.estimators.get("sequence")
        if est is not None:
            importance = dict(zip(self.extractor.feature_names, est.feature_importances_))
            self.physics_order = sorted((n for n, _, _ in _PHYSICS), key=lambda n: -importance.get(n, 0.0))
        self.class_physics = _class_physics(series, labels)
        self.class_ranges = class_ranges(series, labels)

    # ------------------------------------------------------------------ predicting

    def classes(self, task: str) -> list[str]:
        est = self.estimators.get(task)
        return [str(c) for c in est.classes_] if est is not None else []

    def predict_proba(self, series: Sequence[Series]) -> dict[str, np.ndarray]:
        """Calibrated probabilities per task, columns in ``classes(task)`` order."""
        X = self.extractor.transform(series)
        return {task: self.scalers[task].transform(est.predict_proba(X)) for task, est in self.estimators.items()}

    def predict_many(self, series: Sequence[Series]) -> list[ModelOutput]:
        if not series:
            return []
        probabilities = self.predict_proba(series)
        pairs = pre_post_pairs() if self.contrast_splits_pre_post else []
        outputs = []
        for i, s in enumerate(series):
            per_task = {
                task: TaskPrediction.from_probabilities(dict(zip(self.classes(task), p[i].tolist())))
                for task, p in probabilities.items()
            }
            sequence = per_task.pop("sequence", None)
            if sequence is not None and pairs and "contrast" in per_task:
                sequence = split_pre_post(sequence, per_task["contrast"], pairs)
            orientation = (
                TaskPrediction(s.orientation, 1.0, {s.orientation: 1.0}) if s.orientation is not None else None
            )
            out = ModelOutput(model=self.name, sequence=sequence, orientation=orientation, attributes=per_task)
            out.reason = self.explain(s, sequence.label if sequence else None)
            out.novelty = self.novelty(s, sequence.label if sequence else None)
            outputs.append(out)
        return outputs

    def predict(self, series: Series) -> ModelOutput:
        return self.predict_many([series])[0]

    def explain(self, series: Series, label: str | None) -> str:
        """'TI 2500 ms, TR 9000 ms, TE 85 ms; IR, tir2d → FLAIR_2D': the values and tokens behind it."""
        num = numeric_features(series)
        parts = []
        order = self.class_physics.get(label or "", []) + [n for n in self.physics_order
                                                          if n not in self.class_physics.get(label or "", [])]
        for name in order:
            value = num.get(name, math.nan)
            if math.isnan(value) or value <= (1 if name in {"etl", "temporal_positions"} else 0):
                continue
            label_text, unit = next((lbl, u) for n, lbl, u in _PHYSICS if n == name)
            parts.append(f"{label_text} {_fmt(value, unit)}")
            if len(parts) == 3:
                break
        if series.header.get("MRAcquisitionType"):
            parts.append(str(series.header["MRAcquisitionType"]))
        pointing = self.class_tokens.get(label or "", {})
        present = [t for t in header_tokens(series.header, self.extractor.use_description) if t in pointing]
        present.sort(key=lambda t: -pointing[t])
        tokens = [t.split(":", 1)[1] for t in present[:3]]
        text = ", ".join(parts)
        if tokens:
            text += ("; " if text else "") + " ".join(tokens)
        if label:
            text += f" → {label}"
        return text.strip()

    def novelty(self, series: Series, label: str | None) -> list[str]:
        """Why this series is unlike the forest's training data (empty when it is not)."""
        reasons = []
        unseen = unseen_terms(header_tokens(series.header), set(self.extractor.tokens))
        if unseen:
            reasons.append("header terms rare or absent in training: " + ", ".join(unseen))
        strays = out_of_range(series.header, label, self.class_ranges) if label else []
        if strays:
            reasons.append("unlike its class in training: " + "; ".join(strays))
        return reasons

    # ------------------------------------------------------------------ storage

    def config(self) -> dict[str, Any]:
        return {
            "format": 1,
            "kind": self.kind,
            "n_estimators": self.n_estimators,
            "class_weight": self.class_weight,
            "random_state": self.random_state,
            "contrast_splits_pre_post": self.contrast_splits_pre_post,
            "attribute_max_features": self.attribute_max_features,
            "sequence_max_features": self.sequence_max_features,
            "features": self.extractor.to_dict(),
            "tasks": {task: self.classes(task) for task in self.estimators},
            "temperatures": {task: s.temperature for task, s in self.scalers.items()},
            "class_tokens": self.class_tokens,
            "physics_order": self.physics_order,
            "class_physics": self.class_physics,
            "class_ranges": self.class_ranges,
            "info": self.info,
        }

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # The trees as plain arrays (models/forest_arrays.py): the same on every scikit-learn, no pickles.
        path = save_forest_arrays(self.estimators, folder)
        (folder / FOREST_FILE).unlink(missing_ok=True)  # an older skops file would only be a stale fallback
        config = self.config()
        config.update(extra or {})
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True), encoding="utf-8")
        return path

    @staticmethod
    def _load_skops(path: Path, config_path: Path) -> dict[str, Any]:
        import warnings

        import skops.io as sio
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        if not path.is_file() or not config_path.is_file():
            raise FileNotFoundError(f"a forest needs {path.parent / ARRAYS_FILE} (or {path}) and {config_path}")
        untrusted = sio.get_untrusted_types(file=path)
        unexpected = sorted(set(untrusted) - TRUSTED_TYPES)
        if unexpected:
            raise ValueError(f"{path}: refusing to load, it contains types not trusted here: {', '.join(unexpected)}")
        with warnings.catch_warnings():  # one version warning per tree otherwise; the arrays format avoids them
            warnings.simplefilter("ignore", UserWarning)
            estimators = sio.load(path, trusted=list(untrusted))
        if not isinstance(estimators, dict) or not all(
            isinstance(e, (RandomForestClassifier, ExtraTreesClassifier)) for e in estimators.values()
        ):
            raise ValueError(f"{path}: not a forest file (expected a dict of tree ensembles per task)")
        return {task: checked_from_sklearn(str(task), est, path) for task, est in estimators.items()}

    @classmethod
    def load(cls, folder: str | Path) -> ForestModel:
        folder = Path(folder)
        path, config_path = folder / FOREST_FILE, folder / CONFIG_FILE
        if has_forest_arrays(folder) and config_path.is_file():
            estimators = load_forest_arrays(folder)
        else:  # a bundle written before forest_arrays.py: skops, trusted types only
            estimators = cls._load_skops(path, config_path)
        config = json.loads(config_path.read_text(encoding="utf-8"))
        temperatures = _checked_temperatures(config.get("temperatures", {}), config_path)
        model = cls(
            FeatureExtractor.from_dict(config["features"]),
            kind=config.get("kind", "random_forest"),
            n_estimators=int(config.get("n_estimators", 200)),
            class_weight=config.get("class_weight"),
            random_state=int(config.get("random_state", 0)),
            # bundles written before it answered pre/post from the sequence task alone: keep their answers
            contrast_splits_pre_post=bool(config.get("contrast_splits_pre_post", False)),
            attribute_max_features=config.get("attribute_max_features", "sqrt"),
            sequence_max_features=config.get("sequence_max_features", "sqrt"),
        )
        model.estimators = dict(estimators)
        model.scalers = {t: TemperatureScaler(v) for t, v in temperatures.items()}
        for task in model.estimators:
            model.scalers.setdefault(task, TemperatureScaler())
        model.class_tokens = config.get("class_tokens", {})
        model.physics_order = config.get("physics_order", model.physics_order)
        model.class_physics = config.get("class_physics", {})
        model.class_ranges = config.get("class_ranges", {})
        model.info = config.get("info", {})
        return model


def pre_post_pairs() -> list[tuple[str, str]]:
    """(pre, post) codes of one technique (T1_3D_PRE, T1_3D_POST), from the vocabulary."""
    vocabulary = load_vocabulary()
    return [(code, post) for code in vocabulary.sequence_codes if (post := vocabulary.post_contrast_of(code))]


def split_pre_post(sequence: TaskPrediction, contrast: TaskPrediction,
                   pairs: Sequence[tuple[str, str]] | None = None) -> TaskPrediction:
    """The sequence answer with each pre/post pair's joint probability split by the contrast task.

    The sequence task learns pre/post from whatever tells the pair apart in training, the technique
    included (3-D FLASH T1 is post-contrast more often than not), and with one feature in 450 naming an
    agent it reads that evidence weakly. The contrast task is trained on every class's contrast, so
    whether a T1_3D is pre or post is its question: the technique gives T1_3D, contrast gives PRE/POST.
    """
    post = contrast.probabilities.get("POST")
    if post is None:
        return sequence
    probabilities = dict(sequence.probabilities)
    for pre_code, post_code in pre_post_pairs() if pairs is None else pairs:
        if pre_code in probabilities and post_code in probabilities:
            pair = probabilities[pre_code] + probabilities[post_code]
            probabilities[pre_code], probabilities[post_code] = pair * (1.0 - post), pair * post
    return TaskPrediction.from_probabilities(probabilities)


def _checked_temperatures(temperatures: Any, path: Path) -> dict[str, float]:
    """Calibration temperatures, each finite and positive: NaN or 0 gives every series the same answer."""
    if not isinstance(temperatures, dict):
        raise BundleError(f"{path}: temperatures must be an object of task to number")
    out = {}
    for task, t in temperatures.items():
        ok = isinstance(t, (int, float)) and not isinstance(t, bool) and 1e-3 <= t <= 1e3  # NaN fails too
        if not ok:
            raise BundleError(f"{path}: temperature of {task!r} is {t!r}, not a finite number in 0.001..1000")
        out[str(task)] = float(t)
    return out
