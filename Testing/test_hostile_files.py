"""Hostile files (issue 17, items 2 and 3): tiny files that declare huge images, deflate bombs, files of zeros.

Each test builds its bad file in tmp_path beside a good series and checks that the bad file is left out with
a message naming it and the reason, while the good series is still read whole. Nothing here is timed: a
budget that failed would show as a hang or an out-of-memory, not as a slow pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_series
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from SeriesClassifierLib.dicom import budget
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.slices import build_stack, read_slice
from SeriesClassifierLib.dicom.sources import FolderSource, read_grouping_tags
from SeriesClassifierLib.errors import BudgetError
from SeriesClassifierLib.pydicom_compat import save_dataset


def _good(root: Path) -> tuple[str, list[Path]]:
    uid = write_series(root / "good", "T2 good", n_slices=3, size=8)
    return uid, sorted((root / "good").glob("*.dcm"))


def _variant(source: Path, target: Path, *, same_series: bool, **changes) -> Path:
    """A copy of a good file with new values (None deletes), as a new instance of the same or a new series."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if not same_series:
        ds.SeriesInstanceUID = generate_uid()
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(ds, target)
    return target


def _mosaic(source: Path, target: Path, n: int, same_series: bool) -> Path:
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if not same_series:
        ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    ds.add_new((0x0019, 0x100A), "UL", n)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(ds, target)
    return target


