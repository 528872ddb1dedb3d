"""``seriesclassifier classify PATH --out results.csv|results.json``: every series under a folder or Slicer database.

Argument handling only: the store flow (classify what is new or changed, the rest from the store) is
run/incremental.py, the stream run/stream.py, the results table labels/results.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError
from ..labels.results import write_results
from ..labels.store import LabelStore, StoreError
from ..prediction import SeriesPrediction
from ..series import SeriesRef
from ._predictions import ModelChoice, ProgressBar, stale
from ._store_args import add_store_argument, open_store, series_under

if TYPE_CHECKING:
    from ..run.stream import GradcamSelection

__all__ = ["ProgressBar", "add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("path", help="folder of DICOM files (any layout) or a Slicer DICOM database folder")
    parser.add_argument("--out", help="also write the results to a file: .csv (table) or .json (everything)")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only: do not run the CNN")
    parser.add_argument("--no-forest", action="store_true", help="pixels only: do not run the metadata forest")
    parser.add_argument("--gradcam", metavar="DIR",
                        help="also write each series' Grad-CAM for its predicted sequence into DIR: NRRD on the "
                             "series' voxel grid (LPS) and a PNG of the sampled slices; needs the CNN; "
                             "classifies again the series it makes maps for (the maps need the pixels)")
    parser.add_argument("--gradcam-series", action="append", default=[], metavar="UID_OR_NUMBER",
                        help="with --gradcam: maps only for this series (SeriesInstanceUID, or SeriesNumber: that "
                             "number in every study; repeat it for more)")
    parser.add_argument("--gradcam-outcome", action="append", default=[], metavar="OUTCOME",
                        choices=("review", "unknown", "classified"),
                        help="with --gradcam: maps only for series with this outcome, e.g. review (those sent to "
                             "a person); with --gradcam-series, either. Default: every series")
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


def _argument_problem(args) -> str | None:
    """What is wrong with the arguments themselves (before anything is read), or None."""
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in {".csv", ".json"}:
        return f"--out {out}: use a .csv or .json file name"
    if args.no_cnn and args.no_forest:
        return "--no-cnn and --no-forest together leave no model to run"
    if args.workers < 0 or (args.threads is not None and args.threads < 1):
        return "--workers: 0 or more processes; --threads: 1 or more"
    if args.gradcam and args.no_cnn:
        return "--gradcam needs the CNN, and no CNN is loaded (--no-cnn, or none in the models folder)"
    if (args.gradcam_series or args.gradcam_outcome) and not args.gradcam:
        return "--gradcam-series/--gradcam-outcome choose the series of --gradcam DIR: give --gradcam too"
    return None


def _with_gradcam_series(store: LabelStore, refs: list, todo: list, selection: GradcamSelection) -> list:
    """``todo`` and, in source order, the series whose map is asked for: named (by UID, or by the number its
    stored prediction has), or whose stored outcome is asked for (the map is written if the new prediction still
    has it). Series the store does not hold are in ``todo`` already."""
    again = {r.series_uid for r in todo}
    stored = store.predictions(r.series_uid for r in refs if r.series_uid not in again)
    for uid, p in stored.items():
        if selection.names(uid, p.series_number) or p.outcome in selection.outcomes:
            again.add(uid)
    return [r for r in refs if r.series_uid in again]


def _fresh(args, refs: list[SeriesRef], todo: list[SeriesRef], store: LabelStore | None,
           selection: GradcamSelection) -> tuple[Iterator[SeriesPrediction], str] | int:
    """(the stream of new predictions, their model key), or an exit code where the models cannot be loaded.

    With nothing to classify no model is loaded (a run with nothing new costs the imports only).
    """
    from ..run.incremental import running_model_key
    from ..run.stream import classify_stream

    if not todo:
        if args.models and not Path(args.models).is_dir():
            print(f"models: {args.models}: models folder not found", file=sys.stderr)
            return 2
        return iter(()), ""
    driver_only = bool(args.workers or args.scheduler)
    bundle = _load_models(args, driver_only=driver_only)
    if isinstance(bundle, int):
        return bundle
    key = running_model_key(bundle, not args.no_forest, not args.no_cnn, driver_only)
    if store is not None and not args.quiet:
        reused = len(refs) - len(todo)
        print(f"classifying {len(todo)} series" + (f" ({reused} unchanged, from the store)" if reused else ""),
              file=sys.stderr)
    fresh = classify_stream(
        refs, bundle, use_forest=not args.no_forest, use_cnn=not args.no_cnn, workers=args.workers,
        scheduler=args.scheduler, threads=args.threads, gradcam_dir=args.gradcam, gradcam_selection=selection,
        progress=ProgressBar(not args.quiet), todo=todo)
    return fresh, key


def _drain(predictions: Iterable[SeriesPrediction], out: Path | None, recorder) -> int:
    """Pull every prediction through (into ``out`` if given); an exit code. What was classified before a
    stop (a full disk, a lost worker) stays recorded in the store."""
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
    return 0


def _classify(args, refs: list[SeriesRef], store: LabelStore | None, out: Path | None) -> int:
    from ..run.incremental import Recorder, Tally, merge_with_store
    from ..run.stream import GradcamSelection

    choice = ModelChoice(args.models, use_forest=not args.no_forest, use_cnn=not args.no_cnn)
    selection = GradcamSelection(frozenset(args.gradcam_series), frozenset(args.gradcam_outcome))
    # --gradcam classifies again the series it makes maps for: the maps need the pixels
    force = args.force or (bool(args.gradcam) and selection.everything) or store is None
    try:
        todo = list(refs) if force else stale(store, refs, choice)
        if args.gradcam and not force:
            todo = _with_gradcam_series(store, refs, todo, selection)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    fresh = _fresh(args, refs, todo, store, selection)
    if isinstance(fresh, int):
        return fresh
    stream, key = fresh
    recorder = Recorder(store, todo, key)
    predictions = Tally(merge_with_store(refs, todo, stream, store, recorder))
    code = _drain(predictions, out, recorder)
    if code == 0 and not args.quiet:
        where = [str(x) for x in (out, store.path if store is not None else None) if x is not None]
        print(f"{predictions.n} series ({len(todo)} classified now, {predictions.skipped} not classified, "
              f"{predictions.review} need review, {predictions.unknown} unknown) → "
              f"{' and '.join(where) or 'nowhere (no store, no --out)'}", file=sys.stderr)
    return code


def run(args) -> int:
    problem = _argument_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
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
        return _classify(args, refs, store, out)
    finally:
        if store is not None:
            store.close()
