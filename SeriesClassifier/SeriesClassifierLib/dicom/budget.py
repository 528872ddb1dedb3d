"""Budgets before allocation: every count and size a header declares is checked before it is believed.

A 200 kB file can declare a mosaic of 2×10⁹ images, 2×10⁹ frames or a 65535² image; a 4 MB deflated
file can inflate to 4 GB; a 1 GB file of zeros parses as millions of empty elements. pydicom believes
all of it, so every read of a file in the engine goes through here:

- ``read_dataset``: pydicom's ``read_partial`` on a file object that refuses to read past the file's
  end or past a per-file time budget, with a guard that stops at a run of out-of-order elements
  (top-level tags must ascend; zeros repeat tag (0000,0000)); deflated data sets are inflated once,
  counting, up to ``MAX_INFLATED_BYTES`` before pydicom inflates them whole;
- ``check_pixels``: rows, columns, frames, samples and mosaic tiles against sane limits and against
  the bytes the file really holds, before anything is decoded or a loop runs over frames or tiles.

A file that fails raises ``BudgetError`` (errors.py) naming the file and the reason; callers leave the file out
and say so, and the rest of the study is classified.
"""

from __future__ import annotations

import math
import os
import struct
import time
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.misc import size_in_bytes
from pydicom.tag import Tag
from pydicom.uid import UID

from ..errors import BudgetError

# Limits far above any MR image and far below what would exhaust a laptop.
MAX_SIDE = 8192  # rows or columns of one frame
MAX_FRAME_PIXELS = 4096 * 4096  # rows × columns × samples of one frame
MAX_FRAMES = 65536  # NumberOfFrames
MAX_DECODED_BYTES = 1 << 30  # all frames of one file as decoded pixels
MAX_INFLATED_BYTES = 256 << 20  # a deflated data set, inflated
MIN_MOSAIC_TILE = 4  # pixels per side of one mosaic tile
MAX_OUT_OF_ORDER = 64  # top-level elements whose tag does not ascend (real files: a handful at most)
HEADER_SECONDS = 10.0  # one file's header read (real headers take milliseconds)

_DEFLATED = "1.2.840.10008.1.2.1.99"
_ZERO_HEADER = bytes(8)
_PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}


class _BoundedFile:
    """A read-only file object that never reads past the end of the file or past its deadline.

    CPython allocates the full size asked of ``read(n)`` before reading, so an element length of
    4 GB in a 1 kB file would allocate 4 GB: the request is clamped to what the file holds.
    """

    def __init__(self, path: Path, seconds: float):
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = os.fstat(self._raw.fileno()).st_size
        self._deadline = time.monotonic() + seconds
        self._seconds = seconds
        self._zero_headers = 0
        self.name = str(path)

    def read(self, size: int = -1) -> bytes:
        if time.monotonic() > self._deadline:
            raise BudgetError(f"{self.name}: reading its header took longer than {self._seconds:g} s, left out")
        remaining = max(0, self._size - self._raw.tell())
        data = self._raw.read(remaining if size is None or size < 0 else min(size, remaining))
        if len(data) == 8:  # pydicom reads each element header as 8 bytes; zeros parse as endless empty elements
            self._zero_headers = self._zero_headers + 1 if data == _ZERO_HEADER else 0
            if self._zero_headers > MAX_OUT_OF_ORDER:
                raise BudgetError(f"{self.name}: a run of zero bytes where elements should be (not a DICOM "
                                  "data set), left out")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Guard:
    """``stop_when`` for read_partial: the caller's condition, and a stop at a run of disordered tags."""

    def __init__(self, inner: Callable[[Any, Any, int], bool] | None):
        self.inner = inner
        self.last = -1
        self.disorder = 0

    def __call__(self, tag: Any, vr: Any, length: int) -> bool:
        if int(tag) <= self.last:
            self.disorder += 1
            if self.disorder > MAX_OUT_OF_ORDER:
                return True
        self.last = max(self.last, int(tag))
        return bool(self.inner is not None and self.inner(tag, vr, length))


def _at_pixels(tag: Any, vr: Any, length: int) -> bool:
    return int(tag) in _PIXEL_TAGS


