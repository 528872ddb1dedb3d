"""Stand-ins for the model bundle in the worker tests (also imported by the worker subprocesses they start)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from SeriesClassifierLib.models.ensemble import EnsembleParams
from SeriesClassifierLib.prediction import ModelOutput, TaskPrediction
from SeriesClassifierLib.vocabulary import load_vocabulary


class DescriptionForest:
    """Stands in for the forest: reads the class from the description; BROKEN raises; can be slow/noisy."""

    def __init__(self, delay: float = 0.0, noisy: bool = False):
        self.delay, self.noisy = delay, noisy

    def predict(self, series) -> ModelOutput:
        if self.noisy:
            print("a library printing to stdout")  # must not reach the event stream
        time.sleep(self.delay)
        if series.series_description == "BROKEN":
            raise RuntimeError("cannot classify this one")
        codes = load_vocabulary().sequence_codes
        probs = {c: (0.9 if c == series.series_description else 0.1 / (len(codes) - 1)) for c in codes}
        return ModelOutput("forest", sequence=TaskPrediction.from_probabilities(probs),
                           orientation=TaskPrediction("AXIAL", 1.0, {"AXIAL": 1.0}))


def stub_bundle(**forest_kwargs) -> SimpleNamespace:
    return SimpleNamespace(forest=DescriptionForest(**forest_kwargs), cnn=None, ensemble=EnsembleParams(),
                           version="stub-1", problems=[])


def idle_worker_process() -> tuple[type, list]:
    """A stand-in for the module's WorkerProcess that runs nothing: (the class, the instances made).

    The test plays the process's end itself, e.g. ``started[0].onFinished(0, False, False, "")``.
    """
    started: list = []

    class Process:
        def __init__(self, arguments, environment, onEvent, onFinished):
            self.onFinished = onFinished
            started.append(self)

        def start(self):
            pass

    return Process, started
