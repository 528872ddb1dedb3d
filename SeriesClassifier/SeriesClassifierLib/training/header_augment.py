"""Training-time header augmentation: no single tag, and no count, may decide a series.

A real archive loses tags (anonymisers, exports, old software) and every new scanner brings
vendor words the forest never saw. Training rows that randomly lack a token field, a vendor
sequence name, the flip angle or the echo train make the trees learn the other evidence as
well (TR/TE/TI, b-values, EPI, volumes), which is what carries over to an unseen vendor.

Counts mislead the same way. The generator writes short runs (a few dozen volumes, to keep its
pictures cheap) where real BOLD, ASL and DSC runs have 40 to 600, and archives keep excerpts:
one file of an fMRI run, the b=0 image of a DWI series. So some runs are lengthened and some
series cut to one to three files, their counts kept consistent.

The matrix is a site's choice too: the generator writes the acquired matrix, where GE's zero-filled
interpolation and Philips' reconstruction voxel size turn a 64 × 64 EPI into 128 or a 128 × 128
DWI into 384 (both in the real development set). So some series get a finer reconstruction matrix
over the same field of view.
The copies are shallow: the caller's series are never modified.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence

import numpy as np

from ..series import Series

TOKEN_FIELDS = ("ScanningSequence", "SequenceVariant", "ScanOptions", "ImageType")
VENDOR_NAME_FIELDS = ("SequenceName", "PulseSequenceName", "GEPulseSequenceName", "PhilipsScanningTechnique",
                      "SiemensSequenceFile")
VALUE_FIELDS = ("FlipAngle", "EchoTrainLength")
CONTEXT_FIELD = "StudyContext"
FIELD_DROPOUT = 0.3  # the bundled forest's rate (docs/REAL_DATA.md: measured on the real development set)
EXCERPT_RATE = 0.08  # series cut to one to three files
LONG_RUN_RATE = 0.25  # EPI runs lengthened up to MAX_RUN_FACTOR times
MAX_RUN_FACTOR = 8.0
RECON_RATE = 0.2  # series given an interpolated reconstruction matrix
MAX_RECON_FACTOR = 4.0
MAX_MATRIX = 1024
_SIEMENS_B = re.compile(r"ep_b\d+(t?)")


def drop_header_fields(
    series: Sequence[Series], rate: float, seed: int, context_rate: float = 0.15
) -> list[Series]:
    """Copies where each token field, vendor name and secondary value is dropped with probability ``rate``.

    The study context (what sibling series say) is dropped with ``context_rate``: a series
    classified on its own has none, and the forest must expect that.
    """
    rng = np.random.default_rng(seed)
    fields = TOKEN_FIELDS + VENDOR_NAME_FIELDS + VALUE_FIELDS
    out = []
    for s in series:
        drop = {f for f in fields if rate > 0 and rng.random() < rate}
        if rng.random() < context_rate:
            drop.add(CONTEXT_FIELD)
        if drop & set(s.header):
            s = copy.copy(s)
            s.header = {k: v for k, v in s.header.items() if k not in drop}
        out.append(s)
    return out


def vary_counts(series: Sequence[Series], seed: int, excerpt_rate: float = EXCERPT_RATE,
                long_run_rate: float = LONG_RUN_RATE) -> list[Series]:
    """Copies of which some are excerpts of one to three files and some EPI runs are longer."""
    rng = np.random.default_rng(seed)
    out = []
    for s in series:
        u = rng.random()
        if u < excerpt_rate:
            s = excerpt(s, int(rng.integers(1, 4)), rng)
        elif u < excerpt_rate + long_run_rate:
            s = longer_run(s, float(np.exp(rng.uniform(0.0, math.log(MAX_RUN_FACTOR)))))
        out.append(s)
    return out


def vary_matrix(series: Sequence[Series], seed: int, rate: float = RECON_RATE) -> list[Series]:
    """Copies of which a fraction ``rate`` are reconstructed to a finer matrix (same field of view)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in series:
        if rng.random() < rate:
            s = reconstructed(s, float(np.exp(rng.uniform(math.log(1.25), math.log(MAX_RECON_FACTOR)))))
        out.append(s)
    return out