def read_dataset(
    path: str | os.PathLike,
    *,
    stop_before_pixels: bool = False,
    stop_when: Callable[[Any, Any, int], bool] | None = None,
    specific_tags: list | None = None,
    defer_size: str | int | None = None,
    force: bool = False,
    seconds: float | None = None,
) -> Dataset:
    """``pydicom.dcmread`` within the budgets; raises BudgetError naming the file and the reason."""
    path = Path(path)
    check_deflated(path)
    guard = _Guard(stop_when or (_at_pixels if stop_before_pixels else None))
    with _BoundedFile(path, HEADER_SECONDS if seconds is None else seconds) as fp:
        tags = None if specific_tags is None else [Tag(t) for t in specific_tags]  # keywords, as dcmread
        ds = read_partial(fp, guard, defer_size=size_in_bytes(defer_size), force=force, specific_tags=tags)
    # A deferred value (a CSA blob, an icon) is read when asked for, by pydicom reopening the file by its name;
    # the bounded reader is closed by then. Its length was read within the file's real size.
    ds.filename, ds.fileobj_type = str(path), open
    if getattr(ds, "buffer", None) is not None:  # pydicom 3 prefers an open buffer over the name
        ds.buffer = None
    if guard.disorder > MAX_OUT_OF_ORDER:
        raise BudgetError(f"{path}: more than {MAX_OUT_OF_ORDER} out-of-order elements (zeros or garbage, "
                          "not a DICOM data set), left out")
    ds._undecodable = drop_undecodable(ds)  # named by header reading as "not a number"
    return ds


# numbers, as text or binary: converted on access, raising on garbage (an IS of "inf", a US of odd length)
_NUMBER_VRS = {"DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "AT", "SV", "UV", "US or SS"}
_KNOWN_VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV",
              "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV",
              "OB or OW", "US or SS", "US or OW", "US or SS or OW"}  # the last: ambiguous VRs of the dictionary
_MAX_DEPTH = 4  # sequences inside sequences (functional groups nest two or three deep)


def drop_undecodable(ds: Dataset, depth: int = 0) -> list[str]:
    """Remove what pydicom cannot convert: an unknown VR (damaged bytes) and numbers such as an IS of ``inf``
    (OverflowError on access) or a US of odd length, any of which would lose the whole file wherever it is
    read; returns their keywords. Other values (text, pixels, deferred blobs) stay raw and lazy."""
    bad: list[str] = []
    for tag in list(ds.keys()):
        raw = ds._dict.get(tag)  # as stored: a deferred value stays on disk (get_item would read it)
        vr = getattr(raw, "VR", None) or _dictionary_vr(tag)
        deferred = getattr(raw, "value", 0) is None and getattr(raw, "length", 0)
        if deferred and vr not in _NUMBER_VRS:
            continue  # a large blob (CSA header, icon): read when asked for
        # a deferred number is a damaged length (a US swallowing the pixels): read it here to find out
        if vr is not None and str(vr) not in _KNOWN_VRS:  # damaged bytes: pydicom raises on any access
            bad.append(_keyword(tag))
            del ds[tag]
            continue
        if vr not in _NUMBER_VRS and vr != "SQ":
            continue
        try:
            value = ds[tag].value
        except Exception:  # noqa: BLE001 - whatever pydicom raises on a value it cannot convert
            bad.append(_keyword(tag))
            del ds[tag]
            continue
        if vr == "SQ" and depth < _MAX_DEPTH:
            for item in value or []:
                bad.extend(drop_undecodable(item, depth + 1))
    return bad


def _dictionary_vr(tag: Any) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _keyword(tag: Any) -> str:
    return keyword_for_tag(tag) or str(Tag(tag))


# ----------------------------------------------------------------------------- deflate


