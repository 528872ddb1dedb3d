"""dicom/fast_header.py gives what ``pydicom.dcmread(stop_before_pixels=True, specific_tags=...)`` gives.

The reference is the engine's budgeted read with ``force`` (dicom/budget.py ``read_dataset``, what
``build_stack`` read before the fast path, and where the fast path leaves unusual files); on the files the
fast path takes it is also plain ``dcmread``.

Compared element by element (tags, VRs, values) on every real file pydicom and pydicom-data ship and on
the files the factory writes (classic, enhanced multi-frame, Siemens mosaic, implicit VR, private b-values),
and on what ``build_stack`` makes of them. Files the fast path leaves to pydicom must still read the same.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    SAGITTAL,
    numbered_volume,
    recipe_headers,
    write_classic,
    write_classic_series,
    write_enhanced,
    write_mosaic,
)

from SeriesClassifierLib.dicom import budget, fast_header, slices
from SeriesClassifierLib.dicom.fast_header import read_tags, tag_set

TAGS = slices._HEADER_TAGS
WANTED = tag_set(TAGS)


def _real_files() -> list[Path]:
    import pydicom.data

    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data

        folders.append(Path(data_store.__file__).parent)
    except ImportError:
        pass
    return sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())


def _pydicom(path):
    return budget.read_dataset(path, stop_before_pixels=True, specific_tags=TAGS, force=True)


def _plain_pydicom(path):
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)


def _takes_fast_path(path: Path) -> bool:
    try:
        return fast_header._scan(path, WANTED, 1 << 20) is not None
    except fast_header._ScanAbort:
        return False


def _same(a, b) -> None:
    assert list(a.keys()) == list(b.keys())
    for tag in list(a.keys()):  # iterating a Dataset gives its elements, not its tags
        assert (a[tag].VR, a[tag].value) == (b[tag].VR, b[tag].value), tag


def test_every_real_file_reads_as_pydicom_reads_it():
    read = fast = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _real_files():
            try:
                expected = _pydicom(path)
            except Exception:  # noqa: BLE001 - not DICOM, or broken: the fast path must fail too
                with pytest.raises(Exception):  # noqa: B017
                    read_tags(path, TAGS, WANTED)
                continue
            _same(read_tags(path, TAGS, WANTED), expected)
            read += 1
            if _takes_fast_path(path):
                _same(read_tags(path, TAGS, WANTED), _plain_pydicom(path))
                fast += 1
    assert read > 50
    assert fast > read // 2  # most real files take the fast path; the rest went to pydicom, unchanged


@pytest.fixture(scope="module")
def factory_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("factory")
    rng = np.random.default_rng(0)
    files = []
    for cls in ("DWI", "T1_3D_PRE", "FLAIR_2D"):
        for vendor in ("standard", "siemens", "ge", "philips"):
            _, written = write_classic_series(root / f"{cls}_{vendor}", recipe_headers(cls, rng), n=3, iop=SAGITTAL,
                                              vendor_b=vendor)
            files += written
    files += write_classic(root / "classic", numbered_volume(4))
    files.append(write_enhanced(root / "enhanced", numbered_volume(5)))
    files += write_mosaic(root / "mosaic", [numbered_volume(4), numbered_volume(4)], [0.0, 1000.0])
    implicit = root / "implicit.dcm"
    ds = pydicom.dcmread(files[0])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    from SeriesClassifierLib.pydicom_compat import save_dataset

    if hasattr(ds, "is_implicit_VR") and pydicom.__version__ < "3":
        ds.is_implicit_VR, ds.is_little_endian = True, True
    save_dataset(ds, implicit)
    return [*files, implicit]


def test_factory_files_read_as_pydicom_reads_them(factory_files):
    for path in factory_files:
        _same(read_tags(path, TAGS, WANTED), _pydicom(path))
        _same(read_tags(path, TAGS, WANTED), _plain_pydicom(path))
    implicit = factory_files[-1]
    assert _takes_fast_path(implicit) and fast_header._scan(implicit, WANTED, 1 << 20)[1] is True  # implicit VR


def test_build_stack_is_the_same_as_with_pydicom(factory_files, monkeypatch):
    folders = sorted({p.parent for p in factory_files if p.suffix == ".dcm" and p.parent.name != "factory"})
    fast = [slices.build_stack(sorted(f.glob("*.dcm"))) for f in folders]
    monkeypatch.setattr(slices, "read_tags", lambda path, tags, wanted=None: _pydicom(path))
    slow = [slices.build_stack(sorted(f.glob("*.dcm"))) for f in folders]
    for a, b in zip(fast, slow):
        assert a.images == b.images and a.groups == b.groups and a.geometry == b.geometry and a.notes == b.notes


def test_unusual_files_go_to_pydicom(tmp_path, factory_files):
    raw = tmp_path / "no_preamble.dcm"
    raw.write_bytes(factory_files[0].read_bytes()[132:])  # no preamble: pydicom's business
    assert fast_header._scan(raw, WANTED, 1 << 20) is None
    bare = read_tags(raw, TAGS, WANTED)  # read all the same, budgeted and forced, as build_stack read it
    assert bare.Rows and bare.Columns
    _same(bare, _pydicom(raw))
    truncated = tmp_path / "truncated.dcm"
    data = factory_files[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])  # cut inside the header or the pixels
    try:
        expected = _pydicom(truncated)
    except Exception:  # noqa: BLE001
        with pytest.raises(Exception):  # noqa: B017
            read_tags(truncated, TAGS, WANTED)
    else:
        _same(read_tags(truncated, TAGS, WANTED), expected)
