"""Where the CNN looked: Grad-CAM (and Grad-CAM++) for any head and class, on the series' voxel grid.

For each sampled slice the class score's gradient is taken at the last conv
block (8×8 at a 128² input), the weighted activation map is upsampled to the
network input, undone through the slice transform (resize back, remove the
square padding) and placed on that slice of the series grid. Slices that were
not sampled stay zero rather than interpolated: the network never saw them, and
a map that pretends otherwise would mislead. Maps are scaled by one maximum over
the series, so a faint slice stays faint next to a strong one.

``write_gradcam`` writes NRRD (LPS space directions/origin, as Slicer reads
them) or NIfTI (RAS affine), plus a PNG of the sampled slices with the map
overlaid. Multi-plane (MIXED) series get one file per plane.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dicom.geometry import ijk_to_lps
from ..dicom.slices import SampledSlices, sample_series
from ..series import Geometry
from .aggregate import mean_log_prob
from .cnn import CnnModel, head_classes

METHODS = ("gradcam", "gradcam++")


@dataclass
class GradCamResult:
    heatmap: np.ndarray  # (n_slices, rows, cols) float32 0..1 on the stack grid; zeros where not sampled
    slice_indices: list[int]  # the sampled slices (indices into the heatmap's first axis)
    geometry: Geometry  # the grid the heatmap lies on (positions sorted along the normal, LPS mm)
    head: str
    target: str
    method: str = "gradcam"
    slice_maps: np.ndarray | None = None  # (k, S, S) at the network input
    images: np.ndarray | None = None  # (k, S, S) the network's inputs, for overlays
    groups: list[list[int]] = field(default_factory=list)  # slice indices per plane
    slice_orientations: list[tuple[float, ...]] = field(default_factory=list)  # IOP of every grid slice


def _cam(acts: torch.Tensor, grads: torch.Tensor, method: str) -> torch.Tensor:
    if method == "gradcam++":
        g2, g3 = grads**2, grads**3
        denom = 2 * g2 + (acts.sum(dim=(2, 3), keepdim=True) * g3)
        alpha = g2 / torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
        weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
    else:
        weights = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * acts).sum(dim=1))  # (k, h, w)


def slice_cams(model: CnnModel, images: np.ndarray, head: str, target_index: int,
               method: str = "gradcam") -> np.ndarray:
    """(k, S, S) inputs → (k, S, S) raw (unnormalised) maps for one head/class."""
    if method not in METHODS:
        raise ValueError(f"unknown Grad-CAM method {method!r}; use one of {METHODS}")
    net = model.net.eval()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    kept = model.features_for(images) if hasattr(model, "features_for") else None  # the prediction's pass
    with torch.enable_grad():
        acts = (kept if kept is not None else net.features(x)).detach().requires_grad_(True)
        out = net.heads(acts)
        if head not in out or head == "embedding":
            raise ValueError(f"unknown head {head!r}; heads: {', '.join(head_classes(model.config))}")
        score = out[head][:, target_index].sum()
        (grads,) = torch.autograd.grad(score, acts)
    cam = _cam(acts.detach(), grads, method)
    cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam.numpy().astype(np.float32)


def gradcam(model: CnnModel, sampled: SampledSlices, head: str = "sequence", target: str | None = None,
            method: str = "gradcam") -> GradCamResult:
    """Grad-CAM of ``head``/``target`` (default: the series' predicted class of that head) on the series grid."""
    classes = head_classes(model.config)
    if head not in classes:
        raise ValueError(f"unknown head {head!r}; heads: {', '.join(classes)}")
    if target is None:  # the series' prediction for that head (for orientation: the top plane, never MIXED)
        probs = model.infer(sampled.images, keep_features=True)  # and the maps below reuse its forward pass
        if head == "sequence":
            target = model.output_from_slices(probs).sequence.label
        else:
            target = classes[head][int(mean_log_prob(probs[head]).argmax())]
    if target not in classes[head]:
        raise ValueError(f"unknown class {target!r} for head {head!r}; classes: {', '.join(classes[head])}")
    maps = slice_cams(model, sampled.images, head, classes[head].index(target), method)
    top = float(maps.max())
    maps = maps / top if top > 0 else maps
    g = sampled.stack.geometry
    heat = np.zeros((len(g.positions), g.rows, g.columns), dtype=np.float32)
    for m, i, t in zip(maps, sampled.slice_indices, sampled.transforms):
        native = t.to_native(m)
        if native.shape == heat.shape[1:]:
            heat[i] = np.clip(native, 0, 1)
        else:  # a slice whose matrix differs from the first one's: resample onto the grid
            from scipy.ndimage import zoom

            z = zoom(native, (heat.shape[1] / native.shape[0], heat.shape[2] / native.shape[1]), order=1)
            heat[i] = np.clip(z[: heat.shape[1], : heat.shape[2]], 0, 1)
    orientations = [tuple(im.orientation or g.orientations[0]) for im in sampled.stack.images]
    return GradCamResult(heat, list(sampled.slice_indices), g, head, target, method, maps, sampled.images,
                         [list(gr) for gr in sampled.stack.groups], orientations)


def gradcam_series(model: CnnModel, series, head: str = "sequence", target: str | None = None,
                   method: str = "gradcam") -> GradCamResult:
    """Sample a Series (or a list of files) and compute its Grad-CAM."""
    files = getattr(series, "files", series)
    sampled = model.take_sampled(files) if hasattr(model, "take_sampled") else None
    return gradcam(model, sampled or sample_series(files, model.config.options), head, target, method)


# ----------------------------------------------------------------------------- writers


def _affine_lps(geometry: Geometry, indices: list[int]) -> np.ndarray:
    """4×4 (column i, row j, slice k) → LPS mm for the slices ``indices`` of the grid (one plane)."""
    return ijk_to_lps(replace(geometry, orientations=geometry.orientations[:1],
                              positions=[geometry.positions[i] for i in indices]))


NRRD_LEVELS = 255  # heat values are stored in steps of 1/255: finer than any colour map shows, and it compresses


def write_nrrd(path: str | Path, volume: np.ndarray, affine_lps: np.ndarray) -> Path:
    """volume (slices, rows, cols) in [0, 1] → gzip NRRD (float32) with LPS space directions (Slicer's convention).

    Written compressed: a raw float32 map is as large as the series' pixels (272 MB for 151 MB of DICOM); the
    maps are smooth (upsampled from the CNN's 8×8 grid) and, rounded to 1/255, gzip to a small fraction.
    """
    path = Path(path)
    k, j, i = volume.shape
    dirs = " ".join("(" + ",".join(f"{v:.6g}" for v in affine_lps[:3, c]) + ")" for c in range(3))
    origin = "(" + ",".join(f"{v:.6g}" for v in affine_lps[:3, 3]) + ")"
    header = (
        "NRRD0004\n# SeriesClassifier Grad-CAM\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {i} {j} {k}\nspace directions: {dirs}\nkinds: domain domain domain\n"
        f"endian: little\nencoding: gzip\nspace origin: {origin}\n\n"
    )
    # gzip (Slicer and every NRRD reader read it): a map is zero but for the sampled slices, ~20x smaller;
    # in steps of 1/255 the sampled slices compress too.
    values = np.round(np.asarray(volume, dtype=np.float32) * NRRD_LEVELS) / NRRD_LEVELS
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(gzip_slices(values))
    return path


def gzip_slices(volume: np.ndarray) -> bytes:
    """The volume's little-endian float32 bytes as one gzip member, compressed slice by slice.

    Each slice ends with a full flush, after which the compressor starts afresh on a byte boundary, so an
    all-zero slice compresses to the same bytes wherever it lies: it is compressed once and repeated. A
    176-slice map with 8 sampled slices then costs ~10 compressions instead of 176 (gzip.compress took
    most of a 3-D series' Grad-CAM time). Level 1: a heavier level costs more time than it saves bytes.
    """
    data = np.ascontiguousarray(volume, dtype="<f4").reshape(len(volume), -1) if len(volume) else np.zeros((0, 0))
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate inside our own gzip header/trailer
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]  # gzip, deflate, no name, mtime 0, unknown OS
    crc, zero, zero_block = 0, bytes(data.shape[1] * 4), None
    for row in data:
        raw = row.tobytes()
        crc = zlib.crc32(raw, crc)
        if raw == zero:  # bytes, not values: -0.0 stays -0.0
            if zero_block is None:
                zero_block = compressor.compress(raw) + compressor.flush(zlib.Z_FULL_FLUSH)
            parts.append(zero_block)
        else:
            parts.append(compressor.compress(raw) + compressor.flush(zlib.Z_FULL_FLUSH))
    parts.append(compressor.flush())
    parts.append(struct.pack("<II", crc & 0xFFFFFFFF, (data.size * 4) & 0xFFFFFFFF))
    return b"".join(parts)


