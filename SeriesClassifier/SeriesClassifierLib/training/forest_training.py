"""Training the metadata forest: reading a labelled corpus, the training targets, the recipe (header dropout
that keeps the forest honest), calibration figures and held-out evaluation.

Used by ``training.bundle`` (the whole ``seriesclassifier train`` run) and by the benchmarks.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..series import Series
from .header_augment import FIELD_DROPOUT


def log(msg: str) -> None:
    """Training progress, on stderr with the time (training runs for minutes)."""
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_all(path: Path, cache: Path | None = None) -> list:
    """Every series under path, headers read (or loaded from the cache written by an earlier run)."""
    from ..dicom.headers import read_series
    from ..dicom.sources import iter_series_refs
    from ..models.features import add_study_context
    from ..series import Series

    if cache is not None and cache.is_file():
        with open(cache, encoding="utf-8") as f:
            series = [Series.from_dict(json.loads(line)) for line in f if line.strip()]
        add_study_context(series)
        log(f"{len(series)} series from cache {cache}")
        return series
    t0 = time.time()
    refs = list(iter_series_refs(path))
    log(f"{len(refs)} series grouped under {path} in {time.time() - t0:.0f} s")
    series = [read_series(r) for r in refs]
    add_study_context(series)
    log(f"headers read in {time.time() - t0:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "w", encoding="utf-8") as f:
            for s in series:
                f.write(json.dumps(s.to_dict()) + "\n")
    return series


def training_targets(series: list, labels: dict[str, dict[str, str]]) -> dict[str, list]:
    from ..vocabulary import load_vocabulary

    tasks = ["sequence", *load_vocabulary().attribute_codes]
    return {task: [labels[s.series_uid].get(task) for s in series] for task in tasks}


def split_by_profile(series: list, labels: dict, holdout: list[str]) -> tuple[list, list]:
    usable = [s for s in series if not s.skipped and s.series_uid in labels and labels[s.series_uid].get("sequence")]
    held = [s for s in usable if labels[s.series_uid].get("profile", "") in set(holdout)]
    train = [s for s in usable if labels[s.series_uid].get("profile", "") not in set(holdout)]
    return train, held


def fit_forest(
    train: Sequence[Series],
    labels: dict[str, dict[str, str]],
    *,
    descriptions: bool = False,
    kind: str = "random_forest",
    n_estimators: int = 200,
    seed: int = 0,
    field_dropout: float = FIELD_DROPOUT,
    sample_weight: Sequence[float] | None = None,
):
    """The bundled recipe: a forest fitted on ``train`` with header dropout (``training.header_augment``).

    ``seriesclassifier train``, site retraining and the real-data benchmark's leave-source-out
    folds all come here, so a figure measured on a fold is a figure of the model that ships.
    """
    from ..models.features import FeatureExtractor
    from ..models.forest import ForestModel
    from .header_augment import drop_header_fields

    forest = ForestModel(FeatureExtractor(use_description=descriptions), kind=kind, n_estimators=n_estimators,
                         random_state=seed)
    rows = drop_header_fields(train, field_dropout, seed)
    return forest.fit(rows, training_targets(rows, labels), sample_weight=sample_weight)


def review_threshold_from_oob(forest) -> float:
    """The ensemble's review threshold from the forest's calibrated out-of-bag sequence predictions."""
    from ..models.calibration import review_threshold

    oob = forest.oob.get("sequence")
    if not oob:
        return 0.7
    p = forest.scalers["sequence"].transform(oob["probabilities"])
    return review_threshold(p.max(axis=1), p.argmax(axis=1) == oob["y"], target_accuracy=0.99)


def evaluate_forest(forest, series: list, labels: dict, params) -> dict:
    from ..models.bundle import ModelBundle
    from ..run.pipeline import predict_all
    from .evaluate import evaluate_predictions

    bundle = ModelBundle(forest=forest, ensemble=params, version="candidate")
    predictions = [p for _, p in predict_all(series, bundle, use_cnn=False)]
    return evaluate_predictions(predictions, labels)


def calibration_summary(forest) -> dict:
    """ECE of the out-of-bag sequence probabilities before and after temperature scaling."""
    from ..models.calibration import expected_calibration_error

    oob = forest.oob.get("sequence")
    if not oob:
        return {}
    raw = oob["probabilities"]
    cal = forest.scalers["sequence"].transform(raw)
    return {
        "temperature": round(forest.scalers["sequence"].temperature, 4),
        "oob_ece_raw": round(expected_calibration_error(raw, oob["y"]), 4),
        "oob_ece_calibrated": round(expected_calibration_error(cal, oob["y"]), 4),
    }


def write_labels_csv(labels: dict[str, dict[str, str]], path: Path) -> Path:
    """Training labels as the CSV the CNN trainer reads (written to a temporary folder by the caller)."""
    import csv

    columns = sorted({k for row in labels.values() for k in row} - {"series_uid"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["series_uid", *columns])
        w.writeheader()
        for uid, row in sorted(labels.items()):
            w.writerow({"series_uid": uid, **{c: row.get(c, "") for c in columns}})
    return path


def class_counts(values: list) -> dict[str, int]:
    from ..models.forest import normalise_label

    counts: dict[str, int] = {}
    for v in values:
        label = normalise_label("sequence", v)
        if label:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def compact_report(report: dict | None) -> dict | None:
    """Held-out metrics without the bulky confusion matrices, for forest.json."""
    if report is None:
        return None
    tasks = {
        task: {k: v for k, v in r.items() if k not in {"confusion", "classes"}} for task, r in report["tasks"].items()
    }
    return {**{k: v for k, v in report.items() if k != "tasks"}, "tasks": tasks}
