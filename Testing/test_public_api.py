"""The package's public API (``__all__``) and its one errors module."""

from __future__ import annotations

import subprocess
import sys

import pytest

import SeriesClassifierLib
from SeriesClassifierLib import errors


@pytest.mark.torch  # some public names live in the CNN modules
def test_every_public_name_resolves():
    for name in SeriesClassifierLib.__all__:
        assert getattr(SeriesClassifierLib, name) is not None, name
    assert set(SeriesClassifierLib.__all__) <= set(dir(SeriesClassifierLib))


def test_unknown_name_is_an_attribute_error():
    try:
        SeriesClassifierLib.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_imports_no_third_party_module():
    """The Slicer module imports the package at load time, before numpy/torch may be there."""
    code = ("import sys; import SeriesClassifierLib; "
            "print(','.join(sorted(m for m in ('numpy', 'torch', 'sklearn', 'pydicom') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_the_engine_raises_the_errors_modules_classes():
    from SeriesClassifierLib.dicom.slices import SliceReadError
    from SeriesClassifierLib.dicom.sources import NotDicomError
    from SeriesClassifierLib.labels.store import StoreError
    from SeriesClassifierLib.run.worker import Cancelled

    assert (NotDicomError, SliceReadError, StoreError, Cancelled) == (
        errors.NotDicomError, errors.SliceReadError, errors.StoreError, errors.Cancelled)
    for cls in (NotDicomError, SliceReadError, StoreError):
        assert issubclass(cls, errors.SeriesClassifierError)
    assert issubclass(NotDicomError, ValueError) and issubclass(StoreError, RuntimeError)
    assert not issubclass(errors.Cancelled, Exception)  # the per-series guards must not swallow it
