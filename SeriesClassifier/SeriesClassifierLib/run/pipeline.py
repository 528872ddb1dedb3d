"""The whole classification path for a folder, a database or given refs: one prediction per series.

source → header reading → models (forest, CNN; whichever the bundle has and the caller
allows) → ensemble → ``SeriesPrediction``. Predictions are yielded as each series finishes
so a UI can show them at once. A series that cannot be classified still gives a
prediction, with ``error`` saying why; the run goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..dicom.headers import read_series
from ..dicom.sources import iter_series_refs
from ..models.bundle import ModelBundle, load_bundle
from ..models.context import apply_context
from ..models.derived import LINK_KEY, referenced_owners
from ..models.ensemble import EnsembleParams, combine, voting_outputs
from ..models.features import add_study_context
from ..models.novelty import not_brain_reason
from ..prediction import ModelOutput, SeriesPrediction, TaskPrediction
from ..series import Series, SeriesRef

log = logging.getLogger(__name__)

# progress(done, total, series_uid): called after each series
Progress = Callable[[int, int, str], None]


def resolve_refs(path_or_refs: str | os.PathLike | Iterable[SeriesRef]) -> list[SeriesRef]:
    if isinstance(path_or_refs, (str, os.PathLike)):
        return list(iter_series_refs(Path(path_or_refs)))
    return list(path_or_refs)


def _base(series: Series, bundle: ModelBundle) -> SeriesPrediction:
    return SeriesPrediction(
        series_uid=series.series_uid,
        study_uid=series.study_uid,
        patient_id=series.patient_id,
        series_number=series.series_number,
        series_description=series.series_description,
        n_images=series.n_images,
        n_frames=series.n_frames,
        image_type=[str(t) for t in (series.header.get("ImageType") or [])],
        model_version=bundle.version,
    )


def has_acquisition_parameters(series: Series) -> bool:
    return any(series.header.get(k) is not None for k in ("RepetitionTime", "EchoTime"))


# What the forest can still read when TR/TE are gone (a derived map keeps its ImageType, for one).
_HEADER_EVIDENCE = ("RepetitionTime", "EchoTime", "ImageType", "ScanningSequence", "SequenceName",
                    "PulseSequenceName", "GEPulseSequenceName")


_GENERIC_IMAGE_TYPE = {"ORIGINAL", "PRIMARY", "M", "ND", "NONE", "OTHER", ""}


def has_header_evidence(series: Series) -> bool:
    """Anything beyond identity and pixels that the forest's features could use."""
    for key in _HEADER_EVIDENCE:
        value = series.header.get(key)
        if key == "ImageType" and value:
            tokens = value if isinstance(value, (list, tuple)) else str(value).split("\\")
            if {str(t).strip().upper() for t in tokens} <= _GENERIC_IMAGE_TYPE:
                continue
        if value:
            return True
    return False


def predict_series(
    series: Series, bundle: ModelBundle, *, use_forest: bool = True, use_cnn: bool = True
) -> SeriesPrediction:
    """Classify one read series with the bundle's models; never raises for one series."""
    if series.skipped:
        prediction = _base(series, bundle)
        prediction.error = f"skipped: {series.skip_reason}"
        prediction.reasons = list(series.warnings)
        return prediction
    models = []
    if use_forest and bundle.forest is not None:
        models.append(("forest", bundle.forest))
    if use_cnn and bundle.cnn is not None:
        models.append(("cnn", bundle.cnn))
    if not models:
        prediction = _base(series, bundle)
        prediction.error = "no model to run (none in the bundle, or all disabled)"
        return prediction
    outputs: dict[str, ModelOutput] = {}
    failures: list[str] = []
    for name, model in models:
        try:
            outputs[name] = model.predict(series)
        except Exception as exc:  # noqa: BLE001 - one model failing leaves the other
            log.exception("%s failed on series %s", name, series.series_uid)
            failures.append(f"{name} failed: {type(exc).__name__}: {exc}")
    return decide(series, outputs, bundle, failures)


def _weigh_the_header(series: Series, outputs: dict[str, ModelOutput]
                      ) -> tuple[dict[str, ModelOutput], list[str], bool]:
    """(voters, review reasons, blind): a forest with little or nothing to read is flagged or left out.

    Trees still vote on an empty header, and confidently: never unreviewed, and with nothing at all to
    read (stripped headers) the CNN answers alone when it can; ``blind`` when nothing is left at all.
    """
    voters = dict(outputs)
    if "forest" not in outputs or has_acquisition_parameters(series):
        return voters, [], False
    if has_header_evidence(series):
        return voters, ["header has no MR acquisition parameters (TR/TE): the forest's answer rests on "
                        "ImageType and names only"], False
    if len(outputs) > 1:
        del voters["forest"]
        return voters, ["header stripped (no TR/TE, ImageType or sequence name): forest left out, CNN alone"], False
    return voters, ["header has no MR acquisition parameters (TR/TE): the forest's answer is a guess"], True


