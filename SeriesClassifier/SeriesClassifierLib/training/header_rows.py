"""The forest's training rows from header-only studies (the reading half of a fast header corpus).

``header_rows`` takes studies written on disk (folders with their label rows, e.g. from
``synth.header_corpus.header_studies``), reads each with the engine's own header reader
(``dicom.sources.iter_series_refs`` → ``dicom.headers.read_series`` → ``models.features.add_study_context``,
as ``training.corpus.read_all`` reads a corpus) and keeps the records with their labels, optionally written
as gzipped JSON lines in the format of a bundle's ``forest_train.jsonl.gz`` (``site_training.write_base_rows``).
What the forest trains on is exactly what the engine reads from the files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path


def read_study(study_dir: Path, rows: list) -> tuple[list, dict[str, dict[str, str]]]:
    """Header records of one written study and their labels (label-row objects or dicts with series_uid)."""
    from ..dicom.headers import read_series
    from ..dicom.sources import iter_series_refs
    from ..models.features import add_study_context

    by_uid = {}
    for row in rows:
        d = asdict(row) if is_dataclass(row) else dict(row)
        by_uid[d["series_uid"]] = {k: ("" if v is None else str(v)) for k, v in d.items()}
    series = [read_series(ref) for ref in iter_series_refs(study_dir) if ref.series_uid in by_uid]
    add_study_context(series)
    return series, {s.series_uid: by_uid[s.series_uid] for s in series}


def header_rows(
    studies: Iterable[tuple[Path, list]],
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list, dict[str, dict[str, str]]]:
    """All studies read (each while its folder exists); with ``out`` the rows are written. (series, labels)."""
    from .site_training import write_base_rows

    all_series: list = []
    labels: dict[str, dict[str, str]] = {}
    for k, (study_dir, rows) in enumerate(studies):
        series, study_labels = read_study(Path(study_dir), rows)
        all_series += series
        labels.update(study_labels)
        if progress is not None:
            progress(k + 1, len(series))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_base_rows(out, all_series, labels)
    return all_series, labels
