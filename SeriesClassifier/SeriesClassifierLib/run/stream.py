"""Classifying an archive as a stream: study by study, in one process, local processes or on Dask.

``pipeline.classify`` reads every header before the first prediction; over an archive that holds every
series in memory at once. Here the series are cut into partitions of whole studies (a series' study
context needs its siblings, so a study is never split) and each partition is read, predicted and
dropped, so memory follows the partition, not the archive. Predictions come out in the source's
order whatever ran them, and are the same, bit for bit, as ``pipeline.classify`` gives (with the same
number of torch threads): the same functions run on the same series with the same siblings. (One
departure: a series its source lists without a study UID, whose header has one, meets its header-study
siblings only if they too were listed without one; folder sources always list the header's UID.)

The partitions run in this process (``workers=0``), in local worker processes
(``workers=N``; the standard library's process pool, no extra dependency) or on a running
dask.distributed scheduler (``scheduler="tcp://host:8786"``, ``pip install "seriesclassifier[dask]"``;
every worker needs this package and sees the files under the same paths). A worker loads the models
once, on its first partition, and keeps them.

A source with no series loads no model at all: an empty run costs the imports only.

``todo`` classifies only some of the series (``classify``'s store flow: what is new or changed); the
other series of their studies are read for the study context, not predicted, as
``commands/_predictions.py`` ``classify_refs`` does.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from ..models.bundle import ModelBundle, load_bundle
from ..prediction import SeriesPrediction
from ..series import Series, SeriesRef
from .pipeline import Progress, predict_all, read_all_series, resolve_refs

# (index among the series to predict, ref); index None: read for its study's context only, not predicted.
Indexed = list[tuple[Optional[int], SeriesRef]]  # Optional: Slicer 5.8 runs Python 3.9
# A partition's result: (index in the source, prediction) per series.
Results = list[tuple[int, SeriesPrediction]]
OnResult = Callable[[Series, SeriesPrediction], None]

# Whole studies are joined into one partition until it holds this many series: fewer, larger tasks
# for archives of small studies; one study of a dozen series is already a partition of its own.
MIN_PARTITION_SERIES = 4


def study_partitions(refs: Iterable[SeriesRef], min_series: int = MIN_PARTITION_SERIES) -> list[Indexed]:
    """(index, ref) lists of whole studies, in the order each study first appears.

    Refs without a study UID go together into one study, as ``add_study_context`` would see them.
    """
    return _partitions(list(enumerate(refs)), min_series)


def _partitions(items: Indexed, min_series: int = MIN_PARTITION_SERIES) -> list[Indexed]:
    studies: dict[str, Indexed] = {}
    for i, ref in items:
        studies.setdefault(ref.study_uid or "", []).append((i, ref))
    partitions: list[Indexed] = []
    current: Indexed = []
    for members in studies.values():
        current.extend(members)
        if len(current) >= min_series:
            partitions.append(current)
            current = []
    if current:
        partitions.append(current)
    return partitions


class _PartitionForest:
    """The forest's outputs for a whole partition from one call, handed back series by series.

    The trees then walk every series of the partition in one pass of numpy operations instead of one pass
    per series (headers only, most of the time per series went there). Rows are independent all the way
    (features, trees, temperature), so each output is the one ``predict(series)`` alone gives.
    """

    def __init__(self, forest: Any, series: list[Series]):
        self.forest = forest
        todo = [s for s in series if not s.skipped]
        try:
            outputs = forest.predict_many(todo)
        except Exception:  # noqa: BLE001 - one odd series: each is predicted alone, failing alone, as before
            outputs = []
        self.outputs = {id(s): o for s, o in zip(todo, outputs)}

    def predict(self, series: Series) -> Any:
        output = self.outputs.pop(id(series), None)
        return output if output is not None else self.forest.predict(series)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.forest, name)


def classify_partition(part: Indexed, bundle: ModelBundle, *, use_forest: bool = True, use_cnn: bool = True,
                       on_result: OnResult | None = None) -> Results:
    """Read and classify one partition's series (headers, study context, models), in its order.

    Series indexed None are read for their study's context only, not predicted."""
    read = read_all_series([ref for _, ref in part])
    picked = [(index, s) for (index, _), s in zip(part, read) if index is not None]
    series = [s for _, s in picked]
    if use_forest and bundle.forest is not None:
        bundle = replace(bundle, forest=_PartitionForest(bundle.forest, series))
    out = []
    for (index, _), (s, prediction) in zip(picked, predict_all(series, bundle, use_forest=use_forest,
                                                               use_cnn=use_cnn)):
        if on_result is not None:
            on_result(s, prediction)
        out.append((index, prediction))
    return out


