"""One representative image of a series, for contact sheets and tables.

The middle image of the series' representative volume (see ``slices.build_stack``:
single-frame files, frames of enhanced multi-frame objects, mosaic tiles; one b-value
or time point per location), decoded alone. Failures give ``(None, why)``: a report
shows the reason instead of stopping.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..dicom.slices import build_stack, read_slice


def middle_image(series_files: Sequence[str | Path], attempts: int = 5) -> tuple[np.ndarray | None, str]:
    """(2-D float32 image, "") for the middle image of a series, or (None, the reason).

    When the middle image cannot be decoded (a truncated file, say), its neighbours
    are tried, nearest first, up to ``attempts`` images.
    """
    if not series_files:
        return None, "no files"
    try:
        stack = build_stack([Path(f) for f in series_files])
    except Exception as exc:  # any header problem: a thumbnail is never worth a crash
        return None, f"cannot read {Path(series_files[0]).parent}: {type(exc).__name__}: {exc}"
    group = stack.groups[0] if stack.groups else list(range(len(stack.images)))
    middle = len(group) // 2
    order = sorted(range(len(group)), key=lambda i: (abs(i - middle), i))[:attempts]
    problem = ""
    for i in order:
        ref = stack.images[group[i]]
        try:
            image = read_slice(ref)
        except Exception as exc:
            problem = problem or f"cannot read an image of {ref.path.parent}: {type(exc).__name__}: {exc}"
            continue
        if image.size and np.isfinite(image).any():
            return image, ""
        problem = problem or f"{ref.path.name}: empty image"
    # the stack keeps one image per location; a broken one may hide a readable twin
    tried = {stack.images[group[i]].path for i in order}
    for path in _middle_out([Path(f) for f in series_files if Path(f) not in tried])[:attempts]:
        image = _whole_file_image(path)
        if image is not None:
            return image, ""
    return None, problem


def _middle_out(items: list) -> list:
    middle = len(items) // 2
    return [items[i] for i in sorted(range(len(items)), key=lambda i: (abs(i - middle), i))]


def _whole_file_image(path: Path) -> np.ndarray | None:
    from ..dicom.budget import check_pixels, read_dataset

    try:
        ds = read_dataset(path)
        check_pixels(path, ds)  # before decoding: a declared 65535² image must not be allocated
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception:
        return None
    while pixels.ndim > 2 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[len(pixels) // 2]  # middle frame
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=-1)
    return pixels if pixels.ndim == 2 and pixels.size and np.isfinite(pixels).any() else None


def window(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """Percentile window to [0, 1] (robust to hot pixels); a flat image gives zeros."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(image, [low, high])
    if hi - lo < 1e-6:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(array, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, Image.BILINEAR), dtype=np.float32)


def render_png(
    image: np.ndarray,
    heatmap: np.ndarray | None = None,
    max_size: int = 192,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> bytes:
    """PNG bytes of a windowed greyscale image, with a heat map blended over it when given.

    The heat map (values 0..1, any resolution) is resized to the image; where it is
    weak the grey image shows through, so the anatomy stays readable.
    """
    from PIL import Image

    grey = window(image)
    h, w = grey.shape
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = _resize(grey, size)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if heatmap is not None and np.asarray(heatmap).size:
        import matplotlib

        heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
        heat = np.clip(_resize(heat, size), 0.0, 1.0)
        colours = matplotlib.colormaps[colormap](heat)[..., :3]
        weight = (alpha * heat)[..., None]
        rgb = (1 - weight) * rgb + weight * colours
    pixels = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
