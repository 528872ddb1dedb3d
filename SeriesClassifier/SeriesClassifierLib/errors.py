"""Every exception the engine raises on purpose, in one place (as pydicom's ``errors``).

Catch ``SeriesClassifierError`` for any of them. Each keeps the built-in base it had before
(``ValueError``, ``RuntimeError``), so older ``except`` clauses still match.
"""

from __future__ import annotations


class SeriesClassifierError(Exception):
    """Base of the engine's own errors."""


class NotDicomError(SeriesClassifierError, ValueError):
    """The file is not a DICOM file (or nothing usable could be read from it)."""


class SliceReadError(SeriesClassifierError):
    """The series has no pixels the CNN can use; the message says why."""


class StoreError(SeriesClassifierError, RuntimeError):
    """The store file cannot be used (newer schema, not a store, unwritable)."""


class TrainingError(SeriesClassifierError, ValueError):
    """Training cannot start: unusable labels, or no labelled series to learn from."""


class MissingDependencyError(SeriesClassifierError, ImportError):
    """An optional part needs packages that are not installed; the message says what to install."""


class Cancelled(BaseException):
    """SIGTERM/SIGINT arrived at the worker: stop after telling the module.

    A BaseException, like KeyboardInterrupt, so the engine's per-series ``except Exception`` guards
    (which keep one bad series from stopping the rest) do not swallow it.
    """


__all__ = ["Cancelled", "MissingDependencyError", "NotDicomError", "SeriesClassifierError", "SliceReadError",
           "StoreError", "TrainingError"]
