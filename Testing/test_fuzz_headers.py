"""Fuzzing header reading, grouping, feature extraction and the forest (issue 17: "a fuzzing harness").

Two generators, both starting from a good two-file series written by ``dicom_factory``:

- bytes: overwrite, insert or cut bytes of one file (structure damage: lengths, VRs, tags, truncation);
- values: put arbitrary text into the numeric and geometry elements the engine reads (value damage).

The property: grouping never raises, header reading never falls back to its last-resort handler ("could not
read headers"), slice listing raises nothing but SliceReadError, features are numbers, and the forest never
fails inside ``predict_series``. A crash found becomes a named test in ``test_hostile_files.py``.

Short in CI (``SERIESCLASSIFIER_FUZZ=ci``, the default: 40 fixed examples per property); on demand
``SERIESCLASSIFIER_FUZZ=long`` runs 2,000 per property
(``SERIESCLASSIFIER_FUZZ_EXAMPLES`` to change). Times are never asserted (``deadline=None``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import tempfile
from pathlib import Path

import pydicom
import pytest
from dicom_factory import write_series
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.slices import build_stack
from SeriesClassifierLib.dicom.sources import FolderSource
from SeriesClassifierLib.errors import SliceReadError
from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.pydicom_compat import save_dataset
from SeriesClassifierLib.run.pipeline import predict_series

# CI draws the same examples every run (a red CI must be reproducible, not a lottery); the long run explores
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=int(os.environ.get("SERIESCLASSIFIER_FUZZ_EXAMPLES", 2000)),
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("SERIESCLASSIFIER_FUZZ", "ci")



@functools.lru_cache(maxsize=1)
def _bundle():
    """Not a fixture: hypothesis prints a failing example's arguments, and a bundle's repr is its model card."""
    return load_bundle(load_cnn=False)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> list[Path]:
    """Two files of a good series: the first is damaged by each example, the second stays beside it."""
    folder = tmp_path_factory.mktemp("fuzz-template")
    write_series(folder, "T2 fuzz", n_slices=2, size=8)
    return sorted(folder.glob("*.dcm"))


def _check_study(folder: Path) -> None:
    """Everything downstream of a folder holding the damaged file; fails on any unexpected exception."""
    bundle = _bundle()
    for ref in FolderSource(folder):  # grouping: never raises
        series = read_series(ref)
        assert not (series.skip_reason or "").startswith("could not read headers"), series.skip_reason
        with contextlib.suppress(SliceReadError):  # no pixels is an answer; anything else is a bug
            build_stack(series.files)
        if series.skipped:
            continue
        features = bundle.forest.extractor.transform([series])
        assert all(isinstance(v, float) and (math.isfinite(v) or math.isnan(v)) for v in features.ravel())
        prediction = predict_series(series, bundle, use_cnn=False)
        assert not any(r.startswith("forest failed") for r in prediction.reasons), prediction.reasons


def _study_with(data: bytes, good: Path) -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory(prefix="fuzz-")
    folder = Path(tmp.name)
    shutil.copy(good, folder / "good.dcm")
    (folder / "fuzzed.dcm").write_bytes(data)
    return tmp


# positions are fractions of the file, so examples shrink towards the start of the header
_edit = st.tuples(st.floats(0, 1), st.sampled_from(["set", "insert", "delete"]), st.binary(min_size=1, max_size=8))


@settings(settings.get_profile(PROFILE))
@given(edits=st.lists(_edit, min_size=1, max_size=6), cut=st.none() | st.floats(0, 1))
def test_damaged_bytes_never_crash_the_header_path(good, edits, cut):
    data = bytearray(good[0].read_bytes())
    for where, kind, blob in edits:
        pos = int(where * len(data))
        if kind == "set":
            data[pos : pos + len(blob)] = blob
        elif kind == "insert":
            data[pos:pos] = blob
        else:
            del data[pos : pos + len(blob)]
    if cut is not None:
        data = data[: int(cut * len(data))]
    with _study_with(bytes(data), good[1]) as folder:
        _check_study(Path(folder))


_NUMERIC = ["PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "RepetitionTime", "EchoTime", "FlipAngle",
            "InversionTime", "EchoTrainLength", "ImageOrientationPatient", "ImagePositionPatient", "InstanceNumber",
            "NumberOfFrames", "MagneticFieldStrength", "SeriesNumber", "ImageType", "ScanningSequence"]
_text = st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=24) | st.sampled_from(
    ["nan", "inf", "-inf", "1e999", "-0", "\\\\\\", "1\\2\\3\\4\\5\\6\\7", "0\\0\\0\\0\\0\\0", "2000000000"])


@settings(settings.get_profile(PROFILE))
@given(values=st.dictionaries(st.sampled_from(_NUMERIC), _text, min_size=1, max_size=5))
def test_garbage_values_never_crash_the_header_path(good, values):
    ds = pydicom.dcmread(good[0])
    for keyword, text in values.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        vr = pydicom.datadict.dictionary_VR(keyword)
        raw = text.encode("ascii") + (b" " if len(text) % 2 else b"")
        # raw bytes, as a scanner would have written them: pydicom's own checks on assignment are bypassed
        ds[tag] = RawDataElement(Tag(tag), "LO" if vr in ("US", "SQ") else vr, len(raw), raw, 0, False, True)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        try:
            save_dataset(ds, Path(tmp) / "fuzzed.dcm")
        except Exception:  # noqa: BLE001 - pydicom would not write it: nothing to read either
            return
        shutil.copy(good[1], Path(tmp) / "good.dcm")
        _check_study(Path(tmp))