def _unfamiliar(voters: dict[str, ModelOutput], params: EnsembleParams
                ) -> tuple[dict[str, ModelOutput], list[str], bool]:
    """(voters, notes, guess): who votes, what the models say is unlike their training, and ``guess`` when
    every voter says so.

    The bundle leaves an unfamiliar CNN out of the vote beside the forest (``unfamiliar_votes``): on the real
    development set, with the physics rules in place, that gives more right answers, fewer reviews and
    fewer wrong answers let through than keeping its dissent (docs/REAL_DATA.md).
    """
    kept = voting_outputs(voters, params)
    notes = [f"{name}: {o.unfamiliar}" + ("" if name in kept else "; left out of the vote")
             for name, o in voters.items() if o.unfamiliar]
    return kept, notes, bool(voters) and len(notes) == len(voters)


def decide(
    series: Series, outputs: dict[str, ModelOutput], bundle: ModelBundle, failures: list[str] | None = None
) -> SeriesPrediction:
    """The prediction from what the models said: ensemble, study context, and every reason for review.

    Separate from running the models so an evaluation can decide again from stored model outputs.
    """
    prediction = _base(series, bundle)
    voters, review, blind = _weigh_the_header(series, outputs)
    review = list(failures or []) + list(series.conflicts) + review  # contradicting files: never unreviewed
    voters, unfamiliar, guess = _unfamiliar(voters, bundle.ensemble)
    pixel_facts = {k: v for o in outputs.values() for k, v in o.facts.items()}  # from every model, voting or not
    combined = combine(voters, bundle.ensemble, adjust=lambda pooled: apply_context(pooled, series, pixel_facts))
    sequence = combined.sequence
    review += [f"{name}: {note}" for name, o in voters.items() for note in o.novelty]
    not_brain = not_brain_reason(series)
    if not_brain:
        review.append(not_brain)
    prediction.sequence = sequence
    prediction.orientation = combined.orientation
    prediction.attributes = combined.attributes
    prediction.unknown = unknown_reason(sequence, bundle.ensemble.unknown_threshold, not_brain, blind, guess)
    prediction.needs_review = combined.needs_review or bool(review) or prediction.unknown is not None
    prediction.reasons = combined.reasons + review + unfamiliar + series.warnings
    prediction.models = outputs
    link = series.header.get(LINK_KEY) or {}
    prediction.source_series_uid = link.get("series_uid", "")
    prediction.source_series_number = link.get("series_number")
    cnn_out = outputs.get("cnn")
    prediction.slice_profile = getattr(cnn_out, "slice_profile", None)
    if sequence is None:
        prediction.error = "; ".join(review + [o.reason for o in outputs.values() if o.reason]) or "no prediction"
    return prediction


def unknown_reason(sequence: TaskPrediction | None, threshold: float, not_brain: str | None,
                   blind: bool, unfamiliar: bool = False) -> str | None:
    """Why the models cannot tell what a series is, or None when their answer means something.

    The best guess stays in the prediction for the reviewer; an export or a count of what a study
    holds must not take it for an answer.
    """
    if sequence is None:
        return None  # a failure, not an unknown
    if not_brain:
        return f"not brain MR ({not_brain})"
    if blind:
        return "nothing to read: no acquisition parameters, ImageType or sequence name, and no image"
    if unfamiliar:
        return "the only model that answered has not seen anything like this series: its answer is a guess"
    if sequence.probability < threshold:
        return (f"the models cannot tell: best guess {sequence.label} at {sequence.probability:.2f} "
                f"(answers below {threshold:.2f} are right too rarely to count)")
    return None


def classify(
    path_or_refs: str | os.PathLike | Iterable[SeriesRef],
    models: ModelBundle | None = None,
    *,
    use_forest: bool = True,
    use_cnn: bool = True,
    progress: Progress | None = None,
    on_result: Callable[[Series, SeriesPrediction], None] | None = None,
) -> Iterator[SeriesPrediction]:
    """Classify every series of a folder / Slicer database / list of refs, yielding as each finishes.

    ``on_result(series, prediction)`` sees each series with its prediction, for callers that need
    the headers or pixels again (Grad-CAM writers) without reading the source twice.
    """
    bundle = models if models is not None else load_bundle(load_cnn=use_cnn)
    all_series = read_all_series(resolve_refs(path_or_refs))
    for series, prediction in predict_all(all_series, bundle, use_forest=use_forest, use_cnn=use_cnn,
                                          progress=progress):
        if on_result is not None:
            on_result(series, prediction)
        yield prediction


def predict_all(
    series: Sequence[Series],
    bundle: ModelBundle,
    *,
    use_forest: bool = True,
    use_cnn: bool = True,
    progress: Progress | None = None,
) -> Iterator[tuple[Series, SeriesPrediction]]:
    """The predict loop over series already read (``read_all_series``): (series, prediction) as each finishes.

    Every caller that classifies several series goes through here (``classify``, evaluation, training's
    held-out and site figures); the worker keeps its own loop for cancellation and per-series events.
    """
    for done, s in enumerate(series, start=1):
        yield s, predict_series(s, bundle, use_forest=use_forest, use_cnn=use_cnn)
        if progress is not None:
            progress(done, len(series), s.series_uid)


def read_all_series(refs: Iterable[SeriesRef]) -> list[Series]:
    """Headers of every series, then each series' study context (what its siblings say).

    Header reading is cheap next to the models, so reading all of it before the first
    prediction costs little and lets the forest see the study (pre/post order, agents).
    A caller that classifies series one by one can still use ``read_series`` alone.
    """
    refs = list(refs)
    series = [read_series(ref) for ref in refs]
    add_study_context(series, referenced_owners(refs, series))
    return series
