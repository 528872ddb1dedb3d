"""Exports of the label store: CSV and JSON tables, the BIDS mapping, dcm2bids and heudiconv configs.

Columns are stable and documented in docs/EXPORTS.md; add new ones at the end.
``anonymise`` (the default: privacy unless asked otherwise) leaves out what identifies a
patient (patient ID, free-text notes) and numbers subjects 01, 02, … instead of using patient
IDs; ``anonymise=False`` keeps them, for the site's own use.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import OutputError
from ..vocabulary import Vocabulary, load_vocabulary
from .bids import (
    BidsName,
    bids_names,
    dcm2bids_config,
    heudiconv_heuristic,
    selected_for_conversion,
)
from .bids_metadata import SeriesFacts
from .safe_text import csv_cell
from .store import LabelRecord, record_row, utc_now

FORMATS = ("csv", "json", "bids", "dcm2bids", "heudiconv")
# The file each format is offered as (Slicer's save dialog): its name says what it is, its suffix what reads it.
DEFAULT_FILE_NAMES = {"csv": "labels.csv", "json": "labels.json", "bids": "bids_mapping.json",
                      "dcm2bids": "dcm2bids_config.json", "heudiconv": "heuristic.py"}
JSON_FORMAT_VERSION = 1
# columns a patient could be identified by; blanked with anonymise
IDENTIFYING = ("patient_id", "note")


def csv_columns(vocabulary: Vocabulary) -> list[str]:
    """The CSV columns, in order (attribute columns follow the vocabulary)."""
    return [
        "series_uid",
        "study_uid",
        "patient_id",
        "series_number",
        "series_description",
        "predicted_sequence",
        "predicted_sequence_probability",
        "predicted_top3",
        "predicted_orientation",
        "predicted_orientation_probability",
        *[f"attribute_{code}" for code in vocabulary.attribute_codes],
        "needs_review",
        "review_state",
        "label_sequence",
        "label_orientation",
        "label_source",
        "corrected_by",
        "corrected_at",
        "correction_source",
        "note",
        "model_version",
        "bids_subject",
        "bids_session",
        "bids_datatype",
        "bids_suffix",
        "bids_entities",
        "bids_filename",
        "bids_derived",
        "n_images",
        "n_frames",
        "reason",
        "error",
        "bids_location",
        "outcome",
        "source_series_uid",
        "source_series_number",
    ]


def select(records: Sequence[LabelRecord], reviewed_only: bool = False) -> list[LabelRecord]:
    return [r for r in records if not reviewed_only or r.state != "unreviewed"]


def export_rows(
    records: Sequence[LabelRecord], vocabulary: Vocabulary | None = None, anonymise: bool = True,
    facts: dict[str, SeriesFacts] | None = None, overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One dict per series: the store's columns joined with the BIDS mapping (JSON structure)."""
    vocabulary = vocabulary or load_vocabulary()
    names = bids_names(records, vocabulary, anonymise, facts, overrides)
    rows = []
    for r in records:
        row = record_row(r)
        top = r.prediction.sequence.top(3) if r.prediction and r.prediction.sequence else []
        row["predicted_top3"] = [[label, round(p, 4)] for label, p in top]
        p = r.prediction
        row["n_images"] = p.n_images if p else None
        row["n_frames"] = (p.n_frames or p.n_images) if p else None
        row["reason"] = " | ".join(p.reasons[:3]) if p else None
        row["error"] = p.error if p else None
        row["outcome"] = p.outcome if p else None
        row["source_series_uid"] = (p.source_series_uid or None) if p else None  # the series it was derived from
        row["source_series_number"] = p.source_series_number if p else None
        name = names.get(r.series_uid)
        row["bids"] = name.to_dict() if name else None
        if anonymise:
            for key in IDENTIFYING:
                row[key] = None
        rows.append(row)
    return rows


def _flat(row: dict[str, Any], vocabulary: Vocabulary) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k not in ("attributes", "bids", "predicted_sequence_probabilities")}
    # the spelling of TaskPrediction.top_text, as classify's CSV writes it
    flat["predicted_top3"] = ";".join(f"{label}:{p:.4f}" for label, p in row["predicted_top3"])
    for key in ("predicted_sequence_probability", "predicted_orientation_probability"):
        if flat.get(key) is not None:
            flat[key] = f"{flat[key]:.4f}"  # as classify writes them: 0.5980, not 0.598
    for code in vocabulary.attribute_codes:
        flat[f"attribute_{code}"] = row["attributes"].get(code)
    bids = row["bids"] or {}
    flat["bids_subject"] = bids.get("subject")
    flat["bids_session"] = bids.get("session")
    flat["bids_datatype"] = bids.get("datatype")
    flat["bids_suffix"] = bids.get("suffix")
    flat["bids_entities"] = "_".join(f"{k}-{v}" for k, v in (bids.get("entities") or {}).items())
    flat["bids_filename"] = bids.get("filename")
    flat["bids_derived"] = bids.get("derived")
    flat["bids_location"] = bids.get("location")
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(csv_cell(value))  # a description "=HYPERLINK(…)" stays text in a spreadsheet


