"""Train a models bundle: what ``seriesclassifier train`` does, without the argument handling.

The metadata forest (+ its calibration and the ensemble's review threshold) is trained here. The CNN is
trained by ``cnn_train`` unless switched off; with ``base`` (``--from``) the models not retrained are copied
from that bundle and the forest is refitted on the base's rows plus the site's series. Series of
``holdout_profiles`` are never trained on; they (or ``eval_data``) give the held-out metrics written into
the model card.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from .corpus import log, read_all, split_by_profile, write_labels_csv
from .forest_training import fit_forest, training_targets
from .header_augment import FIELD_DROPOUT
from .site_training import (
    BASE_ROWS,
    adapt_cnn_from_base,
    compare_on_site,
    split_by_study,
    with_base_rows,
    write_base_rows,
)


@dataclass
class TrainOptions:
    data: Path
    out: Path
    labels: Path | None = None  # labels CSV or label store (default: DATA/labels.csv)
    base: Path | None = None  # --from: a bundle to start from
    no_cnn: bool = False
    fine_tune_cnn: bool = False
    site_weight: float = 10.0
    test_fraction: float | None = None  # default 0.2 with a base, else 0
    write_base_rows: bool = False
    holdout_profiles: list[str] = field(default_factory=list)
    eval_data: Path | None = None
    eval_labels: Path | None = None
    descriptions: bool = False
    kind: str | None = None
    n_estimators: int | None = None
    field_dropout: float = FIELD_DROPOUT
    seed: int = 0
    cache: Path | None = None
    docs: Path | None = None
    command: str = ""  # how this run was started, for the model card

    @property
    def labels_path(self) -> Path:
        return Path(self.labels) if self.labels else Path(self.data) / "labels.csv"


def read_training_labels(path: Path) -> dict[str, dict[str, str]]:
    """Labels from a CSV or a store (saying how many were corrected/accepted); TrainingError when unusable."""
    from ..labels.store import StoreError
    from .evaluate import read_any_labels

    try:
        labels = read_any_labels(path)
    except (ValueError, StoreError) as exc:
        raise TrainingError(f"labels: {exc} (give --labels)") from exc
    _check_codes(labels, path)
    if any("label_source" in row for row in labels.values()):
        sources = Counter(row.get("label_source", "") for row in labels.values())
        log(f"{len(labels)} verified labels from the store {path}: {sources.get('corrected', 0)} corrected, "
            f"{sources.get('accepted', 0)} accepted (unreviewed predictions are not training labels)")
    return labels


def _check_codes(labels: dict[str, dict[str, str]], path: Path) -> None:
    """Every label a vocabulary code, before any series is read (an unknown one failed deep in fitting)."""
    from ..models.forest import normalise_label
    from ..vocabulary import load_vocabulary

    tasks = ["sequence", *load_vocabulary().attribute_codes]
    bad = []
    for uid, row in labels.items():
        for task in tasks:
            try:
                normalise_label(task, row.get(task) or "")
            except ValueError as exc:
                bad.append(f"series {uid}: {exc}")
    if bad:
        raise TrainingError(f"{path}: {len(bad)} label(s) not in the vocabulary; the first: {bad[0]}")


# ----------------------------------------------------------------------------- the forest's figures


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


# ----------------------------------------------------------------------------- the run


def _forest_settings(options: TrainOptions) -> tuple[str, int, bool]:
    """(kind, trees, descriptions): the options, else what the base bundle's forest used, else the defaults."""
    base_config: dict[str, Any] = {}
    if options.base is not None and (Path(options.base) / "forest.json").is_file():
        base_config = json.loads((Path(options.base) / "forest.json").read_text(encoding="utf-8"))
    kind = options.kind or base_config.get("kind", "random_forest")
    n_estimators = options.n_estimators or int(base_config.get("n_estimators", 200))
    descriptions = options.descriptions or bool(base_config.get("features", {}).get("use_description", False))
    return kind, n_estimators, descriptions


def _heldout(options: TrainOptions, held: list, labels: dict) -> tuple[list, dict]:
    """The held-out series and their labels: the held-out profiles, or a separate --eval folder."""
    if not options.eval_data:
        return held, labels
    from .evaluate import read_labels

    eval_path = Path(options.eval_data)
    eval_labels = read_labels(Path(options.eval_labels) if options.eval_labels else eval_path / "labels.csv")
    return [s for s in read_all(eval_path) if not s.skipped and s.series_uid in eval_labels], eval_labels


def _write_heldout_report(report: dict, out: Path, docs: Path | None) -> None:
    from .evaluate import summary_lines, write_report

    written = write_report(report, out / "heldout", "forest, held-out profiles")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        for p in written:
            if p.suffix == ".png":
                shutil.copy(p, Path(docs) / f"forest_heldout_{p.name}")
    for line in summary_lines(report):
        log(line)


