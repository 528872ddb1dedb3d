"""``seriesclassifier classify PATH --out results.csv|results.json``: every series under a folder or Slicer database."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError
from ..labels.store import LabelStore, StoreError
from ..prediction import REVIEW, UNKNOWN, SeriesPrediction
from ..series import SeriesRef
from ..vocabulary import load_vocabulary
from ._predictions import ModelChoice, ProgressBar, model_key, stale
from ._store_args import add_store_argument, open_store, series_under

__all__ = ["CSV_COLUMNS", "TAIL_COLUMNS", "ProgressBar", "add_arguments", "csv_columns", "csv_row", "run",
           "write_results"]

# The export's names for the same things (labels/export.py csv_columns), so one spreadsheet formula reads both.
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


def add_arguments(parser) -> None:
    parser.add_argument("path", help="folder of DICOM files (any layout) or a Slicer DICOM database folder")
    parser.add_argument("--out", help="also write the results to a file: .csv (table) or .json (everything)")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only: do not run the CNN")
    parser.add_argument("--no-forest", action="store_true", help="pixels only: do not run the metadata forest")
    parser.add_argument("--gradcam", metavar="DIR",
                        help="also write each series' Grad-CAM for its predicted sequence into DIR: NRRD on the "
                             "series' voxel grid (LPS) and a PNG of the sampled slices; needs the CNN; "
                             "classifies every series again (the maps need the pixels)")
    add_store_argument(parser)
    parser.add_argument("--force", action="store_true",
                        help="classify every series again, even those the store holds unchanged predictions for")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="classify in N local worker processes (whole studies per task); results and their "
                             "order are the same as in one process")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="classify on a running dask.distributed scheduler (e.g. tcp://host:8786; "
                             'pip install "seriesclassifier[dask]"); workers must see PATH and the models')
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads per process (default: torch's own; with --workers the cores shared "
                             "out; Dask workers: 1). The CNN's probabilities are bit-identical between runs with "
                             "the same count (they differ ~1e-9 otherwise)")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")


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
    from ..labels.safe_text import csv_cell

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


def _open_store(args) -> LabelStore | None:
    """The store the predictions go to; None (with a warning) where it cannot be written, e.g. a read-only disc."""
    try:
        return open_store(args)
    except (StoreError, OSError) as exc:
        print(f"warning: predictions not recorded in a label store ({exc}); give --store FILE to keep them",
              file=sys.stderr)
        return None


def _load_models(args, driver_only: bool):
    """The bundle, or an exit code. With workers the models run in them: here the CNN is only looked for."""
    from ..models.bundle import CNN_WEIGHTS, load_bundle

    try:
        bundle = load_bundle(args.models, load_forest=not args.no_forest, load_cnn=not (args.no_cnn or driver_only))
    except FileNotFoundError as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 2
    for problem in bundle.problems:
        print(f"warning: {problem}", file=sys.stderr)
    has_cnn = (bundle.path / CNN_WEIGHTS).is_file() if driver_only else bundle.cnn is not None
    if args.gradcam and (args.no_cnn or not has_cnn):
        print("--gradcam needs the CNN, and no CNN is loaded (--no-cnn, or none in the models folder)",
              file=sys.stderr)
        return 2
    return bundle


def _model_key(bundle, choice: ModelChoice, driver_only: bool) -> str:
    """The store's model key of what runs now (as classify_refs gives it); workers load the CNN, not the driver."""
    from ..models.bundle import CNN_WEIGHTS

    names = [n for n in bundle.model_names if (n == "forest" and choice.use_forest) or (n == "cnn" and choice.use_cnn)]
    if driver_only and choice.use_cnn and bundle.path is not None and (bundle.path / CNN_WEIGHTS).is_file():
        names.append("cnn")
    return model_key(bundle.version, names)


class _Recorder:
    """Records fresh predictions in the store as they stream past, a batch at a time (a stopped run keeps
    what was recorded; one transaction per batch, not per series)."""

    BATCH = 256
    SECONDS = 2.0

    def __init__(self, store: LabelStore | None, todo: list[SeriesRef], key: str):
        self.store, self.key = store, key
        self.refs = {r.series_uid: r for r in todo}
        self.pending: list[SeriesPrediction] = []
        self.since = time.monotonic()

    def add(self, p: SeriesPrediction) -> None:
        if self.store is None:
            return
        self.pending.append(p)
        if len(self.pending) >= self.BATCH or time.monotonic() - self.since > self.SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.store is None or not self.pending:
            return
        keys = {p.series_uid: (self.refs[p.series_uid].content_key(), self.key) for p in self.pending
                if p.series_uid in self.refs}
        self.store.record_predictions(self.pending, keys)
        self.pending, self.since = [], time.monotonic()


