"""SeriesClassifier engine: identifies the sequence and orientation of brain MRI series.

Plain Python: nothing here imports slicer, qt or ctk at module level. The Slicer
module and the command line are thin faces on this package.

The package follows the pipeline, one folder per stage::

    series, prediction, vocabulary, resources, errors   the shared data types and the class contract
    dicom/      sources → series headers, sampled slices, orientation, b-values, geometry
    models/     header features, forest, CNN, aggregation, calibration, ensemble, Grad-CAM, the bundle
    run/        the read → predict loop (pipeline) and the worker process Slicer starts
    labels/     the label store, review, exports, BIDS, the HTML report
    training/   evaluation, CNN and forest training, site adaptation, model cards
    slicer/     MRML nodes for the Slicer module (imports ``slicer`` lazily)
    commands/   the ``seriesclassifier`` command line (argument handling only)
    synth/      the simulated-study generator

The names in ``__all__`` are the public API. They are imported on first use (PEP 562), so
``import SeriesClassifierLib`` stays cheap: the Slicer module imports it at load time, before
numpy or torch may be installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_PUBLIC = {
    "classify": "run.pipeline",
    "predict_series": "run.pipeline",
    "read_all_series": "run.pipeline",
    "iter_series_refs": "dicom.sources",
    "read_series": "dicom.headers",
    "sample_series": "dicom.slices",
    "load_bundle": "models.bundle",
    "ModelBundle": "models.bundle",
    "gradcam_series": "models.gradcam",
    "LabelStore": "labels.store",
    "LabelRecord": "labels.store",
    "export": "labels.export",
    "load_vocabulary": "vocabulary",
    "Vocabulary": "vocabulary",
    "Series": "series",
    "SeriesRef": "series",
    "Geometry": "series",
    "SeriesPrediction": "prediction",
    "TaskPrediction": "prediction",
    "ModelOutput": "prediction",
    "SeriesClassifierError": "errors",
    "NotDicomError": "errors",
    "SliceReadError": "errors",
    "StoreError": "errors",
    "TrainingError": "errors",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
