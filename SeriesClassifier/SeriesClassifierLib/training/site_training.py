"""What a site's retraining starts from: the base bundle's training rows, and the split of a site's labels.

A forest cannot be fine-tuned: it is refitted. Refitted on a site's N corrected series alone it
would know only the classes those series happen to cover, so a bundle ships the header records
its forest was trained on (``forest_train.jsonl.gz``: the headers the features are computed
from, no file paths, no patient or institution fields; the bundled one comes from generated
studies) and ``train --from`` refits on those plus the site's series, the site's weighted up.

Only the base rows are written into a new bundle, never the site's own headers: a bundle is
something people copy around, and the site's labels stay in its label store, from which the
next retraining starts again.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..series import Series
from .corpus import log

BASE_ROWS = "forest_train.jsonl.gz"

# Header fields that identify a person, a place or a date; the features never use them.
PRIVATE_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
                  "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "OperatorsName",
                  "PerformingPhysicianName", "AccessionNumber", "StudyDate", "SeriesDate", "AcquisitionDate",
                  "ContentDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "StationName",
                  "DeviceSerialNumber", "StudyID", "InstanceCreationDate", "InstanceCreationTime")


def _public(series: Series) -> dict:
    d = series.to_dict()
    d["files"] = []
    d["header"] = {k: v for k, v in d.get("header", {}).items() if k not in PRIVATE_FIELDS}
    for key in ("patient_id", "patient_name"):
        if key in d:
            d[key] = ""
    return d


def write_base_rows(path: str | Path, series: Sequence[Series], labels: dict[str, dict[str, str]]) -> Path:
    """The forest's training rows (header records + labels) as gzipped JSON lines."""
    path = Path(path)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for s in series:
            row = {k: v for k, v in labels.get(s.series_uid, {}).items() if k != "series_uid"}
            f.write(json.dumps({"series": _public(s), "labels": row}) + "\n")
    return path


def read_base_rows(path: str | Path) -> tuple[list[Series], dict[str, dict[str, str]]]:
    series, labels = [], {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                s = Series.from_dict(d["series"])
                series.append(s)
                labels[s.series_uid] = d["labels"]
    return series, labels


def split_by_study(series: Sequence[Series], fraction: float, seed: int) -> tuple[list[Series], list[Series]]:
    """(train, test): whole studies go to test, about ``fraction`` of the series, the same for the same seed."""
    if fraction <= 0:
        return list(series), []
    studies = sorted({s.study_uid for s in series})
    rng = np.random.default_rng(seed)
    rng.shuffle(studies)
    size = Counter(s.study_uid for s in series)
    target, test_studies, n = fraction * len(series), set(), 0
    for study in studies:
        if n >= target or len(test_studies) == len(studies) - 1:
            break
        test_studies.add(study)
        n += size[study]
    return [s for s in series if s.study_uid not in test_studies], [s for s in series if s.study_uid in test_studies]

def with_base_rows(train: list, labels: dict, base: Path | None, site_weight: float) -> tuple[list, dict, list]:
    """The site's series plus the base bundle's training rows (when it ships them), with sample weights."""
    if base is None:
        return train, labels, [1.0] * len(train)
    if not (base / BASE_ROWS).is_file():
        log(f"{base} has no {BASE_ROWS}: the forest learns from the site's series alone")
        return train, labels, [1.0] * len(train)
    base_series, base_labels = read_base_rows(base / BASE_ROWS)
    return base_series + train, {**base_labels, **labels}, [1.0] * len(base_series) + [site_weight] * len(train)


def adapt_cnn_from_base(base: Path, out: Path, data: Path, train_labels: Path, *, fine_tune: bool,
                        seed: int) -> str | None:
    """Base rows copied; the base CNN copied, or with --fine-tune-cnn its heads fine-tuned on the site's series."""
    if base.resolve() != out.resolve() and (base / BASE_ROWS).is_file():
        shutil.copy(base / BASE_ROWS, out / BASE_ROWS)  # base rows only: the site's headers stay in its store
    if not (base / "cnn.safetensors").is_file():
        return None
    if not fine_tune:
        for name in ("cnn.safetensors", "cnn.json"):
            if base.resolve() != out.resolve():
                shutil.copy(base / name, out / name)
        return f"CNN copied unchanged from {base}"
    from .cnn_train import fine_tune_cnn

    result = fine_tune_cnn(base, data, train_labels, out, seed=seed)
    log(f"CNN heads fine-tuned on {result['n_series']} site series ({result['n_slices']} slices); "
         f"loss per epoch {result['losses']}")
    return f"CNN fine-tuned from {base}: heads only, {result['n_series']} site series"


def compare_on_site(out: Path, base: Path | None, test: list, labels: dict) -> None:
    """The new bundle and the base (or nothing) on the site's series kept out of training."""
    from ..models.bundle import load_bundle
    from ..run.pipeline import predict_all
    from .evaluate import compare_bundles, evaluate_predictions, summary_lines, write_comparison, write_report

    new = load_bundle(out, load_cnn=False)
    new_predictions = [p for _, p in predict_all(test, new, use_cnn=False)]
    if base is None:
        report = evaluate_predictions(new_predictions, labels)
        write_report(report, out / "site_test")
        for line in summary_lines(report):
            log(line)
        return
    old = load_bundle(base, load_cnn=False)
    old_predictions = [p for _, p in predict_all(test, old, use_cnn=False)]
    comparison = compare_bundles(new_predictions, old_predictions, labels)
    write_comparison(comparison, out / "site_test")
    t = comparison["tasks"]["sequence"]
    log(f"site test ({len(test)} series, forest only): sequence accuracy {t['baseline']['accuracy']:.4f} with "
         f"{base} → {t['new']['accuracy']:.4f}; fixed {len(comparison['fixed'])}, broken {len(comparison['broken'])}"
         f" (details in {out / 'site_test'})")
