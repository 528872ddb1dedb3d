"""pydicom 2.4 and 3 behind one face.

Slicer 5.6 and 5.8 ship pydicom 2.4.x (``SuperBuild/External_python-dicom-requirements.cmake``) and
their own DICOM plugins call APIs pydicom 3 removed, so the engine must run on both:

- writing a conformant file: ``save_as(path, enforce_file_format=True)`` exists only in pydicom 3;
  pydicom 2.4 spells it ``save_as(path, write_like_original=False)``;
- one frame of a multi-frame object: ``pydicom.pixels.pixel_array(path, index=i)`` (pydicom 3,
  decodes only that frame) — pydicom 2.4 has no ``pydicom.pixels``, so the whole pixel array is
  decoded and the frame taken from it;
- the encoding a file without file meta was read in: ``original_encoding`` (pydicom 3) against
  ``is_implicit_VR``/``is_little_endian`` (2.4).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pydicom

PYDICOM_VERSION = tuple(int(p) for p in pydicom.__version__.split(".")[:2] if p.isdigit())
HAS_PIXELS_MODULE = PYDICOM_VERSION >= (3, 0)


def save_dataset(ds: Any, path: str | os.PathLike) -> None:
    """Write ``ds`` with a preamble and file meta information (a DICOM Part 10 file) on any pydicom."""
    if PYDICOM_VERSION >= (3, 0):
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, write_like_original=False)


def decodable(ds: Any) -> Any:
    """``ds`` with a transfer syntax to decode its pixels by, taken from how it was read when it has none.

    Old files without a preamble or file meta (ACR-NEMA style, read with ``force``) are still valid
    uncompressed images; pydicom refuses their pixels only for want of the (0002,0010) element.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return ds
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if PYDICOM_VERSION >= (3, 0):
        implicit, little = ds.original_encoding
    else:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return ds


def frame_pixels(path: str | os.PathLike, index: int, memo: dict | None = None) -> np.ndarray:
    """Pixels of frame ``index`` of a (multi-frame) file.

    pydicom 2.4 decodes every frame to give one; with ``memo`` (any dict the caller keeps for one series)
    that happens once per file, not once per frame asked.
    """
    if HAS_PIXELS_MODULE:
        from pydicom.pixels import pixel_array

        return pixel_array(os.fspath(path), index=index)
    key = ("every frame", os.fspath(path))
    pixels = memo.get(key) if memo is not None else None
    if pixels is None:
        pixels = pydicom.dcmread(os.fspath(path)).pixel_array
        if memo is not None:
            memo[key] = pixels
    n_frames = pixels.shape[0] if pixels.ndim >= 3 and not (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)) else 1
    if n_frames == 1:
        if index != 0:
            raise IndexError(f"frame {index} of a single-frame image")
        return pixels
    return pixels[index]


def api_problems() -> list:
    """What the installed pydicom lacks that the engine needs (empty when all is there)."""
    problems = []
    if PYDICOM_VERSION < (2, 4):
        problems.append(f"pydicom {pydicom.__version__} is older than 2.4")
    for name in ("dcmread", "Dataset", "FileMetaDataset"):
        if not hasattr(pydicom, name) and not hasattr(pydicom.dataset, name):
            problems.append(f"pydicom has no {name}")
    from pydicom import filereader

    if not hasattr(filereader, "read_partial"):
        problems.append("pydicom.filereader has no read_partial")
    return problems