HOSTILE = {
    "mosaic of 2e9 images": (lambda src, dst, same: _mosaic(src, dst, 2_000_000_000, same), "mosaic of 2000000000"),
    "NumberOfFrames 2e9": (lambda src, dst, same: _variant(src, dst, same_series=same, NumberOfFrames=2_000_000_000),
                           "2000000000 frames"),
    "65535² image": (lambda src, dst, same: _variant(src, dst, same_series=same, Rows=65535, Columns=65535),
                     "65535×65535"),
    "frames the file does not hold": (lambda src, dst, same: _variant(src, dst, same_series=same, NumberOfFrames=50),
                                      "but the file has"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_file_declaring_a_huge_image_is_its_own_skipped_series(tmp_path, kind):
    uid, good_files = _good(tmp_path)
    make, why = HOSTILE[kind]
    make(good_files[0], tmp_path / "bad" / "bad.dcm", False)
    refs = {r.series_uid: r for r in FolderSource(tmp_path)}
    good = read_series(refs.pop(uid))
    assert good.skip_reason is None and good.n_images == 3
    (bad_ref,) = refs.values()
    bad_series = read_series(bad_ref)
    if kind == "frames the file does not hold":  # headers fit: the forest may read them, the pixels are refused
        assert bad_series.skip_reason is None
        with pytest.raises(Exception, match=why):
            build_stack(bad_series.files)
    else:
        assert bad_series.skipped and "bad.dcm" in bad_series.skip_reason and why in bad_series.skip_reason


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_huge_file_inside_a_good_series_is_left_out_with_a_note(tmp_path, kind):
    uid, good_files = _good(tmp_path)
    make, why = HOSTILE[kind]
    bad = make(good_files[1], tmp_path / "good" / "zz_bad.dcm", True)
    stack = build_stack(good_files + [bad])
    assert len(stack) == 3
    assert {ref.path for ref in stack.images} == set(good_files)
    assert any("zz_bad.dcm" in note and why in note for note in stack.notes), stack.notes
    for ref in stack.images:
        assert read_slice(ref).shape == (8, 8)


def test_check_pixels_refuses_before_any_decode(tmp_path):
    _, good_files = _good(tmp_path)
    bad = _variant(good_files[0], tmp_path / "huge.dcm", same_series=False, Rows=65535, Columns=65535)
    ds = pydicom.dcmread(bad, stop_before_pixels=True)
    with pytest.raises(BudgetError, match="huge.dcm"):
        budget.check_pixels(bad, ds)


def _deflated(source: Path, target: Path, pixels: int) -> Path:
    """A deflated file whose (zero) pixel data inflates to ``pixels`` × 2 bytes."""
    ds = pydicom.dcmread(source)
    side = int(np.sqrt(pixels))
    ds.Rows = ds.Columns = side
    ds.PixelData = np.zeros((side, side), np.uint16).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    save_dataset(ds, target)
    return target


def test_a_deflate_bomb_is_refused_before_pydicom_inflates_it(tmp_path, monkeypatch):
    _, good_files = _good(tmp_path)
    bomb = _deflated(good_files[0], tmp_path / "bomb.dcm", 512 * 512)  # 512 kB inflated from about 1 kB
    assert bomb.stat().st_size < 16 * 1024
    assert budget.read_dataset(bomb).Rows == 512  # within the real budget it reads
    monkeypatch.setattr(budget, "MAX_INFLATED_BYTES", 64 * 1024)
    with pytest.raises(BudgetError, match=r"bomb\.dcm: deflated data set inflates past 65536 bytes"):
        budget.read_dataset(bomb, stop_before_pixels=True)
    with pytest.raises(BudgetError):
        read_grouping_tags(bomb)


def test_a_small_deflated_file_still_reads(tmp_path):
    _, good_files = _good(tmp_path)
    f = _deflated(good_files[0], tmp_path / "small.dcm", 16 * 16)
    stack = build_stack([f])
    assert read_slice(stack.images[0]).shape == (16, 16)


def _zeros(path: Path, size: int, preamble: bool) -> Path:
    with open(path, "wb") as f:
        if preamble:
            f.write(b"\0" * 128 + b"DICM")
        f.truncate(size)  # sparse: nothing is written to disk
    return path


@pytest.mark.parametrize("preamble", [True, False], ids=["DICM", "no preamble"])
def test_a_large_file_of_zeros_is_refused_at_once(tmp_path, preamble):
    uid, _ = _good(tmp_path)
    zeros = _zeros(tmp_path / "zeros.dcm", 256 << 20, preamble)  # 256 MB: minutes without the guard
    with pytest.raises(BudgetError, match="a run of zero bytes"):
        read_grouping_tags(zeros)
    source = FolderSource(tmp_path)
    refs = list(source)
    assert [r.series_uid for r in refs] == [uid]
    if preamble:  # a DICOM file that cannot be read is named; a non-DICOM file is passed over
        assert any("zeros.dcm" in p and "zero bytes" in p for p in source.problems), source.problems
    else:
        assert source.ignored == 1


def test_the_per_file_time_budget_stops_a_slow_read(tmp_path, monkeypatch):
    _, good_files = _good(tmp_path)
    monkeypatch.setattr(budget, "HEADER_SECONDS", -1.0)  # a deadline already past: the first read refuses
    with pytest.raises(BudgetError, match=r"im000\.dcm: reading its header took longer than"):
        budget.read_dataset(good_files[0], stop_before_pixels=True)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_element_longer_than_the_file_allocates_nothing_big(tmp_path):
    _, good_files = _good(tmp_path)
    data = bytearray(good_files[0].read_bytes())
    at = data.find(b"\x08\x00\x3e\x10")  # SeriesDescription (0008,103E), explicit VR "LO" + 2-byte length
    assert at > 0
    data[at : at + 8] = b"\x08\x00\x3e\x10UN\x00\x00"  # UN has a 4-byte length: claim 4 GB
    data[at + 8 : at + 8] = b"\xf0\xff\xff\xff"
    bad = tmp_path / "long.dcm"
    bad.write_bytes(bytes(data))
    try:
        ds = budget.read_dataset(bad, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - refusing is fine too; what matters is no 4 GB allocation
        return
    assert len(ds.get((0x0008, 0x103E)).value) < os.path.getsize(bad)


def _hostile_study(root: Path) -> tuple[str, list[Path]]:
    """A good series with every hostile kind inside it and beside it (as series of their own)."""
    uid, good_files = _good(root)
    for i, (make, _) in enumerate(HOSTILE.values()):
        make(good_files[1], root / "good" / f"zz_bad{i}.dcm", True)
        make(good_files[0], root / f"bad{i}" / "bad.dcm", False)
    _zeros(root / "zeros.dcm", 64 << 20, True)
    return uid, good_files


def test_the_cli_classifies_the_good_series_beside_every_hostile_file(tmp_path, capsys):
    import json

    from SeriesClassifierLib.commands.cli import main

    uid, _ = _hostile_study(tmp_path / "study")
    out = tmp_path / "out.json"
    assert main(["classify", str(tmp_path / "study"), "--out", str(out), "--no-cnn", "--quiet"]) == 0
    data = json.loads(out.read_text())
    predictions = {p["series_uid"]: p for p in data["series"]}
    good = predictions.pop(uid)
    assert good["sequence"] and not good["error"]
    assert len(predictions) == len(HOSTILE)
    for p in predictions.values():  # each its own series: refused with the file named, or headers only
        assert p["error"] is None or "bad.dcm" in p["error"]


@pytest.mark.torch
def test_the_cnn_reads_the_good_images_of_a_series_holding_hostile_files(tmp_path):
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.run.pipeline import classify

    uid, _ = _hostile_study(tmp_path)
    predictions = {p.series_uid: p for p in classify(tmp_path, load_bundle(), use_forest=False)}
    good = predictions[uid]
    assert good.sequence is not None and good.models["cnn"].sequence is not None
    assert "zz_bad" in good.models["cnn"].reason  # the left-out files are named


# ----------------------------------------------------------------------------- item 3: one bad value, one file


def _with_bytes(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    return path


def test_a_non_numeric_pixel_spacing_in_one_file_costs_that_value_not_the_series(tmp_path):
    uid, files = _good(tmp_path)
    _with_bytes(files[1], b"DS\x08\x001.0\\1.0 ", b"DS\x08\x00abc\\1.0 ")  # the middle representative
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.skip_reason is None and series.n_images == 3
    assert series.header["PixelSpacing"] == [1.0, 1.0]  # from the files whose value is a number
    assert any("im001.dcm" in w and "PixelSpacing 'abc" in w for w in series.warnings), series.warnings
    assert len(build_stack(files)) == 3


@pytest.mark.parametrize("value", [b"nan\\nan ", b"1e999\\1 ", b"\\\\\\\\\\\\\\ "], ids=["nan", "inf", "empty"])
def test_non_finite_numbers_are_absent_not_nan(tmp_path, value):
    _, files = _good(tmp_path)
    padded = value + b" " * (8 - len(value)) if len(value) < 8 else value
    _with_bytes(files[0], b"DS\x08\x001.0\\1.0 ", b"DS" + len(padded).to_bytes(2, "little") + padded)
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.skip_reason is None
    assert series.header["PixelSpacing"] == [1.0, 1.0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_nan_orientation_in_one_file_is_named_and_left_out_of_the_geometry(tmp_path):
    _, files = _good(tmp_path)
    ds = pydicom.dcmread(files[2])
    ds.ImageOrientationPatient = ["nan", "0", "0", "0", "1", "0"]
    save_dataset(ds, files[2])
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.skip_reason is None and series.orientation == "AXIAL"
    assert any("im002.dcm" in w and "ImageOrientationPatient" in w for w in series.warnings), series.warnings


@pytest.mark.parametrize("value", [b"inf ", b"1e999 ", b"nan "], ids=["inf", "1e999", "nan"])
def test_an_integer_string_pydicom_cannot_convert_costs_that_value(tmp_path, value):
    """Found by test_fuzz_headers.py: an IS of 'inf' raised OverflowError on access and lost the series."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    _, files = _good(tmp_path)
    ds = pydicom.dcmread(files[1])
    ds[0x00180091] = RawDataElement(Tag(0x00180091), "IS", len(value), value, 0, False, True)  # EchoTrainLength
    save_dataset(ds, files[1])
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.skip_reason is None and series.header["RepetitionTime"] == 500.0
    assert any("im001.dcm" in w and "EchoTrainLength" in w for w in series.warnings), series.warnings
    assert len(build_stack(files)) == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("damage", ["unknown VR", "odd-length US"])
def test_an_element_pydicom_cannot_decode_costs_that_element(tmp_path, damage):
    """Found by test_fuzz_headers.py: a damaged VR ('DS' → 'BS') or a US of odd length raised on access
    (NotImplementedError, BytesLengthException) and lost the series or its pixels."""
    _, files = _good(tmp_path)
    data = files[1].read_bytes()
    if damage == "unknown VR":  # SliceThickness (0018,0050) DS → BS
        files[1].write_bytes(_with_bytes(files[1], b"\x18\x00\x50\x00DS", b"\x18\x00\x50\x00BS").read_bytes())
        keyword = "SliceThickness"
    else:  # Columns (0028,0011) US of length 2 → 3, its value running into the next element
        at = data.find(b"\x28\x00\x11\x00US\x02\x00")
        files[1].write_bytes(data[:at] + b"\x28\x00\x11\x00US\x03\x00" + data[at + 8 : at + 10] + b"\x00"
                             + data[at + 10 :])
        keyword = "Columns"
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.skip_reason is None and series.n_images == 3
    assert len(build_stack(files)) >= 2  # the damaged file may lose its image, never the others
    if damage == "unknown VR":
        assert any("im001.dcm" in w and keyword in w for w in series.warnings), series.warnings


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_number_whose_length_runs_past_the_file_costs_that_number(tmp_path):
    """Found by test_fuzz_headers.py: PixelRepresentation (US) with a damaged length of 32,256 bytes is large
    enough for pydicom to defer; read on access, it met the end of the file, raised BytesLengthException and
    lost the whole series ("could not read headers")."""
    _, files = _good(tmp_path)
    data = files[0].read_bytes()
    at = data.find(b"\x28\x00\x03\x01US\x02\x00")
    rest = data[at + 8 :] + b"\x00" * ((len(data) - at - 8) % 2 == 0)  # an odd number of bytes to the end
    files[0].write_bytes(data[:at] + b"\x28\x00\x03\x01US\x00\x7e" + rest)
    (ref,) = FolderSource(tmp_path)
    series = read_series(ref)
    assert series.skip_reason is None and series.n_images == 3
    assert any("im000.dcm" in w and "PixelRepresentation" in w for w in series.warnings), series.warnings
