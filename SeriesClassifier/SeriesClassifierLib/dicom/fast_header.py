"""A few top-level tags of a file, found in its bytes and decoded by pydicom: ``dcmread(specific_tags)``, faster.

The CNN's slice stack (slices.py ``build_stack``) needs about twenty tags of every file of a series;
``pydicom.dcmread(path, stop_before_pixels=True, specific_tags=...)`` still walks every element of the
header in Python (~0.7 ms a file). Here the element headers are walked with ``struct`` as the grouping scan
does (sources.py), the raw bytes of the wanted elements are cut out, and pydicom's own ``read_dataset``
decodes just those: the same dataset, value for value, at a fraction of the cost.

Anything unusual goes to pydicom unchanged, through the budgeted reader (budget.py ``read_dataset``, with
``force`` so that bare data sets without a preamble still read): no Part-10 preamble, big-endian or deflated
syntax, a command group, a first element whose VR disagrees with the transfer syntax, a wanted element of
undefined length, a header longer than the buffer, any parse error. Either way the values pydicom cannot
convert are dropped and named in ``ds._undecodable``, as budget.py does.
"""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset as _decode_elements
from pydicom.tag import Tag

from . import budget
from .sources import _UNDEFINED, _element_header, _ScanAbort, _skip_undefined

_IMPLICIT_LE = "1.2.840.10008.1.2"
_LEFT_TO_PYDICOM = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}  # deflated, big endian
_PIXELS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # where stop_before_pixels stops
_SPECIFIC_CHARACTER_SET = 0x00080005  # pydicom adds it to every specific_tags read
_BUFFERS = (65536, 1 << 20)  # most headers end in the first; Philips private blocks can need the second


def tag_set(tags: list) -> frozenset[int]:
    """The tags as ints, with what pydicom adds to a ``specific_tags`` read."""
    return frozenset(int(Tag(t)) for t in tags) | {_SPECIFIC_CHARACTER_SET}


def read_tags(path: str | Path, tags: list, wanted: frozenset[int] | None = None) -> Any:
    """``pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags, force=True)``, read faster where it can
    be and within budget.py's budgets where it cannot (BudgetError naming the file)."""
    wanted = wanted or tag_set(tags)
    for size in _BUFFERS:
        try:
            found = _scan(Path(path), wanted, size)
        except (_ScanAbort, struct.error, ValueError, IndexError):
            continue  # a larger buffer, then pydicom
        if found is not None:
            raw, implicit, meta = found
            ds = _decode_elements(BytesIO(raw), implicit, True)
            # the file meta as dcmread gives it (check_pixels reads the transfer syntax from it)
            ds.file_meta = FileMetaDataset(_decode_elements(BytesIO(meta), False, True))
            ds._undecodable = budget.drop_undecodable(ds)  # as budget.read_dataset
            return ds
        break
    return budget.read_dataset(path, stop_before_pixels=True, specific_tags=tags, force=True)


def _scan(path: Path, wanted: frozenset[int], limit: int) -> tuple[bytes, bool, bytes] | None:
    """(the wanted elements' bytes, implicit VR, the file meta group's bytes) or None when pydicom must read
    the file."""
    with open(path, "rb") as f:
        buf = f.read(limit)
    found = budget.file_meta_end(buf)
    if found is None:
        return None
    pos, syntax = found
    if syntax is None or syntax in _LEFT_TO_PYDICOM or pos + 8 > len(buf):
        return None
    implicit = syntax == _IMPLICIT_LE
    meta = buf[132:pos]
    if not _syntax_agrees(buf, pos, implicit):
        return None  # pydicom guesses the real encoding of such files; leave it to pydicom
    out = bytearray()
    while pos < len(buf):
        tag, length, size = _element_header(buf, pos, implicit, "<")
        if tag in _PIXELS:
            return bytes(out), implicit, meta
        end = pos + size
        if length == _UNDEFINED:
            if tag in wanted:
                return None
            pos = _skip_undefined(buf, end, implicit, "<")
            continue
        end += length
        if end > len(buf):
            raise _ScanAbort
        if tag in wanted:
            out += buf[pos:end]
        pos = end
    if len(buf) == limit:
        raise _ScanAbort  # the buffer ended, not the file
    return bytes(out), implicit, meta


def _syntax_agrees(buf: bytes, pos: int, implicit: bool) -> bool:
    """The first element is not a command group and its VR bytes look as the syntax says they should."""
    group = struct.unpack_from("<H", buf, pos)[0]
    if group == 0x0000:
        return False
    vr = buf[pos + 4 : pos + 6]
    looks_explicit = len(vr) == 2 and all(0x41 <= c <= 0x5A for c in vr)
    return looks_explicit != implicit