def file_meta_end(buf: bytes) -> tuple[int, str | None] | None:
    """(offset of the data set, transfer syntax or None) from a Part-10 file's first bytes; None without the
    DICM prefix or when the file meta group runs past ``buf``. Grouping, the fast header reader and the
    deflate check all start here."""
    if len(buf) < 140 or buf[128:132] != b"DICM":
        return None
    pos, syntax = 132, None
    while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
        tag = struct.unpack_from("<I", buf, pos)[0]
        tag = ((tag & 0xFFFF) << 16) | (tag >> 16)
        vr = buf[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV", b"SV", b"UV"):
            if pos + 12 > len(buf):
                return None
            length, size = struct.unpack_from("<I", buf, pos + 8)[0], 12
        else:
            length, size = struct.unpack_from("<H", buf, pos + 6)[0], 8
        if tag == 0x00020010:
            syntax = buf[pos + size : pos + size + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos += size + length
    return pos, syntax


def check_deflated(path: Path) -> None:
    """Refuse a deflated data set that inflates past MAX_INFLATED_BYTES (pydicom inflates it whole)."""
    try:
        st = os.stat(path)
    except OSError:
        return  # the read that follows reports it
    _check_deflated(str(path), st.st_size, st.st_mtime_ns, MAX_INFLATED_BYTES)


@lru_cache(maxsize=256)  # grouping, headers and slices read the same file: inflate it once
def _check_deflated(path: str, size: int, mtime_ns: int, limit: int) -> None:
    with open(path, "rb") as f:
        meta = file_meta_end(f.read(65536))
        if meta is None or meta[1] != _DEFLATED:
            return
        f.seek(meta[0])
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while True:
            chunk = inflater.unconsumed_tail or f.read(1 << 16)
            if not chunk:
                return
            total += len(inflater.decompress(chunk, 1 << 20))  # bounded output per call
            if total > limit:
                raise BudgetError(f"{path}: deflated data set inflates past {limit} bytes "
                                  f"from {size} bytes (a decompression bomb?), left out")
            if inflater.eof:
                return


# ----------------------------------------------------------------------------- declared pixels


def _count(value: Any, default: int) -> int:
    try:
        n = int(float(value if not isinstance(value, (list, tuple)) else value[0]))
    except (TypeError, ValueError, IndexError):
        return default
    return n


def check_pixels(path: str | os.PathLike, ds: Dataset, mosaic: int | None = None, *, stored: bool = True) -> None:
    """Refuse a file whose declared image would not fit in memory or (``stored``) cannot be in the file.

    ``ds`` needs Rows, Columns and, when present, NumberOfFrames, SamplesPerPixel, BitsAllocated and the
    file meta (transfer syntax); ``mosaic`` is the declared number of mosaic images, if any. Header reading
    passes ``stored=False``: a file whose pixels were stripped still has headers for the forest.
    """
    rows, cols = _count(ds.get("Rows"), 0), _count(ds.get("Columns"), 0)
    frames = _count(ds.get("NumberOfFrames"), 1) or 1
    samples = max(1, _count(ds.get("SamplesPerPixel"), 1))
    bits = max(1, _count(ds.get("BitsAllocated"), 16))
    if min(rows, cols, frames) < 0:
        raise BudgetError(f"{path}: negative Rows/Columns/NumberOfFrames ({rows}, {cols}, {frames}), left out")
    if max(rows, cols) > MAX_SIDE or rows * cols * samples > MAX_FRAME_PIXELS:
        raise BudgetError(f"{path}: declares a {rows}×{cols} image, beyond the {MAX_SIDE} pixel limit, left out")
    if frames > MAX_FRAMES:
        raise BudgetError(f"{path}: declares {frames} frames, beyond the limit of {MAX_FRAMES}, left out")
    if frames * rows * cols * samples * 4 > MAX_DECODED_BYTES:
        raise BudgetError(f"{path}: {frames} frames of {rows}×{cols} would decode past "
                          f"{MAX_DECODED_BYTES >> 20} MB, left out")
    if stored:
        _check_stored_size(Path(path), ds, frames, math.ceil(rows * cols * samples * bits / 8))
    if mosaic is not None:
        check_mosaic(path, mosaic, rows, cols)


def _check_stored_size(path: Path, ds: Dataset, frames: int, frame_bytes: int) -> None:
    """The declared pixels against the bytes the file holds (native) or could hold (encapsulated)."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if syntax == _DEFLATED:
        return  # bounded by check_deflated
    if syntax and _is_encapsulated(syntax):
        if frames * 8 > size:  # every frame needs at least an item header of 8 bytes
            raise BudgetError(f"{path}: declares {frames} compressed frames in a file of {size} bytes, left out")
        return
    needed = frames * frame_bytes
    if needed > size:
        raise BudgetError(f"{path}: declares {frames} frame(s) of {frame_bytes} bytes ({needed} bytes of pixels) "
                          f"but the file has {size} bytes, left out")


def _is_encapsulated(syntax: str) -> bool:
    try:
        return bool(UID(syntax).is_compressed)
    except Exception:  # noqa: BLE001 - an unknown syntax: assume compressed, the weaker check
        return True


def check_mosaic(path: str | os.PathLike, n: int, rows: int, cols: int) -> None:
    """Refuse a mosaic count whose tiles cannot fit the image (a loop over 2×10⁹ tiles would never end)."""
    side = math.ceil(math.sqrt(n)) if n > 0 else 0
    if n <= 0 or side * MIN_MOSAIC_TILE > min(rows, cols):
        raise BudgetError(f"{path}: declares a mosaic of {n} images, which cannot fit a {rows}×{cols} image, "
                          "left out")
