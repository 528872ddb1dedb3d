"""Classify once, over a store of earlier predictions: predict what is new or changed, take the rest from it.

``merge_with_store`` yields every series' prediction in the source's order: fresh ones as the stream
gives them (recorded in the store a batch at a time, so a stopped run keeps what it did), the others
as the store holds them. The store is anything with ``predictions`` and ``record_predictions``
(``labels.store.LabelStore``): this layer does not import the labels layer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from ..prediction import REVIEW, UNKNOWN, SeriesPrediction
from ..series import SeriesRef

if TYPE_CHECKING:  # the models are imported only when they run: every command imports model_key
    from ..models.bundle import ModelBundle

__all__ = ["PredictionStore", "Recorder", "Tally", "merge_with_store", "model_key", "running_model_key"]


class PredictionStore(Protocol):
    """What the merge needs of a label store."""

    def predictions(self, series_uids: Iterable[str]) -> dict[str, SeriesPrediction]: ...

    def record_predictions(self, predictions: list[SeriesPrediction],
                           keys: dict[str, tuple[str, str]]) -> None: ...


def model_key(version: str, names: Sequence[str]) -> str:
    """``forest-3+cnn-2|cnn,forest``: the models folder's version and the models that ran."""
    return f"{version}|{','.join(sorted(names))}"


def running_model_key(bundle: ModelBundle, use_forest: bool, use_cnn: bool, driver_only: bool) -> str:
    """The store's model key of what runs now (as classify_refs gives it); workers load the CNN, not the driver."""
    from ..models.bundle import CNN_WEIGHTS

    names = [n for n in bundle.model_names if (n == "forest" and use_forest) or (n == "cnn" and use_cnn)]
    if driver_only and use_cnn and bundle.path is not None and (bundle.path / CNN_WEIGHTS).is_file():
        names.append("cnn")
    return model_key(bundle.version, names)


class Recorder:
    """Records fresh predictions in the store as they stream past, a batch at a time (a stopped run keeps
    what was recorded; one transaction per batch, not per series)."""

    BATCH = 256
    SECONDS = 2.0

    def __init__(self, store: PredictionStore | None, todo: Sequence[SeriesRef], key: str):
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


def merge_with_store(refs: list[SeriesRef], todo: list[SeriesRef], fresh: Iterator[SeriesPrediction],
                     store: PredictionStore | None, recorder: Recorder) -> Iterator[SeriesPrediction]:
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


class Tally:
    """Counts what streams past, for the summary line."""

    def __init__(self, predictions: Iterable[SeriesPrediction]):
        self.predictions, self.n, self.skipped, self.review, self.unknown = predictions, 0, 0, 0, 0

    def __iter__(self) -> Iterator[SeriesPrediction]:
        for p in self.predictions:
            self.n += 1
            self.skipped += bool(p.error)
            self.review += p.outcome == REVIEW
            self.unknown += p.outcome == UNKNOWN
            yield p
