"""Every exception the engine raises on purpose, in one place (as pydicom's ``errors``).

Catch ``SeriesClassifierError`` for any of them. Each keeps the built-in base it had before
(``ValueError``, ``RuntimeError``), so older ``except`` clauses still match.
"""

from __future__ import annotations


class SeriesClassifierError(Exception):
    """Base of the engine's own errors."""


class NotDicomError(SeriesClassifierError, ValueError):
    """The file is not a DICOM file (or nothing usable could be read from it)."""


class BudgetError(SeriesClassifierError, ValueError):
    """A file declares more than it holds or than the engine will allocate (``dicom/budget.py``)."""


class BundleError(SeriesClassifierError, ValueError):
    """A model bundle that must not be used: checksum differs, or contents out of range (NaN weights, …)."""


class SliceReadError(SeriesClassifierError):
    """The series has no pixels the CNN can use; the message says why."""


class StoreError(SeriesClassifierError, RuntimeError):
    """The store file cannot be used (newer schema, not a store, unwritable)."""


class DicomDatabaseError(SeriesClassifierError, ValueError):
    """A Slicer DICOM database (ctkDICOM.sql) that cannot be read: corrupt, locked, truncated, unknown schema."""


class OutputError(SeriesClassifierError, OSError):
    """An output file cannot be written (bad path, read-only folder, full disk); nothing partial is left."""


class TrainingError(SeriesClassifierError, ValueError):
    """Training cannot start: unusable labels, or no labelled series to learn from."""


class MissingDependencyError(SeriesClassifierError, ImportError):
    """An optional part needs packages that are not installed; the message says what to install."""


class Cancelled(BaseException):
    """SIGTERM/SIGINT arrived at the worker: stop after telling the module.

    A BaseException, like KeyboardInterrupt, so the engine's per-series ``except Exception`` guards
    (which keep one bad series from stopping the rest) do not swallow it.
    """


__all__ = ["BudgetError", "BundleError", "Cancelled", "DicomDatabaseError", "MissingDependencyError", "NotDicomError",
           "OutputError", "SeriesClassifierError", "SliceReadError", "StoreError", "TrainingError"]