@dataclass(frozen=True)
class GradcamSelection:
    """Which series get a Grad-CAM: those named (SeriesInstanceUID or SeriesNumber) or whose outcome is one of
    ``outcomes`` (``review``, ``unknown``, ``classified``); everything when both are empty. Plain data: it goes
    to worker processes with the task."""

    series: frozenset = frozenset()
    outcomes: frozenset = frozenset()

    @property
    def everything(self) -> bool:
        return not self.series and not self.outcomes

    def names(self, series_uid: str, series_number: int | None) -> bool:
        """The series is named by its UID or its number."""
        return series_uid in self.series or (series_number is not None and str(series_number) in self.series)

    def wants(self, prediction: SeriesPrediction) -> bool:
        return (self.everything or self.names(prediction.series_uid, prediction.series_number)
                or prediction.outcome in self.outcomes)


def gradcam_writer(cnn: Any, out_dir: Path, selection: GradcamSelection | None = None) -> OnResult:
    """An ``on_result`` hook writing the Grad-CAM of its predicted sequence for each selected series (``selection``;
    default: every series); a failure costs that map only."""

    def write(series: Series, prediction: SeriesPrediction) -> None:
        if prediction.error or series.skipped or "cnn" not in prediction.models:
            return
        if selection is not None and not selection.wants(prediction):
            return
        from ..models.gradcam import gradcam_series, write_gradcam  # torch: only when maps are asked for

        target = prediction.sequence.label if prediction.sequence else None
        try:
            write_gradcam(gradcam_series(cnn, series, "sequence", target), series, out_dir)
        except Exception as exc:  # noqa: BLE001 - odd pixels must not stop the other series
            print(f"warning: no Grad-CAM for series {series.series_uid}: {exc}", file=sys.stderr)

    return write


# ---------------------------------------------------------------------------------------------- worker side

_WORKER_BUNDLES: dict[tuple[str | None, bool, bool], ModelBundle] = {}


def set_threads(bundle: ModelBundle, threads: int | None) -> None:
    """torch's threads in this process, when a CNN is loaded and a count is asked for.

    The count is part of the result: float32 sums split over another number of threads differ in the
    last bits (CNN probabilities ~1e-9 apart), so runs to be compared use the same count.
    """
    if threads and bundle.cnn is not None:
        import torch  # already imported with the CNN

        torch.set_num_threads(int(threads))


def _worker_bundle(models_dir: str | None, use_forest: bool, use_cnn: bool, threads: int | None) -> ModelBundle:
    """The models of this worker process, loaded on its first partition and kept for the next ones."""
    key = (models_dir, use_forest, use_cnn)
    if key not in _WORKER_BUNDLES:
        _WORKER_BUNDLES[key] = load_bundle(models_dir, load_forest=use_forest, load_cnn=use_cnn)
        set_threads(_WORKER_BUNDLES[key], threads)
    return _WORKER_BUNDLES[key]


def run_partition(part: Indexed, models_dir: str | None, use_forest: bool, use_cnn: bool,
                  gradcam_dir: str | None = None, gradcam_selection: GradcamSelection | None = None,
                  threads: int | None = None) -> Results:
    """The task a worker process runs: plain arguments only, so it pickles to any executor."""
    bundle = _worker_bundle(models_dir, use_forest, use_cnn, threads)
    on_result = (gradcam_writer(bundle.cnn, Path(gradcam_dir), gradcam_selection)
                 if gradcam_dir and bundle.cnn is not None else None)
    return classify_partition(part, bundle, use_forest=use_forest, use_cnn=use_cnn, on_result=on_result)


# ---------------------------------------------------------------------------------------------- driver side


def in_source_order(results: Iterable[Results]) -> Iterator[SeriesPrediction]:
    """Predictions by their index in the source, whatever order the partitions finish in.

    Only what arrives ahead of a missing index is held; with studies listed together (folders walked in
    order, databases by patient and study) that is at most the partitions in flight.
    """
    waiting: dict[int, SeriesPrediction] = {}
    expected = 0
    for chunk in results:
        waiting.update(chunk)
        while expected in waiting:
            yield waiting.pop(expected)
            expected += 1
    for index in sorted(waiting):  # only when indices are not contiguous (refs given by a caller)
        yield waiting.pop(index)


def _in_flight(submit: Callable[[Indexed], Any], partitions: list[Indexed], window: int) -> Iterator[Results]:
    """Results of ``submit(part).result()`` in submission order, with at most ``window`` partitions running.

    The window bounds memory (results waiting to be written) whatever the archive's size; works with
    concurrent.futures and dask.distributed futures alike.
    """
    pending: deque = deque()
    todo = iter(partitions)
    for part in todo:
        pending.append(submit(part))
        if len(pending) >= window:
            break
    while pending:
        done = pending.popleft().result()
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(submit(nxt))
        yield done


