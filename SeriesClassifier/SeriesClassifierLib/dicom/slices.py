"""Pick, read and preprocess K slices of a series for the CNN (pixels only).

Steps, each a small function:

1. ``build_stack(files)`` reads headers only (``stop_before_pixels``) and lists
   every 2-D image location of the series: single-frame files, frames of an
   enhanced multi-frame object (per-frame functional groups) and tiles of a
   Siemens mosaic. When several images share a location (DWI b-values, BOLD/DSC
   time points, echoes) one representative volume is kept: the highest b-value
   for diffusion (the b-image that shows the diffusion contrast), otherwise the
   middle time point (past the bolus arrival for DSC, steady state for BOLD).
   The kept images are sorted along the slice normal, grouped by plane.
2. ``sample_indices(stack, k)`` picks K evenly spaced slices from the central
   part of each plane group (the first/last slices are often empty or cut
   through the skull base / vertex).
3. ``read_slice`` decodes just those K images (one frame of a multi-frame file,
   one mosaic file for its tiles), never the whole series.
4. ``preprocess`` normalises intensities with percentiles (robust to a few hot
   pixels, unlike min/max), optionally applies CLAHE, pads to square and
   resizes to a fixed size (128 by default: the contrast of a sequence is
   visible at that size and a 128² input keeps a forward pass at a few ms/slice
   on a CPU core).

Nothing here knows about classes or models.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from ..errors import BudgetError, SliceReadError
from ..pydicom_compat import decodable, frame_pixels
from ..series import Geometry
from .budget import check_mosaic, check_pixels, read_dataset
from .fast_header import read_tags, tag_set
from .geometry import slice_spacing
from .tags import PRIVATE_READ_TAGS, b_value, mosaic_images

_HEADER_TAGS = [
    "SOPClassUID",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "InstanceNumber",
    "AcquisitionNumber",
    "TemporalPositionIdentifier",
    "EchoNumbers",
    "ImageType",
    "NumberOfFrames",
    "SliceThickness",
    "SpacingBetweenSlices",
    "DiffusionBValue",
    "AcquisitionMatrix",
    "SamplesPerPixel",
    "BitsAllocated",
    "PixelData",  # only its presence; stop_before_pixels skips the value
    *PRIVATE_READ_TAGS,  # b-values and the mosaic count, with their private creators
]
_HEADER_TAG_SET = tag_set(_HEADER_TAGS)


@dataclass
class SliceOptions:
    k: int = 8
    size: int = 128
    central_fraction: float = 0.7
    low_percentile: float = 1.0
    high_percentile: float = 99.0
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tiles: int = 8

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> SliceOptions:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class ImageRef:
    """Where one 2-D image of the series lives, and where it lies."""

    path: Path
    frame: int | None = None  # index into a multi-frame file
    tile: int | None = None  # index of a mosaic tile
    n_tiles_side: int = 1  # mosaic tiles per row/column
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    rows: int = 0
    columns: int = 0
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    b_value: float | None = None
    time_key: tuple = ()  # orders repeated acquisitions at one location
    order: int = 0  # instance/frame order, the fallback when there is no geometry


@dataclass
class Stack:
    """One representative volume of a series, sorted along the slice normal."""

    images: list[ImageRef]
    geometry: Geometry
    groups: list[list[int]] = field(default_factory=list)  # indices of images per plane
    notes: list[str] = field(default_factory=list)
    repeats: list[ImageRef] = field(default_factory=list)  # every image at the central location, in order

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class SliceTransform:
    """How a (rows, columns) image became a (size, size) input: centred square pad, then resize."""

    rows: int
    columns: int
    size: int

    @property
    def side(self) -> int:
        return max(self.rows, self.columns)

    @property
    def pad(self) -> tuple[int, int]:
        return (self.side - self.rows) // 2, (self.side - self.columns) // 2

    def to_native(self, image: np.ndarray) -> np.ndarray:
        """Map a (size, size) map back onto the (rows, columns) image grid (bilinear)."""
        from scipy.ndimage import zoom

        square = zoom(image.astype(np.float32), self.side / image.shape[0], order=1, grid_mode=True, mode="nearest")
        square = square[: self.side, : self.side]
        top, left = self.pad
        return square[top : top + self.rows, left : left + self.columns]


@dataclass
class SampledSlices:
    images: np.ndarray  # (n, size, size) float32 in 0..1
    slice_indices: list[int]  # into stack.images
    stack: Stack
    transforms: list[SliceTransform]
    warnings: list[str] = field(default_factory=list)

    @property
    def orientations(self) -> list[tuple[float, ...] | None]:
        return [self.stack.images[i].orientation for i in self.slice_indices]


# ----------------------------------------------------------------------------- headers → stack


def _floats(value, n: int | None = None) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if (n is not None and len(out) != n) or not all(math.isfinite(v) for v in out):
        return None  # a NaN position or orientation is no geometry
    return out


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii", "ignore").strip("\x00 ").split("\\")[0]
        except Exception:
            return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _is_mosaic(ds) -> bool:
    image_type = [str(t).upper() for t in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def _mosaic_layout(ds) -> tuple[int, int]:
    """(number of images, tiles per side); from (0019,100a) or else the acquisition matrix."""
    rows = int(ds.Rows)
    n = mosaic_images(ds)
    if n is not None:
        return n, int(math.ceil(math.sqrt(n)))
    matrix = [int(v) for v in (ds.get("AcquisitionMatrix") or []) if int(v) > 0]
    tile = min(matrix) if matrix else 64
    side = max(1, rows // tile)
    return side * side, side


def _image_refs_of_file(path: Path, ds, order_base: int) -> list[ImageRef]:
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    spacing = _floats(ds.get("PixelSpacing"), 2) or (1.0, 1.0)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    b = b_value(ds)
    time_key = (
        _number(ds.get("TemporalPositionIdentifier")) or 0,
        _number(ds.get("AcquisitionNumber")) or 0,
        _number(ds.get("EchoNumbers")) or 0,
        _number(ds.get("InstanceNumber")) or 0,
    )
    n_frames = int(_number(ds.get("NumberOfFrames")) or 1)
    if n_frames > 1:
        return _enhanced_refs(path, order_base, n_frames, rows, cols, spacing, ipp, iop, b, time_key)
    if _is_mosaic(ds) and rows and cols:
        n, side = _mosaic_layout(ds)
        check_mosaic(path, n, rows, cols)
        tr, tc = rows // side, cols // side
        positions = _mosaic_positions(ipp, iop, rows, cols, tr, tc, spacing, ds, n)
        return [
            ImageRef(path, None, t, side, positions[t] if positions else None, iop, tr, tc, spacing, b,
                     time_key, order_base + t)
            for t in range(n)
        ]
    return [ImageRef(path, None, None, 1, ipp, iop, rows, cols, spacing, b, time_key, order_base)]


def _mosaic_positions(ipp, iop, rows, cols, tr, tc, spacing, ds, n):
    """Tile centres: the mosaic's IPP is the corner of the whole mosaic, shift it to the first tile.

    The slice normal's sign would need the Siemens CSA header; the cross product of
    the row and column directions is the usual default (as in dcm2niix without CSA).
    """
    if ipp is None or iop is None:
        return None
    r, c = np.array(iop[:3]), np.array(iop[3:])
    first = np.array(ipp) + r * spacing[1] * (cols - tc) / 2 + c * spacing[0] * (rows - tr) / 2
    normal = np.cross(r, c)
    step = _number(ds.get("SpacingBetweenSlices")) or _number(ds.get("SliceThickness")) or 1.0
    return [tuple(float(v) for v in first + normal * step * i) for i in range(n)]


def _enhanced_refs(path, order_base, n_frames, rows, cols, spacing, ipp, iop, b, time_key) -> list[ImageRef]:
    full = read_dataset(path, stop_before_pixels=True, force=True)
    shared = full.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = full.get("PerFrameFunctionalGroupsSequence") or []

    def pick(item, seq_name, attr):
        for source in (item, shared):
            if source is None or seq_name not in source:
                continue
            seq = source[seq_name].value
            if seq and attr in seq[0]:
                return seq[0][attr].value
        return None

    refs = []
    for i in range(n_frames):
        item = per_frame[i] if i < len(per_frame) else None
        f_ipp = _floats(pick(item, "PlanePositionSequence", "ImagePositionPatient"), 3) or ipp
        f_iop = _floats(pick(item, "PlaneOrientationSequence", "ImageOrientationPatient"), 6) or iop
        f_spacing = _floats(pick(item, "PixelMeasuresSequence", "PixelSpacing"), 2) or spacing
        f_b = _number(pick(item, "MRDiffusionSequence", "DiffusionBValue"))
        temporal = _number(pick(item, "FrameContentSequence", "TemporalPositionIndex")) or 0
        stack_pos = _number(pick(item, "FrameContentSequence", "InStackPositionNumber")) or 0
        refs.append(
            ImageRef(path, i, None, 1, f_ipp, f_iop, rows, cols, f_spacing, f_b if f_b is not None else b,
                     (temporal, *time_key[1:], i), order_base + (stack_pos or i))
        )
    return refs


def _plane_key(iop: tuple[float, ...] | None) -> tuple:
    return () if iop is None else tuple(round(v, 2) for v in iop)


def _normal(iop: tuple[float, ...]) -> np.ndarray:
    return np.cross(np.array(iop[:3]), np.array(iop[3:]))


def _by_location(refs: list[ImageRef]) -> dict[tuple, list[ImageRef]]:
    """Images grouped by (plane, distance along its normal); without geometry every image is its own."""
    by_location: dict[tuple, list[ImageRef]] = {}
    for ref in refs:
        if ref.position is not None and ref.orientation is not None:
            loc = round(float(np.dot(ref.position, _normal(ref.orientation))), 1)
            key = (_plane_key(ref.orientation), loc)
        else:
            key = ("order", ref.order, id(ref))
        by_location.setdefault(key, []).append(ref)
    return by_location


def _central_repeats(by_location: dict[tuple, list[ImageRef]]) -> list[ImageRef]:
    """The repetitions at the middle location of the plane with most locations, in acquisition order."""
    planes: dict[tuple, list[tuple]] = {}
    for key in by_location:
        if key[0] != "order":
            planes.setdefault(key[0], []).append(key)
    if not planes:
        return []
    locations = sorted(max(planes.values(), key=len), key=lambda k: k[1])
    group = by_location[locations[len(locations) // 2]]
    return sorted(group, key=lambda r: (r.time_key, r.order)) if len(group) > 1 else []


def _representative(refs: list[ImageRef], notes: list[str],
                    by_location: dict[tuple, list[ImageRef]]) -> list[ImageRef]:
    """One image per location: highest b-value, else the middle of the repetitions."""
    repeats = max(len(v) for v in by_location.values())
    if repeats == 1:
        return refs
    b_values = {r.b_value for r in refs if r.b_value is not None}
    if len(b_values) > 1:
        notes.append(f"diffusion: kept b={max(b_values):g} of b-values {sorted(b_values)}")
    else:
        notes.append(f"{repeats} images per location (time points/echoes): kept the middle one")
    out = []
    for group in by_location.values():
        if len({r.b_value for r in group}) > 1:
            top = max(r.b_value or 0.0 for r in group)
            group = [r for r in group if (r.b_value or 0.0) == top]
        group = sorted(group, key=lambda r: (r.time_key, r.order))
        out.append(group[len(group) // 2])
    return out


def build_stack(files: list[Path] | list[str]) -> Stack:
    """List the images of a series from headers only; raise SliceReadError when there are none."""
    refs: list[ImageRef] = []
    notes: list[str] = []
    for i, f in enumerate(files):
        path = Path(f)
        try:
            ds = read_tags(path, _HEADER_TAGS, _HEADER_TAG_SET)  # = budgeted read_dataset(specific_tags), faster
        except BudgetError as exc:
            notes.append(str(exc))
            continue
        except Exception as exc:  # one unreadable file must not stop the series
            notes.append(f"{path.name}: unreadable header ({exc.__class__.__name__}: {exc})")
            continue
        if not ds.get("Rows") or not ds.get("Columns"):
            notes.append(f"{path.name}: no image (no Rows/Columns)")
            continue
        try:
            check_pixels(path, ds)  # before any loop over frames or tiles
            refs.extend(_image_refs_of_file(path, ds, order_base=i * 100000))
        except BudgetError as exc:
            notes.append(str(exc))
        except Exception as exc:
            notes.append(f"{path.name}: cannot list frames ({exc.__class__.__name__}: {exc})")
    if not refs:
        detail = "; ".join(notes[:3])
        raise SliceReadError(f"no readable images among {len(files)} file(s)" + (f": {detail}" if detail else ""))
    by_location = _by_location(refs)
    refs = _representative(refs, notes, by_location)
    # group by plane, biggest group first, and sort each group along its normal
    planes: dict[tuple, list[ImageRef]] = {}
    for ref in refs:
        planes.setdefault(_plane_key(ref.orientation), []).append(ref)
    ordered: list[ImageRef] = []
    groups: list[list[int]] = []
    for key in sorted(planes, key=lambda k: -len(planes[k])):
        members = planes[key]
        if key and all(r.position is not None for r in members):
            n = _normal(members[0].orientation)
            members = sorted(members, key=lambda r: (float(np.dot(r.position, n)), r.order))
        else:
            members = sorted(members, key=lambda r: r.order)
        groups.append(list(range(len(ordered), len(ordered) + len(members))))
        ordered.extend(members)
    return Stack(ordered, _geometry(ordered), groups, notes, _central_repeats(by_location))


def _geometry(images: list[ImageRef]) -> Geometry:
    """Geometry of the stack; a unit grid when the headers carry none (e.g. stripped files)."""
    first = images[0]
    iop = first.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    positions = []
    for i, ref in enumerate(images):
        if ref.position is not None:
            positions.append(tuple(ref.position))
        else:
            positions.append((0.0, 0.0, float(i)))
    orientations = []
    for ref in images:
        o = ref.orientation or iop
        if o not in orientations:
            orientations.append(o)
    spacing_between = slice_spacing(positions, _normal(iop)) if first.orientation is not None else None
    return Geometry(
        rows=first.rows,
        columns=first.columns,
        pixel_spacing=first.pixel_spacing,
        orientations=orientations,
        positions=positions,
        spacing_between_slices=spacing_between,
    )


# ----------------------------------------------------------------------------- sampling


def sample_indices(stack: Stack, k: int, central_fraction: float = 0.7) -> list[int]:
    """K slice indices, spread over the central part of each plane group (proportional to group size)."""
    groups = stack.groups or [list(range(len(stack)))]
    total = sum(len(g) for g in groups)
    chosen: list[int] = []
    for g in groups:
        share = max(1, round(k * len(g) / total)) if len(groups) > 1 else k
        chosen.extend(g[i] for i in _central(len(g), share, central_fraction))
    return sorted(set(chosen))[: max(k, len(groups))]


def _central(n: int, k: int, fraction: float) -> list[int]:
    if n <= k:
        return list(range(n))
    lo = int(math.floor(n * (1 - fraction) / 2))
    hi = max(lo, int(math.ceil(n * (1 + fraction) / 2)) - 1)
    if hi - lo + 1 < k:  # too few central slices: widen symmetrically
        lo, hi = max(0, (n - k) // 2), min(n - 1, (n - k) // 2 + k - 1)
    return sorted({int(round(v)) for v in np.linspace(lo, hi, k)})


# ----------------------------------------------------------------------------- pixels


def read_slice(ref: ImageRef, cache: dict | None = None) -> np.ndarray:
    """Decode one image as float32 (rows, columns); greyscale, MONOCHROME1 inverted."""
    if ref.frame is not None:
        ds = read_dataset(ref.path, stop_before_pixels=True, specific_tags=["PhotometricInterpretation"])
        pixels = frame_pixels(ref.path, ref.frame, cache)  # pydicom 3 decodes one frame; 2.4 all, once per file
    else:
        key = str(ref.path)
        if cache is not None and key in cache:
            ds, pixels = cache[key]
        else:
            ds = decodable(read_dataset(ref.path, force=True))  # a bare data set has no transfer syntax
            check_pixels(ref.path, ds)
            pixels = ds.pixel_array
            if cache is not None:
                cache[key] = (ds, pixels)
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] in (3, 4):  # colour (e.g. colour FA): luminance
        image = image[..., :3].mean(axis=-1)
    if image.ndim != 2:
        raise ValueError(f"unexpected pixel array shape {image.shape}")
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = image.max() - image
    if ref.tile is not None:
        tr, tc = image.shape[0] // ref.n_tiles_side, image.shape[1] // ref.n_tiles_side
        r, c = divmod(ref.tile, ref.n_tiles_side)
        image = image[r * tr : (r + 1) * tr, c * tc : (c + 1) * tc]
    return image


def read_repeats(refs: list[ImageRef], limit: int = 48) -> list[np.ndarray]:
    """The first ``limit`` of the repetitions at one location (``Stack.repeats``) as float32 images; an
    image that cannot be read ends the run there (the measures rely on the order)."""
    images: list[np.ndarray] = []
    cache: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ref in refs[:limit]:
            try:
                images.append(read_slice(ref, cache))
            except Exception:  # noqa: BLE001 - a gap breaks the order: stop there
                break
    return [i for i in images if i.shape == images[0].shape] if images else []


def normalise(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the [low, high] percentile range to [0, 1]; a flat image becomes zeros."""
    image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(image, [low, high])
    if not np.isfinite(hi - lo) or hi - lo < 1e-6:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def clahe(image: np.ndarray, tiles: int = 8, clip: float = 2.0, bins: int = 256) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a [0, 1] image (bilinear between tiles)."""
    h, w = image.shape
    ty, tx = max(1, min(tiles, h // 4)), max(1, min(tiles, w // 4))
    q = np.clip((image * (bins - 1)).round().astype(np.int64), 0, bins - 1)
    ys = np.linspace(0, h, ty + 1).astype(int)
    xs = np.linspace(0, w, tx + 1).astype(int)
    maps = np.empty((ty, tx, bins), dtype=np.float32)
    for i in range(ty):
        for j in range(tx):
            block = q[ys[i] : ys[i + 1], xs[j] : xs[j + 1]]
            hist = np.bincount(block.ravel(), minlength=bins).astype(np.float32)
            limit = max(1.0, clip * block.size / bins)
            excess = np.maximum(hist - limit, 0).sum()
            hist = np.minimum(hist, limit) + excess / bins
            cdf = np.cumsum(hist)
            maps[i, j] = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1e-6)
    # tile centres, then bilinear weights per pixel
    cy = (ys[:-1] + ys[1:]) / 2.0
    cx = (xs[:-1] + xs[1:]) / 2.0
    yi = np.clip(np.searchsorted(cy, np.arange(h)) - 1, 0, ty - 1)
    xi = np.clip(np.searchsorted(cx, np.arange(w)) - 1, 0, tx - 1)
    yj, xj = np.minimum(yi + 1, ty - 1), np.minimum(xi + 1, tx - 1)
    wy = np.clip((np.arange(h) - cy[yi]) / np.maximum(cy[yj] - cy[yi], 1e-6), 0, 1)[:, None]
    wx = np.clip((np.arange(w) - cx[xi]) / np.maximum(cx[xj] - cx[xi], 1e-6), 0, 1)[None, :]
    a = maps[yi[:, None], xi[None, :], q]
    b = maps[yi[:, None], xj[None, :], q]
    c = maps[yj[:, None], xi[None, :], q]
    d = maps[yj[:, None], xj[None, :], q]
    return ((1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * c + wx * d)).astype(np.float32)


def resize_square(image: np.ndarray, size: int) -> tuple[np.ndarray, SliceTransform]:
    """Centre-pad to a square, then resize to (size, size) with antialiasing."""
    import torch
    import torch.nn.functional as F

    rows, cols = image.shape
    t = SliceTransform(rows, cols, size)
    top, left = t.pad
    square = np.zeros((t.side, t.side), dtype=np.float32)
    square[top : top + rows, left : left + cols] = image
    if t.side == size:
        return square, t
    x = torch.from_numpy(square)[None, None]
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=t.side > size, align_corners=False)
    return y[0, 0].numpy(), t


def preprocess(image: np.ndarray, options: SliceOptions) -> tuple[np.ndarray, SliceTransform]:
    image = normalise(image, options.low_percentile, options.high_percentile)
    if options.clahe:
        image = clahe(image, options.clahe_tiles, options.clahe_clip)
    out, t = resize_square(image, options.size)
    return np.clip(out, 0.0, 1.0).astype(np.float32), t


def sample_series(files: list[Path] | list[str], options: SliceOptions | None = None,
                  stack: Stack | None = None) -> SampledSlices:
    """Headers → stack → K slices read and preprocessed. Raises SliceReadError when no slice can be read."""
    options = options or SliceOptions()
    stack = stack or build_stack(files)
    indices = sample_indices(stack, options.k, options.central_fraction)
    images, kept, transforms, messages = [], [], [], list(stack.notes)
    cache: dict = {}
    for i in indices:
        ref = stack.images[i]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = read_slice(ref, cache)
            img, t = preprocess(raw, options)
        except Exception as exc:  # odd pixel data: skip the slice, say why
            messages.append(f"{ref.path.name}: pixels unreadable ({exc.__class__.__name__}: {exc})")
            continue
        images.append(img)
        kept.append(i)
        transforms.append(t)
    if not images:
        detail = "; ".join(messages[-3:])
        raise SliceReadError(f"no slice could be decoded from {len(indices)} sampled image(s): {detail}")
    return SampledSlices(np.stack(images), kept, stack, transforms, messages)