def reconstructed(s: Series, factor: float) -> Series:
    """``s`` with Rows/Columns ``factor`` times finer (multiples of 16, at most MAX_MATRIX), PixelSpacing to match."""
    rows, cols = _count(s.header.get("Rows")), _count(s.header.get("Columns"))
    if math.isnan(rows) or math.isnan(cols):
        return s
    factor = min(factor, MAX_MATRIX / max(rows, cols))
    new_rows, new_cols = (max(int(v), 16 * round(v * factor / 16)) for v in (rows, cols))
    if (new_rows, new_cols) == (rows, cols):
        return s
    h = dict(s.header)
    h["Rows"], h["Columns"] = new_rows, new_cols
    spacing = h.get("PixelSpacing")
    if spacing and len(spacing) == 2 and all(_count(v) > 0 for v in spacing):
        h["PixelSpacing"] = [float(spacing[0]) * rows / new_rows, float(spacing[1]) * cols / new_cols]
    out = copy.copy(s)
    out.header = h
    return out


def _count(value) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) and f > 0 else math.nan


def _mosaic(s: Series) -> bool:
    return "MOSAIC" in [str(v).upper() for v in s.header.get("ImageType") or []] or bool(s.header.get("MosaicImages"))


def excerpt(s: Series, k: int, rng: np.random.Generator) -> Series:
    """The first ``k`` files of a classic series, as an archive keeps an excerpt (enhanced objects: unchanged)."""
    if s.header.get("Enhanced") or s.n_images <= k:
        return s
    h = dict(s.header)
    positions = _count(h.get("NumberOfPositions"))
    kept_positions = 1 if _mosaic(s) else min(k, int(positions)) if not math.isnan(positions) else k
    h["NumberOfPositions"] = kept_positions
    h["ImagesPerPosition"] = k / kept_positions
    if _count(h.get("TemporalPositions")) > 1:
        h["TemporalPositions"] = min(int(h["TemporalPositions"]), k)
    if h.get("BValues"):
        h["BValues"] = sorted({float(b) for b in rng.choice(h["BValues"], size=min(k, len(h["BValues"])))})
        # Siemens names each image by its b-value: the b = 0 image of a *ep_b1000t series is *ep_b0
        if isinstance(h.get("SequenceName"), str):
            b = max(h["BValues"])
            h["SequenceName"] = _SIEMENS_B.sub(lambda m: f"ep_b{b:g}" + ("t" if b and m[1] else ""),
                                               h["SequenceName"], count=1)
    if len(h.get("EchoTimes") or []) > k:
        h["EchoTimes"] = list(h["EchoTimes"])[:k]
    out = copy.copy(s)
    out.header, out.n_frames = h, max(1, s.n_frames * k // max(s.n_images, 1))
    out.n_images = k
    return out


def longer_run(s: Series, factor: float) -> Series:
    """An EPI series with ``factor`` times its volumes (directions, time points); others unchanged."""
    h = s.header
    if not ("EP" in (h.get("ScanningSequence") or []) or _mosaic(s)):
        return s
    positions = 1.0 if _mosaic(s) else _count(h.get("NumberOfPositions"))
    echoes = len(set(h.get("EchoTimes") or [])) or 1
    volumes = (s.n_frames / positions / echoes) if positions > 0 else math.nan
    if not volumes >= 2:
        return s  # one volume: a reference or an M0, not a run
    new_volumes = max(int(round(volumes * factor)), int(volumes))
    scale = new_volumes / volumes
    h = dict(h)
    if _count(h.get("ImagesPerPosition")) > 0:
        h["ImagesPerPosition"] = float(h["ImagesPerPosition"]) * scale
    for key in ("NumberOfTemporalPositions", "TemporalPositions"):
        if _count(h.get(key)) > 1:
            h[key] = int(round(float(h[key]) * scale))
    out = copy.copy(s)
    out.header = h
    out.n_images, out.n_frames = int(round(s.n_images * scale)), int(round(s.n_frames * scale))
    return out
