"""The table ``classify --out`` writes: one row (CSV) or object (JSON) per series, streamed as they come.

The CSV uses the export's column names for the same things (labels/export.py ``csv_columns``), so one
spreadsheet formula reads both.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError
from ..prediction import SeriesPrediction
from ..vocabulary import load_vocabulary
from .safe_text import csv_cell

__all__ = ["CSV_COLUMNS", "TAIL_COLUMNS", "csv_columns", "csv_row", "partial_path", "write_results"]

CSV_COLUMNS = [
    "series_uid",
    "study_uid",
    "patient_id",
    "series_number",
    "series_description",
    "n_images",
    "n_frames",
    "predicted_sequence",
    "predicted_sequence_probability",
    "predicted_top3",
    "predicted_orientation",
    "predicted_orientation_probability",
    "source_series_uid",
    "source_series_number",
]
TAIL_COLUMNS = ["needs_review", "outcome", "reason", "error", "model_version"]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def csv_row(p: SeriesPrediction, attribute_codes: list[str]) -> dict[str, object]:
    row: dict[str, object] = {
        "series_uid": p.series_uid,
        "study_uid": p.study_uid,
        "patient_id": p.patient_id,
        "series_number": "" if p.series_number is None else p.series_number,
        "series_description": p.series_description,
        "n_images": p.n_images,
        "n_frames": p.n_frames or p.n_images,
        "predicted_sequence": p.sequence.label if p.sequence else "",
        "predicted_sequence_probability": f"{p.sequence.probability:.4f}" if p.sequence else "",
        "predicted_top3": p.sequence.top_text(3) if p.sequence else "",
        "predicted_orientation": p.orientation.label if p.orientation else "",
        "predicted_orientation_probability": f"{p.orientation.probability:.4f}" if p.orientation else "",
        "source_series_uid": p.source_series_uid,
        "source_series_number": "" if p.source_series_number is None else p.source_series_number,
    }
    for code in attribute_codes:
        a = p.attributes.get(code)
        row[f"attribute_{code}"] = a.label if a else ""
        row[f"attribute_{code}_probability"] = f"{a.probability:.4f}" if a else ""
    row["needs_review"] = _bool(p.needs_review)
    row["outcome"] = p.outcome
    row["reason"] = " | ".join(p.reasons[:3])
    row["error"] = p.error or ""
    row["model_version"] = p.model_version
    return row


def csv_columns(attribute_codes: list[str]) -> list[str]:
    attributes = [c for code in attribute_codes for c in (f"attribute_{code}", f"attribute_{code}_probability")]
    return CSV_COLUMNS + attributes + TAIL_COLUMNS


def partial_path(out: Path) -> Path:
    """Where the results are streamed before they are renamed onto ``out``."""
    return out.with_name(out.name + ".partial")


class _SourceError(Exception):
    """What the predictions' iterator raised, carried past write_results' handling of write errors."""


def _pulled(predictions: Iterable[SeriesPrediction]) -> Iterator[SeriesPrediction]:
    it = iter(predictions)
    while True:
        try:
            p = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise _SourceError() from exc
        yield p


def write_results(predictions: Iterable[SeriesPrediction], out: Path) -> int:
    """Write each prediction as it comes (an archive's results are never all in memory); returns the count.

    Rows go to ``out.partial`` beside ``out``, each flushed at once (the file can be followed while an
    archive runs), and the whole is renamed onto ``out`` at the end, as write_export does: a reader never
    sees half an ``out``, and a stopped run leaves the ``.partial``, not a half ``out``. CSV cells never
    start a formula (csv_cell). The JSON is laid out as ``json.dumps({"series": [...]}, indent=1)`` would
    write it. A write that fails (full disk, read-only folder) is an OutputError and leaves no ``.partial``;
    what the predictions' iterator raises (a run stopped) passes unchanged and leaves the ``.partial``.
    """
    out = Path(out)
    partial = partial_path(out)
    n = 0
    predictions = _pulled(predictions)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise IsADirectoryError(21, "is a folder")
        if out.suffix.lower() == ".json":
            with open(partial, "w", encoding="utf-8") as f:
                f.write('{\n "series": [')
                for n, p in enumerate(predictions, start=1):
                    item = json.dumps(dict(p.to_dict(), outcome=p.outcome,
                                           predicted_top3=p.sequence.top(3) if p.sequence else []), indent=1)
                    f.write(("," if n > 1 else "") + "\n  " + item.replace("\n", "\n  "))
                    f.flush()
                f.write("\n ]\n}" if n else "]\n}")
                f.flush()
                os.fsync(f.fileno())
        else:
            codes = load_vocabulary().attribute_codes
            with open(partial, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=csv_columns(codes))
                writer.writeheader()
                for p in predictions:
                    writer.writerow({k: csv_cell(v) for k, v in csv_row(p, codes).items()})  # no formula
                    f.flush()  # each row on disk as its series finishes: a stopped run keeps what was done
                    n += 1
                os.fsync(f.fileno())
        os.replace(partial, out)
    except _SourceError as stopped:
        raise stopped.__cause__ from None  # the run stopped: the .partial keeps what was done
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {e.strerror or e}") from e
    return n
