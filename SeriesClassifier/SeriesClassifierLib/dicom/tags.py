"""DICOM values the engine reads in more than one place: tolerant number parsing, vendor private
tags, b-values and Siemens mosaic counts. ``headers`` (for the forest) and ``slices`` (for the CNN)
both read them here, so a b-value or a mosaic means the same to both models.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple


class PrivateTag(NamedTuple):
    """A vendor private element: its group, the private creator and the element's offset in the block.

    ``tag`` is where the element sits when the creator holds block 0x10, as nearly every file has it;
    readers that ask pydicom for ``specific_tags`` list ``creator_tag`` and ``tag``.
    """

    group: int
    creator: str
    offset: int

    @property
    def tag(self) -> tuple[int, int]:
        return self.group, 0x1000 | self.offset

    @property
    def creator_tag(self) -> tuple[int, int]:
        return self.group, 0x0010


SIEMENS_B_VALUE = PrivateTag(0x0019, "SIEMENS MR HEADER", 0x0C)
SIEMENS_MOSAIC_IMAGES = PrivateTag(0x0019, "SIEMENS MR HEADER", 0x0A)
GE_B_VALUE = PrivateTag(0x0043, "GEMS_PARM_01", 0x39)  # b + 1e9 on some software versions
GE_PULSE_SEQUENCE = PrivateTag(0x0019, "GEMS_ACQU_01", 0x9C)
PHILIPS_B_VALUE = PrivateTag(0x2001, "Philips Imaging DD 001", 0x03)
PHILIPS_SCANNING_TECHNIQUE = PrivateTag(0x2001, "Philips Imaging DD 001", 0x20)

# In the order they are tried after the standard DiffusionBValue (0018,9087).
B_VALUE_TAGS = (SIEMENS_B_VALUE, GE_B_VALUE, PHILIPS_B_VALUE)
# What a header-only read must ask for to find every b-value and mosaic count.
PRIVATE_READ_TAGS = sorted({t for p in (*B_VALUE_TAGS, SIEMENS_MOSAIC_IMAGES) for t in (p.creator_tag, p.tag)})


def to_float(value: Any) -> float | None:
    """A finite float from a DICOM value (numbers, strings, bytes of private tags, multi-values: the first)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "ignore").strip("\x00 ").split("\\")[0]
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def to_floats(value: Any, n: int | None = None) -> tuple[float, ...] | None:
    """Finite floats of a multi-valued number (``n`` of them when given); None when any is not a number.

    One file's ``PixelSpacing`` of ``abc\\1`` must cost that value, not the series.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "ignore").strip("\x00 ")
    if isinstance(value, str):
        value = value.split("\\")
    elif isinstance(value, (int, float)):  # DS/IS single values are float/int subclasses
        value = (value,)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in out) or (n is not None and len(out) < n):
        return None
    return out[:n] if n is not None else out


def private_value(ds, tag: PrivateTag) -> Any:
    """A private value by its creator; the usual element number (block 0x10) when the creator is not there."""
    try:
        return ds.private_block(tag.group, tag.creator)[tag.offset].value
    except (KeyError, ValueError):
        pass
    elem = ds.get(tag.tag)
    return None if elem is None else elem.value


def b_value(ds) -> float | None:
    """The diffusion b-value of a classic image: the standard tag, else Siemens, GE, Philips private tags."""
    b = to_float(ds.get("DiffusionBValue"))
    for tag in B_VALUE_TAGS:
        if b is not None:
            break
        b = to_float(private_value(ds, tag))
        if b is not None and tag is GE_B_VALUE and b >= 1e9:
            b = b % 1e9  # some GE software stores b + 1e9
    return b


def mosaic_images(ds) -> int | None:
    """How many images a Siemens mosaic holds (0019,100A), None when the tag is absent or not positive."""
    n = to_float(private_value(ds, SIEMENS_MOSAIC_IMAGES))
    return int(n) if n is not None and n > 0 else None