def read_nrrd(path: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """Read back what write_nrrd wrote (float32, gzip or raw): (volume (slices, rows, cols), header fields)."""
    data = Path(path).read_bytes()
    head, _, body = data.partition(b"\n\n")
    fields = {}
    for line in head.decode("ascii").splitlines()[1:]:
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    i, j, k = (int(v) for v in fields["sizes"].split())
    if fields.get("encoding") in ("gzip", "gz"):
        body = gzip.decompress(body)
    return np.frombuffer(body, dtype="<f4").reshape(k, j, i).copy(), fields


def write_nifti(path: str | Path, volume: np.ndarray, affine_lps: np.ndarray) -> Path:
    import nibabel as nib

    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    img = nib.Nifti1Image(np.transpose(volume, (2, 1, 0)).astype(np.float32), ras)
    nib.save(img, str(path))
    return Path(path)


def overlay_grid(result: GradCamResult, cols: int = 4) -> np.ndarray:
    """The sampled slices side by side (up to ``cols`` a row), each with its map over it: (H, W, 3) uint8.

    The blend the matplotlib figure used: jet at 40% where the map is above 0.05, grey elsewhere.
    """
    from matplotlib import colormaps  # the colour table only: no pyplot, no figure layout

    k = len(result.slice_maps)
    cols = min(k, cols)
    rows = int(np.ceil(k / cols))
    size = max(max(img.shape) for img in result.images)
    grid = np.zeros((rows * size, cols * size, 3), dtype=np.float32)
    jet = colormaps["jet"]
    for n, (img, cam) in enumerate(zip(result.images, result.slice_maps)):
        grey = np.clip(np.asarray(img, dtype=np.float32), 0, 1)[..., None].repeat(3, axis=-1)
        alpha = (0.4 * (cam > 0.05))[..., None]
        tile = (1 - alpha) * grey + alpha * jet(np.clip(cam, 0, 1))[..., :3]
        r, c = divmod(n, cols)
        grid[r * size : r * size + tile.shape[0], c * size : c * size + tile.shape[1]] = tile
    return (grid * 255 + 0.5).astype(np.uint8)


def write_overlay_png(path: str | Path, result: GradCamResult, title: str = "") -> Path:
    """The sampled slices with their maps as one PNG; the title and slice numbers go in its text chunks.

    Drawn with numpy rather than a matplotlib figure: a figure cost ~0.5 s per series, more than the
    network and the map together.
    """
    from matplotlib.image import imsave

    slices = ", ".join(str(i) for i in result.slice_indices)
    imsave(path, overlay_grid(result), format="png", pil_kwargs={"compress_level": 1},
           metadata={"Title": title or f"Grad-CAM {result.head}={result.target}",
                     "Description": f"sampled slices (row by row): {slices}"})
    return Path(path)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)[:80]


