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
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..series import Series

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
