"""Classify once: every command gets its predictions from the label store and classifies only what is missing.

A stored prediction is reused while the series' files are unchanged (``SeriesRef.content_key``) and, when
the caller names the models, while it was made by the same models (``model_key``: the models folder's
version and which models ran). Whatever is new or changed is classified and recorded, so the next command
finds it. Series of one study are read together, so a changed series still sees its siblings (the forest's
study context) while only it is predicted again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..labels.store import LabelStore, StoreError
from ..prediction import SeriesPrediction
from ..run.incremental import model_key
from ..series import SeriesRef


@dataclass
class ModelChoice:
    """Which models a command runs: a models folder (None: the bundled one) and which of its models."""

    models: str | None = None
    use_forest: bool = True
    use_cnn: bool = True
    strict: bool = True  # reuse only predictions of these very models; False: any models, if the files are unchanged


def expected_model_key(choice: ModelChoice) -> str:
    """The key predictions made now would get, read from the models folder without loading any model."""
    from ..models.bundle import CNN_WEIGHTS, bundle_version
    from ..models.forest import FOREST_FILE
    from ..models.forest_arrays import ARRAYS_FILE
    from ..resources import default_models_dir

    folder = Path(choice.models) if choice.models else default_models_dir()
    names = []
    if choice.use_forest and ((folder / ARRAYS_FILE).is_file() or (folder / FOREST_FILE).is_file()):
        names.append("forest")
    if choice.use_cnn and (folder / CNN_WEIGHTS).is_file():
        names.append("cnn")
    return model_key(bundle_version(folder), names)


def stale(store: LabelStore, refs: Sequence[SeriesRef], choice: ModelChoice) -> list[SeriesRef]:
    """The series whose stored prediction is missing, made from other files, or (strict) by other models."""
    stored = store.prediction_keys()
    wanted = expected_model_key(choice) if choice.strict else None
    out = []
    for ref in refs:
        if ref.series_uid not in stored:
            out.append(ref)
            continue
        content, models = stored[ref.series_uid]
        if choice.strict:
            if content != ref.content_key() or models != wanted:
                out.append(ref)
        elif content is not None and content != ref.content_key():
            out.append(ref)  # unknown content (recorded by Slicer, or before keys existed): kept as it is
    return out


class ProgressBar:
    """Count, rate and time left on one line of stderr; only on a terminal (quiet in pipes, logs and CI)."""

    def __init__(self, enabled: bool = True, what: str = "series", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.what = what
        self.start = time.monotonic()

    def __call__(self, done: int, total: int, series_uid: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        width = 30
        filled = int(width * done / max(total, 1))
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.what} "
                          f"({rate:.1f}/s{left})  ")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def classify_refs(
    todo: Sequence[SeriesRef],
    refs: Sequence[SeriesRef],
    choice: ModelChoice,
    *,
    progress=None,
    on_result=None,
    bundle=None,
) -> tuple[list[SeriesPrediction], dict[str, tuple[str, str]]]:
    """Predictions for ``todo`` and their store keys; the other series of their studies are read for context.

    ``bundle``: the models of ``choice`` already loaded (else loaded here).
    """
    from ..models.bundle import load_bundle
    from ..run.pipeline import predict_all, read_all_series

    if bundle is None:
        bundle = load_bundle(choice.models, load_forest=choice.use_forest, load_cnn=choice.use_cnn)
        for problem in bundle.problems:
            print(f"warning: {problem}", file=sys.stderr)
    wanted = {r.series_uid for r in todo}
    studies = {r.study_uid for r in todo}
    context = [r for r in refs if r.series_uid in wanted or (r.study_uid in studies and r.study_uid)]
    series = [s for s in read_all_series(context) if s.series_uid in wanted]
    names = [n for n in bundle.model_names if (n == "forest" and choice.use_forest) or (n == "cnn" and choice.use_cnn)]
    key = model_key(bundle.version, names)
    content = {r.series_uid: r.content_key() for r in todo}
    predictions = []
    for s, p in predict_all(series, bundle, use_forest=choice.use_forest, use_cnn=choice.use_cnn,
                            progress=progress):
        if on_result is not None:
            on_result(s, p)
        predictions.append(p)
    return predictions, {p.series_uid: (content[p.series_uid], key) for p in predictions}


def up_to_date(
    store: LabelStore,
    refs: Sequence[SeriesRef],
    choice: ModelChoice,
    *,
    force: bool = False,
    quiet: bool = False,
    on_result=None,
    err: TextIO | None = None,
    bundle=None,
) -> tuple[list[SeriesPrediction], int]:
    """Predictions for every series of ``refs`` (in their order) and how many were classified now.

    Reused from the store where still valid; the rest classified, recorded in the store, then returned.
    ``bundle``: the models of ``choice`` if the caller has them loaded already.
    """
    err = err or sys.stderr
    todo = list(refs) if force else stale(store, refs, choice)
    fresh: dict[str, SeriesPrediction] = {}
    if todo:
        if not quiet:
            reused = len(refs) - len(todo)
            print(f"classifying {len(todo)} series" + (f" ({reused} unchanged, from the store)" if reused else ""),
                  file=err)
        try:
            predictions, keys = classify_refs(todo, refs, choice, progress=ProgressBar(not quiet),
                                              on_result=on_result, bundle=bundle)
        except FileNotFoundError as e:  # no models, or files gone meanwhile
            raise StoreError(f"cannot classify: {e}") from e
        store.record_predictions(predictions, keys)
        fresh = {p.series_uid: p for p in predictions}
    known = store.predictions(r.series_uid for r in refs if r.series_uid not in fresh)
    ordered = [fresh.get(r.series_uid) or known.get(r.series_uid) for r in refs]
    return [p for p in ordered if p is not None], len(todo)