def _train_cnn(options: TrainOptions, out: Path, labels_path: Path) -> str | None:
    """Train the CNN into ``out`` when cnn_train is available; returns a note for the card."""
    try:
        from .cnn_train import train_cnn
    except ImportError as exc:
        return f"CNN not trained: cnn_train unavailable ({exc})"
    train_cnn(options.data, out, test=options.eval_data, exclude_profiles=list(options.holdout_profiles),
              seed=options.seed, labels_csv=labels_path, command=options.command)
    return None


def _cnn(options: TrainOptions, out: Path, train: list, labels: dict) -> str | None:
    """The bundle's CNN: adapted from the base, trained, or none; a note for the model card."""
    with tempfile.TemporaryDirectory() as tmp:  # series UIDs of the site stay out of the bundle
        train_labels = write_labels_csv({s.series_uid: labels[s.series_uid] for s in train},
                                        Path(tmp) / "training_labels.csv")
        if options.base is not None:
            return adapt_cnn_from_base(Path(options.base), out, Path(options.data), train_labels,
                                       fine_tune=options.fine_tune_cnn and not options.no_cnn, seed=options.seed)
        if not options.no_cnn:
            return _train_cnn(options, out, train_labels)
    return None


def train_bundle(options: TrainOptions) -> Path:
    """Train and write a models bundle into ``options.out``; TrainingError when the data cannot be used."""
    from .. import __version__
    from ..models.bundle import write_manifest
    from ..models.ensemble import EnsembleParams
    from .model_card import write_model_card

    data, out, base = Path(options.data), Path(options.out), Path(options.base) if options.base else None
    labels = read_training_labels(options.labels_path)
    kind, n_estimators, descriptions = _forest_settings(options)
    series = read_all(data, Path(options.cache) if options.cache else None)
    train, held = split_by_profile(series, labels, options.holdout_profiles)
    if not train:
        raise TrainingError(f"no labelled, classifiable series under {data} (labels: {options.labels_path})")
    # with a base, part of the site is kept out to compare the new bundle with the base on
    fraction = options.test_fraction if options.test_fraction is not None else (0.2 if base is not None else 0.0)
    train, site_test = split_by_study(train, fraction, options.seed)
    fit_series, fit_labels, weights = with_base_rows(train, labels, base, options.site_weight)
    log(f"training on {len(train)} series ({len(held)} held out by profile, {len(site_test)} by study for the "
        f"comparison){f', plus {len(fit_series) - len(train)} base rows' if len(fit_series) > len(train) else ''}; "
        f"kind={kind}, trees={n_estimators}, descriptions={'on' if descriptions else 'off'}")
    forest = fit_forest(fit_series, fit_labels, descriptions=descriptions, kind=kind, n_estimators=n_estimators,
                        seed=options.seed, field_dropout=options.field_dropout, sample_weight=weights)
    if base is not None:
        params = EnsembleParams.load(base)  # fitted against the base's models; the refit forest is its kin
    else:
        params = EnsembleParams()
        params.review_threshold = round(review_threshold_from_oob(forest), 4)
    log(f"forest fitted; review threshold {params.review_threshold}")

    held, held_labels = _heldout(options, held, labels)
    report = evaluate_forest(forest, held, held_labels, params) if held else None
    out.mkdir(parents=True, exist_ok=True)
    version = f"{__version__}+{time.strftime('%Y%m%d%H%M')}"
    training = {
        "data": str(data),
        "labels": str(options.labels_path),
        "n_series": len(train),
        "n_base_rows": len(fit_series) - len(train),
        "profiles": sorted({labels[s.series_uid].get("profile", "") for s in train} - {""}),
        "heldout_profiles": sorted({held_labels[s.series_uid].get("profile", "") for s in held} - {""}),
        "heldout_data": str(options.eval_data or data),
        "class_counts": class_counts(training_targets(train, labels)["sequence"]),
        "command": options.command,
    }
    forest.save(out, extra={"version": version, "training": training, "calibration": calibration_summary(forest),
                            "heldout": compact_report(report)})
    params.save(out)
    if report is not None:
        _write_heldout_report(report, out, options.docs)
    cnn_note = _cnn(options, out, train, labels)
    if options.write_base_rows:
        write_base_rows(out / BASE_ROWS, train, labels)
    write_model_card(out, forest, params, report, training, version, notes=[n for n in [cnn_note] if n])
    write_manifest(out)  # last: the checksums of what the bundle holds now
    if site_test:
        compare_on_site(out, base, site_test, labels)
    log(f"bundle written to {out}")
    return out