def _in_source_order(refs: list[SeriesRef], todo: list[SeriesRef], fresh: Iterator[SeriesPrediction],
                     store: LabelStore | None, recorder: _Recorder) -> Iterator[SeriesPrediction]:
    """Every series' prediction in the order of ``refs``: fresh ones as they stream (recorded in the store),
    the others from the store (``todo`` keeps the order of ``refs``, so one pass merges them)."""
    wanted = {r.series_uid for r in todo}
    known = store.predictions(r.series_uid for r in refs if r.series_uid not in wanted) if store is not None else {}
    nxt = next(fresh, None)
    for ref in refs:
        if ref.series_uid in wanted:
            if nxt is not None and nxt.series_uid == ref.series_uid:
                p, nxt = nxt, next(fresh, None)
                recorder.add(p)
                yield p
                continue
            recorder.flush()
            old = store.predictions([ref.series_uid]).get(ref.series_uid) if store is not None else None
            if old is not None:  # not classified now (as up_to_date: the stored one, if any)
                yield old
            continue
        if ref.series_uid in known:
            yield known[ref.series_uid]
    recorder.flush()


class _Tally:
    """Counts what streams past, for the summary line."""

    def __init__(self, predictions: Iterable[SeriesPrediction]):
        self.predictions, self.n, self.skipped, self.review, self.unknown = predictions, 0, 0, 0, 0

    def __iter__(self):
        for p in self.predictions:
            self.n += 1
            self.skipped += bool(p.error)
            self.review += p.outcome == REVIEW
            self.unknown += p.outcome == UNKNOWN
            yield p


def run(args) -> int:
    from ..run.stream import classify_stream

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in {".csv", ".json"}:
        print(f"--out {out}: use a .csv or .json file name", file=sys.stderr)
        return 2
    if args.no_cnn and args.no_forest:
        print("--no-cnn and --no-forest together leave no model to run", file=sys.stderr)
        return 2
    if args.workers < 0 or (args.threads is not None and args.threads < 1):
        print("--workers: 0 or more processes; --threads: 1 or more", file=sys.stderr)
        return 2
    if args.gradcam and args.no_cnn:
        print("--gradcam needs the CNN, and no CNN is loaded (--no-cnn, or none in the models folder)",
              file=sys.stderr)
        return 2
    if out is not None:
        from ..labels.export import check_writable

        check_writable(out)  # before the run's work, not after it (OutputError: a message from cli.main)
    try:
        refs = series_under(args.path)
        store = _open_store(args)
    except (FileNotFoundError, StoreError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        choice = ModelChoice(args.models, use_forest=not args.no_forest, use_cnn=not args.no_cnn)
        # --gradcam classifies every series again: the maps need the pixels
        force = args.force or bool(args.gradcam) or store is None
        try:
            todo = list(refs) if force else stale(store, refs, choice)
        except StoreError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        fresh: Iterator[SeriesPrediction] = iter(())
        key = ""
        if todo:  # nothing to classify: no model is loaded (a run with nothing new costs the imports only)
            driver_only = bool(args.workers or args.scheduler)
            bundle = _load_models(args, driver_only=driver_only)
            if isinstance(bundle, int):
                return bundle
            key = _model_key(bundle, choice, driver_only)
            if store is not None and not args.quiet:
                reused = len(refs) - len(todo)
                print(f"classifying {len(todo)} series" + (f" ({reused} unchanged, from the store)" if reused else ""),
                      file=sys.stderr)
            fresh = classify_stream(
                refs, bundle, use_forest=not args.no_forest, use_cnn=not args.no_cnn, workers=args.workers,
                scheduler=args.scheduler, threads=args.threads, gradcam_dir=args.gradcam,
                progress=ProgressBar(not args.quiet), todo=todo)
        elif args.models and not Path(args.models).is_dir():
            print(f"models: {args.models}: models folder not found", file=sys.stderr)
            return 2
        recorder = _Recorder(store, todo, key)
        predictions = _Tally(_in_source_order(refs, todo, fresh, store, recorder))
        try:
            if out is not None:
                write_results(predictions, out)
            else:
                for _ in predictions:
                    pass
        except OutputError:
            with contextlib.suppress(StoreError):
                recorder.flush()  # what was classified before the disk filled is kept
            raise  # cli.main says which file and why
        except StoreError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except (OSError, RuntimeError) as exc:  # a scheduler out of reach, dask not installed, a worker lost
            with contextlib.suppress(StoreError):
                recorder.flush()  # what was classified before the stop is kept
            print(f"classification stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    finally:
        if store is not None:
            store.close()
    if not args.quiet:
        where = [str(x) for x in (out, store.path if store is not None else None) if x is not None]
        print(f"{predictions.n} series ({len(todo)} classified now, {predictions.skipped} not classified, "
              f"{predictions.review} need review, {predictions.unknown} unknown) → "
              f"{' and '.join(where) or 'nowhere (no store, no --out)'}", file=sys.stderr)
    return 0