def _local_results(partitions: list[Indexed], bundle: ModelBundle | Callable[[], ModelBundle], use_forest: bool,
                   use_cnn: bool, gradcam_dir: str | None, gradcam_selection: GradcamSelection | None,
                   threads: int | None) -> Iterator[Results]:
    loaded: ModelBundle | None = None
    for part in partitions:
        if loaded is None:  # the models are loaded when the first series needs them
            loaded = bundle if isinstance(bundle, ModelBundle) else bundle()
            set_threads(loaded, threads)
        on_result = (gradcam_writer(loaded.cnn, Path(gradcam_dir), gradcam_selection)
                     if gradcam_dir and loaded.cnn is not None else None)
        yield classify_partition(part, loaded, use_forest=use_forest, use_cnn=use_cnn, on_result=on_result)


def _share_cores(threads: int) -> None:
    """Worker initialiser: N workers × one thread per core each would fight over the cores (and on a
    loaded machine a multi-threaded torch is many times slower). Set before torch is imported."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def _process_results(partitions: list[Indexed], workers: int, task_args: tuple) -> Iterator[Results]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = task_args[-1] or default_threads(workers)
    task_args = task_args[:-1] + (threads,)
    # spawn: a fresh interpreter per worker; forking a process that may hold torch's threads is unsafe.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_share_cores, initargs=(threads,)) as pool:
        yield from _in_flight(lambda part: pool.submit(run_partition, part, *task_args), partitions, 2 * workers)


def _dask_results(partitions: list[Indexed], scheduler: Any, task_args: tuple) -> Iterator[Results]:
    try:
        from distributed import Client
    except ImportError as exc:
        raise RuntimeError('--scheduler needs dask.distributed: pip install "seriesclassifier[dask]"') from exc
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
        yield from _in_flight(lambda part: client.submit(run_partition, part, *task_args, pure=False),
                              partitions, 2 * slots)
    finally:
        if client is not scheduler:
            client.close()


def default_threads(workers: int) -> int:
    """torch threads per local worker process: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def classify_stream(
    path_or_refs: str | os.PathLike | Iterable[SeriesRef],
    models: ModelBundle | str | os.PathLike | None = None,
    *,
    use_forest: bool = True,
    use_cnn: bool = True,
    workers: int = 0,
    scheduler: Any = None,
    threads: int | None = None,
    gradcam_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    todo: Iterable[SeriesRef] | None = None,
    gradcam_selection: GradcamSelection | None = None,
) -> Iterator[SeriesPrediction]:
    """Every series' prediction, in the source's order, as the partitions finish.

    ``models``: a loaded bundle, or a models folder (None: the bundled models), loaded only when a
    series is found. ``workers`` > 0 runs that many local processes; ``scheduler`` (an address or a
    ``distributed.Client``) runs on Dask. Both load the models from the folder in each worker.
    ``threads``: torch threads per process (default: torch's own in this process, the cores shared out
    over local workers, what Dask sets — one — on its workers); give the same count to compare runs bit
    for bit. ``todo``: only these series (of the source) are predicted, in their order; the other series of
    their studies are read for the study context. ``gradcam_selection``: which series get a Grad-CAM in
    ``gradcam_dir`` (default: all).
    """
    refs = resolve_refs(path_or_refs)
    if todo is None:
        partitions = study_partitions(refs)
    else:
        wanted = {r.series_uid: i for i, r in enumerate(todo)}
        studies = {r.study_uid for r in refs if r.series_uid in wanted and r.study_uid}
        partitions = _partitions([(wanted.get(r.series_uid), r) for r in refs
                                  if r.series_uid in wanted or (r.study_uid and r.study_uid in studies)])
        refs = [r for r in refs if r.series_uid in wanted]
    gradcam = str(gradcam_dir) if gradcam_dir is not None else None
    if scheduler is not None or workers > 0:
        folder = models.path if isinstance(models, ModelBundle) else models
        if isinstance(models, ModelBundle) and folder is None:
            raise ValueError("workers load the models from a folder: this bundle has none (ModelBundle.path)")
        task_args = (str(folder) if folder is not None else None, use_forest, use_cnn, gradcam, gradcam_selection,
                     threads)
        results = (_dask_results(partitions, scheduler, task_args) if scheduler is not None
                   else _process_results(partitions, workers, task_args))
    else:
        bundle = models if isinstance(models, ModelBundle) else (
            lambda: load_bundle(models, load_forest=use_forest, load_cnn=use_cnn))
        results = _local_results(partitions, bundle, use_forest, use_cnn, gradcam, gradcam_selection, threads)
    for done, prediction in enumerate(in_source_order(results), start=1):
        if progress is not None:
            progress(done, len(refs), prediction.series_uid)
        yield prediction