def write_gradcam(result: GradCamResult, series, out_dir: str | Path, fmt: str = "nrrd",
                  png: bool = True) -> list[Path]:
    """Write the heat map on the series grid (NRRD or NIfTI; one file per plane) + a PNG overlay."""
    if fmt not in ("nrrd", "nifti"):
        raise ValueError(f"unknown Grad-CAM format {fmt!r}; use nrrd or nifti")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    number = getattr(series, "series_number", None)
    uid = getattr(series, "series_uid", "") or "series"
    stem = _safe(f"{number:03d}_" if isinstance(number, int) else "") + _safe(uid) + f"_{result.head}_{result.target}"
    groups = result.groups or [list(range(len(result.geometry.positions)))]
    written = []
    for g, indices in enumerate(groups):
        suffix = f"_plane{g + 1}" if len(groups) > 1 else ""
        volume = result.heatmap[indices]
        geometry = result.geometry
        if len(groups) > 1:
            first = indices[0]
            iop = _plane_orientation(result, first)
            geometry = Geometry(geometry.rows, geometry.columns, geometry.pixel_spacing, [iop], geometry.positions,
                                geometry.slice_thickness, geometry.spacing_between_slices)
        affine = _affine_lps(geometry, indices)
        if fmt == "nrrd":
            written.append(write_nrrd(out_dir / f"{stem}{suffix}.nrrd", volume, affine))
        else:
            written.append(write_nifti(out_dir / f"{stem}{suffix}.nii.gz", volume, affine))
    if png and result.slice_maps is not None:
        desc = getattr(series, "series_description", "")
        written.append(write_overlay_png(out_dir / f"{stem}.png", result,
                                         f"{desc} — Grad-CAM {result.head}={result.target}".strip(" —")))
    return written


def _plane_orientation(result: GradCamResult, index: int) -> tuple[float, ...]:
    if index < len(result.slice_orientations):
        return tuple(result.slice_orientations[index])
    return tuple(result.geometry.orientations[0])