def to_csv(rows: Sequence[dict[str, Any]], vocabulary: Vocabulary | None = None) -> str:
    vocabulary = vocabulary or load_vocabulary()
    columns = csv_columns(vocabulary)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = _flat(row, vocabulary)
        writer.writerow({c: _cell(flat.get(c)) for c in columns})
    return buffer.getvalue()


def to_json(rows: Sequence[dict[str, Any]], vocabulary: Vocabulary | None = None, anonymise: bool = True) -> str:
    vocabulary = vocabulary or load_vocabulary()
    document = {
        "format": "seriesclassifier-labels",
        "format_version": JSON_FORMAT_VERSION,
        "generator": f"SeriesClassifier {__version__}",
        "generated_at": utc_now(),
        "vocabulary_version": vocabulary.version,
        "anonymised": anonymise,
        "series": list(rows),
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def bids_mapping(names: dict[str, BidsName]) -> str:
    """series_uid -> BIDS placement, as JSON."""
    return json.dumps({uid: n.to_dict() for uid, n in sorted(names.items())}, indent=2) + "\n"


def default_file_name(fmt: str) -> str:
    """The file name an export of ``fmt`` is offered under, e.g. ``dcm2bids_config.json``."""
    if fmt not in DEFAULT_FILE_NAMES:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    return DEFAULT_FILE_NAMES[fmt]


def export(
    records: Sequence[LabelRecord],
    fmt: str,
    vocabulary: Vocabulary | None = None,
    anonymise: bool = True,
    include_derived: bool = False,
    facts: dict[str, SeriesFacts] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The text of one export format for ``records``. ``facts``/``overrides``: the BIDS sidecar fields of ASL and
    field-map series (``labels/bids_metadata.py``); without ``facts`` they are not checked."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    vocabulary = vocabulary or load_vocabulary()
    if fmt in ("csv", "json"):
        rows = export_rows(records, vocabulary, anonymise, facts, overrides)
        return to_csv(rows, vocabulary) if fmt == "csv" else to_json(rows, vocabulary, anonymise)
    names = bids_names(records, vocabulary, anonymise, facts, overrides)
    if fmt == "bids":
        return bids_mapping(names)
    if fmt == "dcm2bids":
        return json.dumps(dcm2bids_config(names, include_derived), indent=2) + "\n"
    return heudiconv_heuristic(names, include_derived, version=__version__)


def export_summary(
    records: Sequence[LabelRecord], fmt: str, vocabulary: Vocabulary | None = None, include_derived: bool = False,
    facts: dict[str, SeriesFacts] | None = None, overrides: dict[str, dict[str, Any]] | None = None,
) -> str:
    """What an export holds, counted the way its file counts: '19 of 37 series (12 derived left out: …)'."""
    if fmt in ("csv", "json"):
        return f"{len(records)} series"
    names = bids_names(records, vocabulary or load_vocabulary(), facts=facts, overrides=overrides)
    kept = list(names.values()) if fmt == "bids" else selected_for_conversion(names, include_derived)
    left = []
    if len(kept) < len(names):
        left.append(f"{len(names) - len(kept)} derived or outside BIDS left out (--include-derived keeps them)")
    if len(names) < len(records):
        left.append(f"{len(records) - len(names)} with no BIDS place (OTHER, unlabelled, unknown until a person "
                    "labels them)")
    return f"{len(kept)} of {len(records)} series" + (f" ({'; '.join(left)})" if left else "")


def write_export(text: str, out: str | Path) -> Path:
    """Write ``text`` to ``out`` atomically: a temporary file beside it, then a rename.

    A reader never sees half a file, and a failure (full disk, read-only folder, a folder named ``out``)
    leaves the old file as it was and no temporary behind; OutputError names the file and the reason.
    """
    out = Path(out)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise IsADirectoryError(21, "is a folder")
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {e.strerror or e}") from e
    return out


def check_writable(out: str | Path) -> None:
    """Fail before the work when ``out`` cannot be written (OutputError), not after it."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise IsADirectoryError(21, "is a folder")
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror or e}") from e
