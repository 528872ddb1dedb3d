"""Render a ``SeriesSpec`` on a ``Phantom``: slice geometry, resampling, contrast, artefacts.

Flow for one series:
1. geometry: the slice stack (or planes of a localizer, or projection planes of a MIP)
   in scanner LPS, centred on the brain (or on the anatomy the sequence targets);
2. a signal volume on the phantom grid from the sequence's signal equation
   (``physics``) mixed over tissue fractions and the subject's overlays;
3. sampling: trilinear at sub-slice positions through the slice thickness (partial
   volume) and, when pixels are larger than the grid, at sub-pixel positions that are
   box-averaged; EPI adds a geometric shift along the phase-encode direction;
4. scanner effects in image space: receive bias field, Rician noise, N/2 ghost,
   single-shot blur; and a scanner-like intensity scale.

Only physics and geometry fields of the spec are read, never naming fields, so the
pixels do not depend on how a series is described. ``spec.extra`` keys read here:

- ``mip_axis``: MRA_MIP projection plane ("AXIAL", "CORONAL", "SAGITTAL"), default the
  spec's orientation; with orientation MIXED the MIPs rotate 180° about the S axis.
- ``mip_span_deg``: total rotation span of a MIP series (default 24°, so every frame stays
  within the straight-plane threshold; 180 for MIXED).
- ``swi_part``: not needed (the sequence code decides), accepted for symmetry.
- ``diffusion_map``: DIFFUSION_DERIVED map, "FA" (default) or "EADC" (exponential ADC).
- ``asl_map``: PERFUSION_ASL: "CBF" gives one CBF-like volume (also when ``spec.derived``),
  "M0" one proton-density reference volume, otherwise ``n_temporal`` volumes alternating
  control/label.
- ``fieldmap_part``: FIELDMAP "magnitude" (default; two echoes, per-frame echo numbers),
  "phasediff" (signed), "b0map" (signed field map in Hz, GE/Philips) or "sepi" (one spin-echo
  EPI volume, half of a reverse phase-encoding pair).
- ``n_echoes`` / ``echo_times``: PD (PD + T2 dual echo) and T2STAR_GRE (multi-echo GRE) with more
  than one echo: one volume per echo, per-frame echo numbers.
- ``other_kind``: OTHER "T1MAP", "MTR", "CSI", "MT" (default: chosen by ``rng``) or "PC" (phase contrast:
  ``pc_part`` "magnitude" or "phase" (signed velocity), ``venc`` cm/s, ``venc_dir`` "in" (through-plane), "rl",
  "ap" or "fh", ``n_temporal`` cardiac phases of a cine (one volume each, per-frame temporal indices)).
- ``oblique_base``: OBLIQUE base plane before tilting ("AXIAL" default, "CORONAL", "SAGITTAL").
- ``minip_slab_mm``: SWI_MINIP projection slab thickness (default ``slice_thickness``).
- ``noise_scale``: a site's extra noise (> 1 = noisier).
- ``echo_spacing`` (ms, MPRAGE readout) and ``echo_time_2`` (ms, FIELDMAP second echo).

Everything else comes from ``rng``: the same spec, phantom and seed give identical pixels.
About 8 % of non-EPI series get head-motion ghosts (``MOTION_RATE``).

Nothing a classifier could use as a shortcut is keyed to the sequence (docs/CNN_SHORTCUTS.md):
the SNR (hence the noise floor) of a series is drawn from one wide range whatever the
sequence; relaxation parameters get a per-series jitter (tissue orderings stay, magnitudes
move); and ``site_effects`` applies, at the same rates to every kind of series, what real
scanners and PACS do to images: zero padding bars (``BAR_RATE``), background suppression
outside the head (``BACKGROUND_RATE``), reconstruction smoothing / zero-filled interpolation
(``SMOOTH_RATE``) and an off-centre field of view that cuts the head (``OFFCENTRE_RATE``).
Quantitative maps (ADC, FA, eADC, T1 map, MTR, CBF) zero their background only at random
(``MAP_MASK_RATE``), as some vendors do and others do not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from . import physics as ph
from .anatomy import _GRID_MIN, _GRID_SHAPE, GRID_SPACING, Phantom
from .spec import RenderedSeries, SeriesSpec

PLANES = {
    # row direction, column direction (DICOM IOP) in LPS
    "AXIAL": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
    "SAGITTAL": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),
    "CORONAL": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
}
# site effects, the same for every sequence (see the module docstring)
BAR_RATE = 0.35  # zero padding bars top/bottom (or left/right) inside the image
BACKGROUND_RATE = 0.2  # everything outside the head set to zero
SMOOTH_RATE = 0.35  # in-plane reconstruction filter / zero-filled interpolation
OFFCENTRE_RATE = 0.2  # field of view shifted in-plane so the head touches or leaves the edge
MAP_MASK_RATE = 0.5  # quantitative maps with a zeroed background
SNR_RANGE = (6.0, 80.0)  # log-uniform, every sequence alike
CONTRAST_JITTER = 0.1  # per-series log-normal jitter of PD, T1, T2, T2* common to all tissues
TISSUE_JITTER = CONTRAST_JITTER / 3  # and each tissue's own on top
EPI_SEQUENCES = {"DWI", "ADC", "DIFFUSION_DERIVED", "PERFUSION_DSC", "FMRI_BOLD"}
SPIN_ECHO_SEQUENCES = {"T1_2D_PRE", "T1_2D_POST", "T2_2D", "T2_3D", "T2_HASTE", "FLAIR_2D", "FLAIR_3D", "PD"}
# anchors for stacks that cover a region rather than the whole brain (MNI RAS mm)
_ANCHORS = {"TOF_MRA": (0, -8, -6), "MRA_MIP": (0, -8, -6), "CISS": (0, -28, -30)}


# ---------------------------------------------------------------- geometry


@dataclass
class Plane:
    """One image plane: first pixel centre (IPP), unit row/column directions, spacing (row, col)."""

    origin: np.ndarray
    row: np.ndarray
    col: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    @property
    def center(self) -> np.ndarray:
        r, c = self.shape
        return self.origin + (c - 1) / 2 * self.spacing[1] * self.row + (r - 1) / 2 * self.spacing[0] * self.col


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def angle_from_nearest_axis(normal: np.ndarray) -> float:
    n = np.abs(normal) / np.linalg.norm(normal)
    return float(np.degrees(np.arccos(np.clip(n.max(), -1, 1))))


def _tilted(base: str, tilt: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    row0, col0 = PLANES[base]
    r = _rotation(row0, tilt[0]) @ _rotation(col0, tilt[1])
    return r @ row0, r @ col0


def _plane_directions(orientation: str, tilt: tuple[float, float], rng: np.random.Generator, base: str):
    """Row/column directions honouring the spec's tilt, kept inside the vocabulary's bands.

    Straight planes stay < 15° from their axis, oblique ones 25–45° from every axis, so the
    label is unambiguous with the 20° threshold.
    """
    t = (float(tilt[0]), float(tilt[1]))
    if orientation in PLANES:
        row, col = _tilted(orientation, t)
        ang = angle_from_nearest_axis(np.cross(row, col))
        if ang > 14.0:
            s = 12.0 / ang
            row, col = _tilted(orientation, (t[0] * s, t[1] * s))
        return row, col
    # oblique
    row, col = _tilted(base, t)
    for _ in range(50):
        if 25.0 <= angle_from_nearest_axis(np.cross(row, col)) <= 45.0:
            return row, col
        total = rng.uniform(27, 42)
        psi = rng.uniform(0, 2 * np.pi)
        t = (total * np.cos(psi), total * np.sin(psi))
        row, col = _tilted(base, t)
    return _tilted(base, (35.0, 0.0))


def _stack(center: np.ndarray, row: np.ndarray, col: np.ndarray, spec: SeriesSpec, n: int) -> list[Plane]:
    normal = np.cross(row, col)
    rows, cols = spec.rows, spec.columns
    ps = (float(spec.pixel_spacing[0]), float(spec.pixel_spacing[1]))
    planes = []
    for k in range(n):
        c = center + (k - (n - 1) / 2) * spec.slice_spacing * normal
        origin = c - (cols - 1) / 2 * ps[1] * row - (rows - 1) / 2 * ps[0] * col
        planes.append(Plane(origin, row.copy(), col.copy(), ps, (rows, cols)))
    return planes


def _anchor_world(phantom: Phantom, sequence: str) -> np.ndarray:
    if sequence in _ANCHORS:
        x, y, z = _ANCHORS[sequence]
        return phantom.template_to_world(np.array([[-x, -y, z]], float))[0]
    return phantom.brain_center.copy()


def slice_geometry(spec: SeriesSpec, phantom: Phantom, rng: np.random.Generator) -> list[Plane]:
    """The planes of a series in acquisition order (MIXED: one short stack per plane).

    A derived series and its source (``grid_seed``, set by generate.py from protocols' ``grid_of``) lie on
    the same planes, drawn from one generator they share; the series' own draws are still made, so the rest
    of its random stream (and every other series) is as before.
    """
    planes = _slice_geometry(spec, phantom, rng, spec.sequence)
    seed = spec.extra.get("grid_seed")
    if seed is None:
        return planes
    return _slice_geometry(spec, phantom, np.random.default_rng(seed), spec.extra.get("grid_sequence", spec.sequence))


def _slice_geometry(spec: SeriesSpec, phantom: Phantom, rng: np.random.Generator, anchor: str) -> list[Plane]:
    center = _anchor_world(phantom, anchor) + rng.normal(0, [2.0, 3.0, 3.0])
    if spec.orientation == "MIXED":
        planes: list[Plane] = []
        n_each = np.full(3, max(spec.n_slices // 3, 1))
        n_each[: max(spec.n_slices - int(n_each.sum()), 0)] += 1
        for base, n in zip(("SAGITTAL", "CORONAL", "AXIAL"), n_each):
            row, col = _plane_directions(base, spec.tilt_degrees, rng, base)
            planes += _stack(center, row, col, spec, int(n))
        return planes
    base = spec.orientation if spec.orientation in PLANES else str(spec.extra.get("oblique_base", "AXIAL"))
    if base not in PLANES:
        base = "AXIAL"
    row, col = _plane_directions(spec.orientation, spec.tilt_degrees, rng, base)
    return _stack(center, row, col, spec, spec.n_slices)


# ---------------------------------------------------------------- signal volumes on the phantom grid


@dataclass
class _Context:
    spec: SeriesSpec
    phantom: Phantom
    rng: np.random.Generator
    planes: list[Plane]
    field_strength: float
    epi: bool = False
    bias: dict = field(default_factory=dict)

    def params(self, contrast: bool | None = None, enhancing: dict | None = None) -> ph.TissueParams:
        c = self.spec.contrast if contrast is None else contrast
        p = self.phantom.params
        tp = ph.tissue_params(
            self.field_strength, c, p.get("gd_dose", 1.0), enhancing, p.get("t1_scale", 1.0), p.get("t2_scale", 1.0)
        )
        if CONTRAST_JITTER > 0:
            # one draw per series: the magnitudes move, the orderings a sequence implies mostly stay
            if "jitter" not in self.bias:
                common = self.rng.normal(0, CONTRAST_JITTER, (4, 1))  # all tissues together: orderings stay
                n_head = len(tp.names) - len(ph.BODY_TISSUES)
                sigma = p.get("tissue_jitter", TISSUE_JITTER)  # a corpus may ask for more (cnn_corpus)
                own = self.rng.normal(0, sigma, (4, n_head))
                # the body tissues draw from a generator seeded by those draws: a head series keeps the random
                # stream it had before they existed (documented corpora stay reproducible from their seeds)
                body = _seeded_by(own, 2**20)
                own = np.concatenate([own, body.normal(0, sigma, (4, len(ph.BODY_TISSUES)))], axis=1)
                self.bias["jitter"] = np.exp(common + own)
                if p.get("fat_gain") and self.spec.sequence not in SPIN_ECHO_SEQUENCES:
                    self.bias["jitter"][0] *= _fat_gain(tp.names, p["fat_gain"], own)
            j = self.bias["jitter"]
            tp = dataclasses.replace(tp, pd=tp.pd * j[0], t1=tp.t1 * j[1], t2=tp.t2 * j[2], t2s=tp.t2s * j[3])
        return tp


def _seeded_by(draws: np.ndarray, scale: float) -> np.random.Generator:
    """A generator seeded by values already drawn: an optional effect draws from it and leaves the series'
    own random stream as it was without the effect."""
    return np.random.default_rng(np.abs(draws * scale).astype(np.int64).ravel()[:8])


def _fat_gain(names: tuple[str, ...], span: tuple[float, float], seed: np.ndarray) -> np.ndarray:
    """Per-tissue PD factors: fat and marrow scaled by one log-uniform draw from ``span`` (1 elsewhere).

    Applied to every readout but the spin-echo trains (``SPIN_ECHO_SEQUENCES``; EPI series have their
    fat suppressed anyway). The equations make fat about three times as bright as white matter in an
    MPRAGE; on real scanners the two are about equal (fat's several spectral peaks dephase at the echo
    time; partial volume). Spin-echo trains keep fat bright (J-coupling), as the equations do. A corpus
    may ask for it (cnn_corpus --fat-gain). Drawn from a generator seeded by the tissue jitter, so
    without it a series' random stream is unchanged.
    """
    draw = _seeded_by(seed, 2**21).uniform(*np.log(span))
    gain = np.ones(len(names))
    gain[[names.index(n) for n in ("FAT", "MARROW")]] = np.exp(draw)
    return gain


def _adjust(ctx: _Context, values: np.ndarray, p: ph.TissueParams, flow: str, fat_sat: bool) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    if fat_sat:
        v = np.where(p.is_fat, v * ph.FAT_SUPPRESSION, v)
    if flow == "void":  # spin echoes: moving blood leaves the slice between 90° and 180° pulses
        v = np.where(p.is_blood == 1, v * 0.06, v)
        v = np.where(p.is_blood == 2, v * (0.8 if ctx.spec.contrast else 0.35), v)
    elif flow == "epi":
        v = np.where(p.is_blood > 0, v * 0.3, v)
    return v


def tissue_texture(phantom: Phantom) -> np.ndarray:
    """The subject's fine tissue inhomogeneity (a multiplicative field ≈ 1 ± a few %, cached per phantom).

    Real tissue is not piecewise constant; without this the brain looks airbrushed.
    """
    if "texture" not in phantom._cache:
        rng = np.random.default_rng(phantom.params.get("texture_seed", 0))
        f = ndi.gaussian_filter(rng.standard_normal(_GRID_SHAPE, dtype=np.float32), 0.8)
        f *= phantom.params.get("texture_amplitude", 0.04) / (f.std() + 1e-9)
        phantom._cache["texture"] = (1.0 + f).astype(np.float32)
    return phantom._cache["texture"]


def tissue_volume(
    ctx: _Context,
    signal,
    flow: str = "none",
    fat_sat: bool | None = None,
    contrast: bool | None = None,
    texture: bool = True,
) -> np.ndarray:
    """Mix a per-tissue signal (``signal(params) -> array``) over the phantom's fractions and overlays."""
    fat_sat = ctx.spec.fat_suppressed if fat_sat is None else fat_sat
    p = ctx.params(contrast)
    v = _adjust(ctx, signal(p), p, flow, fat_sat)
    vol = np.zeros(_GRID_SHAPE, np.float32)
    for name, frac in ctx.phantom.fractions.items():
        w = float(v[p.index(name)])
        if w != 0.0:
            vol += frac * np.float32(w)
    cache: dict[float, np.ndarray] = {0.0: v}
    use_contrast = ctx.spec.contrast if contrast is None else contrast
    for o in ctx.phantom.overlays:
        enh = o.enhancing if use_contrast else 0.0
        if enh not in cache:
            pe = ctx.params(contrast, {o.tissue: enh})
            cache[enh] = _adjust(ctx, signal(pe), pe, flow, fat_sat)
        s = np.float32(cache[enh][p.index(o.tissue)])
        patch = vol[o.index]
        patch *= 1 - o.fraction
        patch += o.fraction * s
    if texture:
        vol *= tissue_texture(ctx.phantom)
    return vol


def parameter_volume(ctx: _Context, values: dict[str, float] | np.ndarray) -> np.ndarray:
    """Mix a per-tissue parameter (not a signal) the same way, e.g. CBV or FA."""
    p = ctx.params(False)
    arr = np.array([values[n] for n in p.names]) if isinstance(values, dict) else np.asarray(values)
    return tissue_volume(ctx, lambda _p: arr, flow="none", fat_sat=False, contrast=False, texture=False)


def _dipole_field(chi: np.ndarray, highpass_sigma: float = 0.0) -> np.ndarray:
    """Field perturbation (ppm of B0, along S) of a susceptibility map on the grid, by FFT dipole kernel.

    ``highpass_sigma`` (voxels) removes a Gaussian low-pass in the same transform, as SWI's
    homodyne filtering removes the background field.
    """
    pad = [(8, 8)] * 3
    x = np.pad(np.asarray(chi, np.float32), pad)
    k = np.meshgrid(*[np.fft.fftfreq(n) for n in x.shape[:2]], np.fft.rfftfreq(x.shape[2]), indexing="ij", sparse=True)
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    k2[0, 0, 0] = 1.0
    d = 1.0 / 3.0 - k[2] ** 2 / k2
    d[0, 0, 0] = 0.0
    if highpass_sigma > 0:
        d = d * (1.0 - np.exp(-2.0 * (np.pi * highpass_sigma) ** 2 * k2))
    f = np.fft.irfftn(np.fft.rfftn(x) * d.astype(np.complex64), s=x.shape, axes=(0, 1, 2))
    return f[8:-8, 8:-8, 8:-8].astype(np.float32)


def offresonance_ppm(ctx: _Context) -> np.ndarray:
    """Static field offset from air/tissue interfaces after a 2nd-order shim over the brain (cached)."""
    cache = ctx.phantom.template.cache
    key = "offresonance_ppm"
    if key not in cache:
        t = ctx.phantom.template
        # air is +9.4 ppm relative to tissue (χ_air ≈ 0.36, χ_tissue ≈ −9.05 ppm SI)
        air = np.clip(t.air + (1 - ndi.gaussian_filter(t.head.astype(np.float32), 0.7)), 0, 1)
        f = _dipole_field(air * 9.4)
        brain = t.brain > 0.5
        idx = np.nonzero(brain)
        coords = [(i - s / 2) / s for i, s in zip(idx, brain.shape)]
        x, y, z = coords
        a = np.stack([np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], axis=1)
        coef, *_ = np.linalg.lstsq(a, f[idx], rcond=None)
        gx, gy, gz = [(np.arange(s) - s / 2) / s for s in brain.shape]
        X, Y, Z = np.meshgrid(gx, gy, gz, indexing="ij")
        shim = (
            coef[0]
            + coef[1] * X
            + coef[2] * Y
            + coef[3] * Z
            + coef[4] * X * X
            + coef[5] * Y * Y
            + coef[6] * Z * Z
            + coef[7] * X * Y
            + coef[8] * X * Z
            + coef[9] * Y * Z
        )
        f = (f - shim).astype(np.float32) * (1 - air)
        cache[key] = f
    return cache[key]


def local_field_ppm(ctx: _Context) -> np.ndarray:
    """Field from the subject's veins, bleeds and GM/WM susceptibility, high-pass filtered (cached per phantom)."""
    cache = ctx.phantom._cache
    if "local_field" not in cache:
        p = ctx.params(False)
        chi = parameter_volume(ctx, {n: float(c) for n, c in zip(p.names, p.chi)} | {"GM": 0.02, "WM": -0.03})
        cache["local_field"] = _dipole_field(chi, highpass_sigma=4.0)
    return cache["local_field"]


# ---------------------------------------------------------------- sampling


def _torch():
    """torch when installed (fast, one call per stack); None: numpy/scipy do the same interpolation, so a
    sample study can be generated without torch (Slicer with the CNN switched off)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _grid_sample(volumes: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Trilinear samples of (V, D, H, W) ``volumes`` at normalised positions ``g`` (..., 3), in the volumes'
    axis order, -1..1 spanning first to last voxel (torch's align_corners=True), zero outside."""
    torch = _torch()
    if torch is not None:
        vol_t = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))[None]
        grid = torch.from_numpy(np.ascontiguousarray(g[..., ::-1], dtype=np.float32).reshape(1, 1, 1, -1, 3))
        with torch.no_grad():
            res = torch.nn.functional.grid_sample(vol_t, grid, mode="bilinear", padding_mode="zeros",
                                                  align_corners=True)
        return res.numpy()[0, :, 0, 0].reshape(len(volumes), *g.shape[:-1])
    from scipy.ndimage import map_coordinates

    flat = np.asarray(g, dtype=np.float64).reshape(-1, 3)
    index = [(flat[:, a] + 1.0) * 0.5 * (volumes.shape[1 + a] - 1) for a in range(3)]
    out = [map_coordinates(np.asarray(v, np.float32), index, order=1, mode="grid-constant", cval=0.0,
                           prefilter=False) for v in volumes]
    return np.stack(out).astype(np.float32).reshape(len(volumes), *g.shape[:-1])


def _upsample_numpy(img: np.ndarray, shape: tuple[int, int], align_corners: bool) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    x = np.asarray(img, dtype=np.float32)
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    axes = []
    for n_in, n_out in ((h, shape[0]), (w, shape[1])):
        o = np.arange(n_out, dtype=np.float64)
        if align_corners:
            src = o * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
        else:
            src = np.clip((o + 0.5) * (n_in / n_out) - 0.5, 0, None)
        axes.append(np.clip(src, 0, n_in - 1))
    rr, cc = np.meshgrid(axes[0], axes[1], indexing="ij")
    stack = x.reshape(-1, h, w)
    out = [map_coordinates(im, [rr, cc], order=1, mode="nearest", prefilter=False) for im in stack]
    return np.stack(out).astype(np.float32).reshape(*lead, *shape)


def _upsample(img: np.ndarray, shape: tuple[int, int], align_corners: bool) -> np.ndarray:
    """Bilinear resize of (n, h, w) or (h, w) images (torch: one call for a whole stack)."""
    torch = _torch()
    if torch is None:
        return _upsample_numpy(img, shape, align_corners)
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    lead = x.shape[:-2]
    x = x.reshape(1, -1, *x.shape[-2:])
    with torch.no_grad():
        y = torch.nn.functional.interpolate(x, size=shape, mode="bilinear", align_corners=align_corners)
    return y.numpy().reshape(*lead, *shape)


def _sampling_plan(plane: Plane, max_step: float = 2.0) -> tuple[tuple[float, float], tuple[int, int], tuple[int, int]]:
    """In-plane sampling steps and lattice shape; and block factor (>1 = average blocks, 0 = zoom up)."""
    rows, cols = plane.shape
    steps, shape, factor = [], [], []
    for n, sp in ((rows, plane.spacing[0]), (cols, plane.spacing[1])):
        if sp >= min(GRID_SPACING, max_step) * 0.99:
            k = max(1, int(np.ceil(sp / max_step - 0.01)))
            steps.append(sp / k)
            shape.append(n * k)
            factor.append(k)
        else:
            m = int(np.ceil(n * sp / min(GRID_SPACING, max_step)))
            steps.append(n * sp / m)
            shape.append(m)
            factor.append(0)
    return (steps[0], steps[1]), (shape[0], shape[1]), (factor[0], factor[1])


def _to_pixels(stack: np.ndarray, shape: tuple[int, int], factor: tuple[int, int]) -> np.ndarray:
    """Lattice samples (n, h, w) -> pixels (n, rows, cols): block mean when supersampled, bilinear when coarser."""
    n = stack.shape[0]
    kr, kc = factor
    if kr > 1:
        stack = stack.reshape(n, shape[0], kr, stack.shape[2]).mean(axis=2)
    if kc > 1:
        stack = stack.reshape(n, stack.shape[1], shape[1], kc).mean(axis=3)
    if stack.shape[1:] != tuple(shape):
        stack = _upsample(stack, shape, align_corners=False)
    return stack


class _PlaneSampler:
    """Where the sub-slices of each plane sample the template grid, in grid_sample's normalised coordinates.

    The two costly parts are kept while they still hold: the in-plane lattice while consecutive planes
    share their directions, the deformation while a plane stays within 6 mm of where it was last
    evaluated. So planes must come in their order (the state carries from one to the next).
    """

    def __init__(self, ctx: _Context, first: Plane, offsets: np.ndarray, max_step: float,
                 epi_shift: np.ndarray | None):
        self.phantom = ctx.phantom
        self.offsets = offsets
        self.m, self.mt = self.phantom.world_to_template[:3, :3], self.phantom.world_to_template[:3, 3]
        step, self.shape, self.factor = _sampling_plan(first, max_step)
        shape = self.shape
        rows, cols = first.shape
        self.rr = ((np.arange(shape[0]) + 0.5) * step[0] - rows * first.spacing[0] / 2).astype(np.float32)
        self.cc = ((np.arange(shape[1]) + 0.5) * step[1] - cols * first.spacing[1] / 2).astype(np.float32)
        # the deformation is evaluated on a coarser lattice (every 8th sample) and upsampled
        r_sub = np.linspace(0, shape[0] - 1, max(2, shape[0] // 8 + 1))
        c_sub = np.linspace(0, shape[1] - 1, max(2, shape[1] // 8 + 1))
        self.rr_sub = np.interp(r_sub, np.arange(shape[0]), self.rr)
        self.cc_sub = np.interp(c_sub, np.arange(shape[1]), self.cc)
        # grid_sample's normalised coordinates, axes reversed (x=W=last grid axis)
        self.gscale = (2.0 / ((np.array(_GRID_SHAPE) - 1) * GRID_SPACING)).astype(np.float32)
        self.gshift = (-_GRID_MIN * self.gscale - 1.0).astype(np.float32)
        self.shift_v = None if epi_shift is None else np.asarray(epi_shift, np.float32)[None]
        self.z_limits = _z_limits(self.phantom.template)
        self.lattice_key = None
        self.lat = self.lat_sub = None
        self.anchor = None  # (template position, displacement) of the last deformation evaluation

    def _lattice(self, plane: Plane) -> None:
        """Template offsets from the plane's centre of every lattice point (again only when the directions change)."""
        key = (tuple(np.round(plane.row, 9)), tuple(np.round(plane.col, 9)))
        if key == self.lattice_key:
            return
        self.lattice_key = key
        m, rr, cc = self.m, self.rr, self.cc
        mrow, mcol = (m @ plane.row).astype(np.float32), (m @ plane.col).astype(np.float32)
        self.lat = rr[:, None, None] * mcol + cc[None, :, None] * mrow  # template offsets from the centre
        self.lat_sub = self.rr_sub[:, None, None] * mcol + self.cc_sub[None, :, None] * mrow
        self.anchor = None

    def _displacement(self, base: np.ndarray) -> np.ndarray:
        # the deformation is smooth (12 mm control grid, amplitude ≤ ~3 mm): evaluate it again
        # only when the plane moved more than 6 mm from where it was last evaluated
        if self.anchor is None or np.linalg.norm(base - self.anchor[0]) > 6.0:
            d = self.phantom.displacement_at(self.lat_sub + base)
            d = np.moveaxis(_upsample(np.moveaxis(d, -1, 0), self.shape, align_corners=True), 0, -1)
            self.anchor = (base, d)
        return self.anchor[1]

    def fill(self, g: np.ndarray, plane: Plane) -> None:
        """Write the plane's sample coordinates into ``g`` (n_sub, rows', cols', 3)."""
        m, mt = self.m, self.mt
        self._lattice(plane)
        mnormal = (m @ plane.normal).astype(np.float32)
        center = (m @ plane.center + mt).astype(np.float32)
        for k, off in enumerate(self.offsets):
            base = center + np.float32(off) * mnormal
            t = self.lat + (base + self._displacement(base))
            if self.shift_v is not None:
                if k == 0:  # the EPI shift is read once, at the first sub-slice, and moves all of them
                    sh = _grid_sample(self.shift_v, t * self.gscale + self.gshift)[0].reshape(self.shape)
                    pe_shift = sh[..., None] * (m @ plane.col).astype(np.float32)
                t = t + pe_shift
            g[k] = t * self.gscale + self.gshift
            np.clip(g[k, ..., 2], *self.z_limits, out=g[k, ..., 2])


def _z_limits(template) -> tuple[float, float]:
    """Normalised grid z outside which sampling repeats the anatomy's last full cross-section, on the sides
    where it goes on past the box (``Template.continues``); ±inf where it ends inside. A field of view taller
    than the box (a sagittal spine, a head's neck) then shows the neck or trunk reaching the image's edge, as
    scanners do, instead of a straight cut into black."""
    if "z_limits" not in template.cache:
        area = (sum(template.fractions.values()) > 0.5).sum(axis=(0, 1))
        full = np.nonzero(area >= 0.3 * area.max())[0]
        first, last = full[0] + 2, full[-1] - 2  # two voxels in from a soft edge
        top = area.size - 1
        below, above = template.continues
        template.cache["z_limits"] = (-1.0 + 2.0 * first / top if below else -np.inf,
                                      -1.0 + 2.0 * last / top if above else np.inf)
    return template.cache["z_limits"]


def _reduce_depth(smp: np.ndarray, reduce: str) -> np.ndarray:
    """(planes, sub-slices, h, w) -> (planes, h, w): the slice profile (mean), a MIP (max) or a minIP (min)."""
    if smp.shape[1] == 1:
        return smp[:, 0]
    if reduce == "max":
        return smp.max(axis=1)
    if reduce == "min":
        return smp.min(axis=1)
    return smp.mean(axis=1)


def sample(
    ctx: _Context,
    volumes: list[np.ndarray],
    thickness: float | None = None,
    reduce: str = "mean",
    epi_shift: np.ndarray | None = None,
    depth_step: float = 2.0,
    max_step: float = 2.0,
    planes: list[Plane] | None = None,
) -> list[np.ndarray]:
    """Sample grid volumes on every plane: returns, per volume, (n_planes, rows, cols) float32.

    Through-plane: ``thickness`` is covered by sub-slices ``depth_step`` apart (each
    trilinear sample already spans ±1 grid voxel) reduced by mean (slice profile, partial
    volume), max (MIP) or min (minIP). In-plane: pixels larger than ``max_step`` are box
    averages of sub-pixel samples; smaller ones are interpolated from a lattice at about
    the grid spacing (the trilinear kernel itself smooths over ±1 grid voxel). ``epi_shift`` (grid volume,
    mm) moves samples along the column (phase-encode) direction.
    """

    planes = ctx.planes if planes is None else planes
    thickness = ctx.spec.slice_thickness if thickness is None else thickness
    n_sub = int(np.clip(np.ceil(thickness / depth_step - 1e-6), 1, 400))
    offsets = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * thickness
    sampler = _PlaneSampler(ctx, planes[0], offsets, max_step, epi_shift)
    shape, factor = sampler.shape, sampler.factor
    rows, cols = planes[0].shape
    vols = np.stack([np.asarray(v, np.float32) for v in volumes])

    out = [np.zeros((len(planes), rows, cols), np.float32) for _ in volumes]
    # planes are sampled in batches so one interpolation call covers many of them
    batch = max(1, int(4_000_000 // (n_sub * shape[0] * shape[1])))
    for b0 in range(0, len(planes), batch):
        chunk = planes[b0 : b0 + batch]
        g = np.empty((len(chunk), n_sub, *shape, 3), np.float32)
        for i, plane in enumerate(chunk):
            sampler.fill(g[i], plane)
        res = _grid_sample(vols, g).reshape(len(volumes), len(chunk), n_sub, *shape)
        for j in range(len(volumes)):
            out[j][b0 : b0 + len(chunk)] = _to_pixels(_reduce_depth(res[j], reduce), (rows, cols), factor)
    return out


def _pixel_world(plane: Plane, n: int = 17) -> np.ndarray:
    """World positions of an n×n lattice spanning the image corners (for smooth fields)."""
    rows, cols = plane.shape
    r = np.linspace(0, rows - 1, n)
    c = np.linspace(0, cols - 1, n)
    return (
        plane.origin + r[:, None, None] * plane.spacing[0] * plane.col + c[None, :, None] * plane.spacing[1] * plane.row
    )


def bias_field(ctx: _Context) -> np.ndarray:
    """Smooth receive-coil and B1 shading (n_planes, rows, cols), same for every volume of the series."""
    if "field" in ctx.bias:
        return ctx.bias["field"]
    rng = ctx.rng
    center = ctx.phantom.brain_center
    coils = center + rng.normal(0, 1, (4, 3)) * np.array([70, 80, 60])
    weights = rng.uniform(0.0, 0.45, 4)
    strength = 0.25 if ctx.field_strength < 2 else 0.45
    central = rng.uniform(0.0, strength)  # dielectric brightening at the centre (3 T)
    worlds = [_pixel_world(plane) for plane in ctx.planes]
    fields = []
    for w in worlds:
        b = np.ones(w.shape[:2])
        for c, wt in zip(coils, weights):
            b += wt * np.exp(-np.sum((w - c) ** 2, axis=-1) / (2 * 90.0**2))
        b += central * np.exp(-np.sum((w - center) ** 2, axis=-1) / (2 * 50.0**2))
        fields.append(b)
    share = ctx.phantom.params.get("array_coil")
    if share and ctx.phantom.anatomy == "head":
        # seeded by this series' coil draws: without it the series' random stream is unchanged
        draw = _seeded_by(coils, 2**10)
        if draw.random() < share:
            profile = array_coil_profile(np.stack(worlds), center, draw)
            fields = [f * a for f, a in zip(fields, profile)]
    fields = _upsample(np.stack(fields), ctx.planes[0].shape, align_corners=True)
    f = np.stack(fields).astype(np.float32)
    f /= np.median(f)
    ctx.bias["field"] = f
    return f


def array_coil_profile(world: np.ndarray, center: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Receive sensitivity of a phased-array head coil, not normalised by the scanner (positions ``world`` (..., 3)).

    Loops on a shell about the head, combined root-sum-of-squares: bright at the surface, dark deep in the brain.
    Research EPI (BOLD, diffusion, field maps) is often stored so, without the prescan normalisation of
    clinical protocols: centre/periphery 0.38–0.65 in most of the real development set's EPI, where the
    generator's smooth field never went below 0.95 (benchmarks/head_images.py). ``rng`` draws the element
    count, the loop size, the shell's size and how much of the profile is left.
    """
    n = int(rng.choice([8, 12, 20, 32]))
    loop = rng.uniform(20.0, 45.0)  # mm: sensitivity depth of one element
    semi = np.array([90.0, 110.0, 105.0]) + rng.uniform(0.0, 15.0)  # L-R, A-P, S-I semi-axes of the shell
    # elements spread evenly (Fibonacci lattice) over the shell above the chin
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n * 0.85
    phi = np.pi * (1.0 + 5**0.5) * k
    ring = np.sqrt(1.0 - z**2)
    elements = center + np.stack([ring * np.cos(phi), ring * np.sin(phi), z], axis=1) * semi
    d2 = np.sum((world[..., None, :] - elements) ** 2, axis=-1) / loop**2
    rss = np.sqrt(np.sum((1.0 + d2) ** -3.0, axis=-1))
    return (rss / rss.max()) ** rng.uniform(0.6, 1.0)


MOTION_RATE = 0.08  # share of (non-EPI) series with visible head-motion ghosts


def motion_ghosts(ctx: _Context, img: np.ndarray) -> np.ndarray:
    """Head motion during a multi-shot acquisition: some phase-encode lines see the head shifted,
    which replicates it as ghosts along the phase-encode (row index) direction. Decided once per series."""
    if "motion" not in ctx.bias:
        moving = not ctx.epi and ctx.rng.random() < MOTION_RATE
        ctx.bias["motion"] = None
        if moving:
            n = img.shape[1]
            # periodic motion (breathing, swallowing) gives discrete ghosts; a few sudden moves add smear
            t = np.arange(n)
            cycles, phase0 = ctx.rng.uniform(2, 12), ctx.rng.uniform(0, 6)
            shift = ctx.rng.uniform(1.0, 4.0) * np.sin(2 * np.pi * t * cycles / n + phase0)
            jerk = ctx.rng.random(n) < ctx.rng.uniform(0.0, 0.15)
            shift = shift + ctx.rng.uniform(-4.0, 4.0, n) * jerk  # pixels, per k-space line (acquisition order)
            k = np.fft.fftfreq(n)
            ctx.bias["motion"] = np.exp(-2j * np.pi * k * shift).astype(np.complex64)
    ramp = ctx.bias["motion"]
    if ramp is None:
        return img
    spectrum = np.fft.fft(img, axis=1) * ramp[None, :, None]
    return np.abs(np.fft.ifft(spectrum, axis=1)).astype(np.float32)


def snr_for(ctx: _Context, base: float | None = None) -> float:
    """The series' SNR (tissue signal / noise σ): one log-uniform draw in ``SNR_RANGE`` per series.

    The same range for every sequence, so the noise floor says nothing about the class
    (``base``, the sequence's nominal SNR, is accepted for the callers and not used). A
    subject's ``snr_factor`` and a site profile's ``extra["noise_scale"]`` (> 1 = noisier) apply.
    """
    if "snr" not in ctx.bias:
        lo, hi = np.log(SNR_RANGE[0]), np.log(SNR_RANGE[1])
        ctx.bias["snr"] = float(np.exp(ctx.rng.uniform(lo, hi)))
    snr = ctx.bias["snr"] * ctx.phantom.params.get("snr_factor", 1.0)
    snr /= max(float(ctx.spec.extra.get("noise_scale", 1.0) or 1.0), 0.1)
    return float(np.clip(snr, 2.5, 200.0))


def finish(ctx: _Context, img: np.ndarray, snr: float, reference: float | None = None, bias: bool = True) -> np.ndarray:
    """Bias field, sometimes motion ghosts, Rician noise (σ = reference / SNR); no scaling.

    ``img`` is (n, rows, cols)."""
    if bias:
        img = img * bias_field(ctx)
        img = motion_ghosts(ctx, img)
    ref = reference if reference is not None else _reference(img)
    sigma = np.float32(ref / snr)
    # Rician: magnitude of (signal + complex Gaussian noise); in place to spare memory traffic
    a = ctx.rng.standard_normal(img.shape, dtype=np.float32)
    a *= sigma
    a += img
    a *= a
    b = ctx.rng.standard_normal(img.shape, dtype=np.float32)
    b *= sigma
    b *= b
    a += b
    return np.sqrt(a, out=a)


def _reference(img: np.ndarray) -> float:
    """A typical tissue signal of an image stack (75th percentile of the clearly non-zero part)."""
    sub = img.ravel()[:: max(1, img.size // 200_000)]
    v = sub[sub > 0.05 * float(sub.max() + 1e-9)]
    return float(np.percentile(v, 75)) if v.size else 1.0


def scale(ctx: _Context, frames: np.ndarray, low: float = 600, high: float = 3000) -> np.ndarray:
    """Scanner-like magnitude range: the 99.5th percentile lands between ``low`` and ``high``, max 4095."""
    target = ctx.rng.uniform(low, high)
    sub = frames.ravel()[:: max(1, frames.size // 300_000)]
    p = float(np.percentile(sub, 99.5)) or 1.0
    return np.clip(frames * (target / p), 0, 4095).astype(np.float32)


def epi_artefacts(ctx: _Context, frames: np.ndarray) -> np.ndarray:
    """N/2 ghost along the phase-encode (row index) direction."""
    g = ctx.rng.uniform(0.02, 0.06)
    half = frames.shape[1] // 2
    return (frames + g * np.roll(frames, half, axis=1)).astype(np.float32)


def epi_shift_map(ctx: _Context) -> np.ndarray:
    """PE displacement (mm) on the grid: off-resonance / bandwidth per pixel × pixel size."""
    ppm = offresonance_ppm(ctx)
    hz = ppm * 1e-6 * ph.field_tesla_gamma() * ctx.field_strength
    bw_per_pixel = ctx.rng.uniform(18, 35)  # Hz per pixel in PE for typical echo spacing and acceleration
    pixel = float(ctx.spec.pixel_spacing[0])
    return (hz / bw_per_pixel * pixel * ctx.rng.choice([-1, 1])).astype(np.float32)


def epi_dropout(ctx: _Context, te: float) -> np.ndarray:
    """Through-slice dephasing near air (frontal sinus, mastoids) in gradient-echo EPI: a grid factor 0..1."""
    ppm = offresonance_ppm(ctx)
    g = np.linalg.norm(np.stack(np.gradient(ppm, GRID_SPACING)), axis=0)  # ppm/mm
    hz_per_mm = g * 1e-6 * ph.field_tesla_gamma() * ctx.field_strength
    return np.exp(-((hz_per_mm * ctx.spec.slice_thickness * te / 1000.0) ** 2) * 2.0).astype(np.float32)


def haste_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Single-shot T2 decay along the echo train blurs along the phase-encode (row index) direction."""
    return ndi.gaussian_filter1d(frames, sigma, axis=1).astype(np.float32)


# ---------------------------------------------------------------- sequences


def _v(value, default):
    return default if value is None else float(value)


def site_effects(ctx: _Context, frames: np.ndarray, signed: bool = False) -> np.ndarray:
    """What scanners and PACS do to the final images, at the same rates for every sequence.

    Reconstruction smoothing (``SMOOTH_RATE``; magnitude images), background suppression outside
    the head (``BACKGROUND_RATE``; magnitude images) and zero padding bars at two opposite edges
    (``BAR_RATE``), each decided once per series from ``ctx.rng`` (always the same draws, so the
    random stream does not depend on the outcome)."""
    rng = ctx.rng
    smooth, sigma = rng.random() < SMOOTH_RATE, rng.uniform(0.4, 1.2)
    suppress, level, grow = rng.random() < BACKGROUND_RATE, rng.uniform(0.04, 0.15), int(rng.integers(0, 4))
    bars, along_rows = rng.random() < BAR_RATE, rng.random() < 0.75
    widths = rng.uniform(0.03, 0.2, 2)
    if rng.random() < 0.5:
        widths[1] = widths[0]
    out = np.asarray(frames, np.float32)
    if smooth and not signed:
        out = ndi.gaussian_filter(out, (0, sigma, sigma)).astype(np.float32)
    if suppress and not signed:
        sub = out.ravel()[:: max(1, out.size // 200_000)]
        threshold = level * float(np.percentile(sub, 99) or 1.0)
        out = out.copy()
        for i in range(len(out)):
            m = ndi.binary_closing(out[i] > threshold, iterations=2)
            m = ndi.binary_fill_holes(m)
            if grow:
                m = ndi.binary_dilation(m, iterations=grow)
            out[i] *= m
    if bars:
        out = out.copy() if out is frames else out
        size = out.shape[1] if along_rows else out.shape[2]
        a, b = (int(round(w * size)) for w in widths)
        if along_rows:
            out[:, :a] = 0
            out[:, size - b :] = 0
        else:
            out[:, :, :a] = 0
            out[:, :, size - b :] = 0
    return out


def _result(ctx: _Context, frames: np.ndarray, n_volumes: int = 1, signed: bool = False, **per_frame) -> RenderedSeries:
    planes = ctx.planes
    frames = site_effects(ctx, frames, signed)
    positions = [tuple(float(x) for x in p.origin) for p in planes] * n_volumes
    orientations = [tuple(float(x) for x in (*p.row, *p.col)) for p in planes] * n_volumes
    return RenderedSeries(
        frames=np.ascontiguousarray(frames, dtype=np.float32),
        positions=positions,
        orientations=orientations,
        pixel_spacing=(float(ctx.spec.pixel_spacing[0]), float(ctx.spec.pixel_spacing[1])),
        slice_thickness=float(ctx.spec.slice_thickness),
        signed=signed,
        **per_frame,
    )


def _simple(ctx: _Context, signal, flow: str, snr_base: float) -> RenderedSeries:
    vol = tissue_volume(ctx, signal, flow=flow)
    (img,) = sample(ctx, [vol])
    return _result(ctx, scale(ctx, finish(ctx, img, snr_for(ctx, snr_base))))


def _inflow_gre(ctx, tr: float, fa: float):
    """``signal(p, te)`` of a spoiled gradient echo with this series' inflow (``physics.inflow_gre``).

    The fractions of fresh arterial and venous spins are drawn per series (flow speed, slice thickness and the
    vessels' angle to the slice vary): high in a 2-D slice, low in a 3-D slab. Without it every vessel of a
    pre-contrast gradient echo is dark, and bright vessels would mean "post-contrast" to the CNN.
    """
    if ctx.spec.acquisition == "3D":
        artery, vein = ctx.rng.uniform(0.05, 0.35), ctx.rng.uniform(0.0, 0.15)
    else:
        artery, vein = ctx.rng.uniform(0.4, 1.0), ctx.rng.uniform(0.2, 0.7)
    return lambda p, te: ph.inflow_gre(p, tr, te, fa, artery, vein)


def _train_mt(ctx):
    """Per-tissue factor (``physics.incidental_mt``) of a spin-echo train's magnetisation transfer: a 2-D
    multi-slice train loses 10-25 % of white matter's signal (slice count, spacing and refocusing power vary);
    a 3-D slab has no other slices and a low-flip train (SPACE/CUBE), so it keeps nearly all of it."""
    loss = ctx.rng.uniform(0.1, 0.25) if ctx.spec.acquisition != "3D" else 0.0
    return lambda p: ph.incidental_mt(p, loss)


def _scout(ctx):
    s = ctx.spec
    tr, te, fa = _v(s.repetition_time, 8.6), _v(s.echo_time, 4.0), _v(s.flip_angle, 20)
    signal = _inflow_gre(ctx, tr, fa)
    return _simple(ctx, lambda p: signal(p, te), "none", 3.0)


def _t1_2d(ctx):
    s = ctx.spec
    tr, te = _v(s.repetition_time, 550), _v(s.echo_time, 12)
    if s.inversion_time:  # T1-FLAIR / TIRM
        ti = float(s.inversion_time)
        return _simple(ctx, lambda p: ph.inversion_recovery(p, tr, te, ti), "void", 5.0)
    return _simple(ctx, lambda p: ph.spin_echo(p, tr, te), "void", 5.0)


def _t1_3d(ctx):
    s = ctx.spec
    if s.inversion_time:
        ti = float(s.inversion_time)
        tr = _v(s.repetition_time, 2000)
        tr = tr if tr > ti + 200 else ti + 900  # some vendors report the echo spacing as TR
        es = float(s.extra.get("echo_spacing", 8.0))
        fa = _v(s.flip_angle, 9)
        te = _v(s.echo_time, 3.0)
        return _simple(ctx, lambda p: ph.mprage(p, ti, tr, fa, es, 160, te), "none", 9.0)
    tr, te, fa = _v(s.repetition_time, 8), _v(s.echo_time, 3.5), _v(s.flip_angle, 15)
    signal = _inflow_gre(ctx, tr, fa)
    return _simple(ctx, lambda p: signal(p, te), "none", 8.0)


def _t2(ctx, te_default=95.0, tr_default=4500.0, snr=6.0):
    s = ctx.spec
    tr, te = _v(s.repetition_time, tr_default), _v(s.echo_time, te_default)
    te = min(te, 140.0) if s.acquisition == "3D" else te  # SPACE/CUBE: equivalent TE of the variable-flip train
    mt = _train_mt(ctx)
    return _simple(ctx, lambda p: ph.spin_echo(p, tr, te) * mt(p), "void", snr)


def _haste(ctx):
    s = ctx.spec
    tr, te = _v(s.repetition_time, 1500), _v(s.echo_time, 90)
    vol = tissue_volume(ctx, lambda p: ph.spin_echo(p, max(tr, 3000), te), flow="void")
    (img,) = sample(ctx, [vol])
    img = haste_blur(img, ctx.rng.uniform(1.0, 2.0))
    return _result(ctx, scale(ctx, finish(ctx, img, snr_for(ctx, 3.0))))


def _flair(ctx):
    s = ctx.spec
    tr, te = _v(s.repetition_time, 9000), _v(s.echo_time, 100)
    if s.acquisition == "3D":
        te = min(te, 140.0)
    p_csf = ctx.params(False)
    t1_csf = float(p_csf.t1[p_csf.index("CSF")])
    # scanners choose TI to null CSF at their TR: reproduce that, whatever nominal TI the header carries
    ti_null = -t1_csf * np.log((1 + np.exp(-tr / t1_csf)) / 2)
    ti = ti_null * ctx.rng.uniform(0.97, 1.03)
    mt = _train_mt(ctx)
    return _simple(ctx, lambda p: ph.inversion_recovery(p, tr, te, ti) * mt(p), "void", 5.0)


def _echoes(ctx, signal, echo_times, flow: str, snr_base: float) -> RenderedSeries:
    """One volume per echo time (``signal(p, te)``), per-frame echo numbers, one noise reference."""
    vols = [tissue_volume(ctx, lambda p, te=te: signal(p, te), flow=flow) for te in echo_times]
    imgs = sample(ctx, vols)
    snr = snr_for(ctx, snr_base)
    ref = _reference(imgs[0])
    frames = np.concatenate([finish(ctx, im, snr, reference=ref) for im in imgs])
    n = len(ctx.planes)
    return _result(ctx, scale(ctx, frames), n_volumes=len(echo_times),
                   echo_numbers=[e + 1 for e in range(len(echo_times)) for _ in range(n)])


def _pd(ctx):
    s = ctx.spec
    tr, te = _v(s.repetition_time, 3000), _v(s.echo_time, 15)
    te = min(te, 40.0)
    tes = list(s.extra.get("echo_times") or ())
    mt = _train_mt(ctx)
    if int(s.extra.get("n_echoes", 1)) > 1 and len(tes) > 1:  # PD + T2 dual echo
        return _echoes(ctx, lambda p, t: ph.spin_echo(p, tr, t) * mt(p), [min(tes[0], 40.0), *tes[1:]], "void", 7.0)
    return _simple(ctx, lambda p: ph.spin_echo(p, tr, te) * mt(p), "void", 7.0)


def _t2star(ctx):
    s = ctx.spec
    tr, te, fa = _v(s.repetition_time, 650), _v(s.echo_time, 20), _v(s.flip_angle, 20)
    tes = list(s.extra.get("echo_times") or ())
    signal = _inflow_gre(ctx, tr, fa)
    if int(s.extra.get("n_echoes", 1)) > 1 and len(tes) > 1:  # multi-echo GRE
        return _echoes(ctx, signal, tes, "none", 5.0)
    return _simple(ctx, lambda p: signal(p, te), "none", 5.0)


def _wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap radians into [−π, π)."""
    return (np.mod(phase + np.pi, 2 * np.pi) - np.pi).astype(np.float32)


def _swi_parts(ctx):
    """Magnitude and phase (radians) sampled images of a 3-D flow-compensated GRE."""
    s = ctx.spec
    te_default = 20.0 if ctx.field_strength >= 2 else 40.0
    tr, te, fa = _v(s.repetition_time, 28), _v(s.echo_time, te_default), _v(s.flip_angle, 15)
    # the magnitude, phase and processed SWI series of one acquisition share these volumes
    key = ("swi", tr, te, fa, ctx.field_strength, ctx.spec.contrast, ctx.spec.fat_suppressed)
    cache = ctx.phantom._cache
    if key not in cache:
        mag = tissue_volume(ctx, lambda p: ph.spoiled_gre(p, tr, te, fa), flow="none")
        omega = 2 * np.pi * ph.field_tesla_gamma() * ctx.field_strength * 1e-6  # rad/s per ppm
        phase = (-omega * te / 1000.0 * local_field_ppm(ctx)).astype(np.float32)
        # intravoxel dephasing (field gradient across a voxel) and blooming darken the magnitude
        # around veins and bleeds well beyond their geometric size
        dephase = 1.2 * ndi.gaussian_gradient_magnitude(phase, 0.8) + 0.25 * np.abs(phase)
        mag = mag * np.exp(-dephase).astype(np.float32)
        for old_key in [k for k in cache if isinstance(k, tuple) and k[0] == "swi"][4:]:
            del cache[old_key]  # bound the memory a long-lived phantom holds
        cache[key] = (mag, phase)
    mag, phase = cache[key]
    return mag, phase, te


def _swi_mag(ctx):
    mag, _, _ = _swi_parts(ctx)
    (img,) = sample(ctx, [mag])
    return _result(ctx, scale(ctx, finish(ctx, img, snr_for(ctx, 5.0))))


def _swi_phase(ctx):
    mag, phase, _ = _swi_parts(ctx)
    img, phi = sample(ctx, [mag, phase])
    snr = snr_for(ctx, 5.0)
    noisy = finish(ctx, img, snr)
    ref = _reference(img)
    # phase noise ~ 1/SNR of the voxel; background (no signal) is uniform noise
    sigma = ref / snr / np.maximum(img, 1e-3 * ref)
    phi = phi + ctx.rng.standard_normal(phi.shape).astype(np.float32) * np.minimum(sigma, np.pi)
    phi = _wrap(phi)
    del noisy
    return _result(ctx, np.clip(phi / np.pi * 4096, -4096, 4095).astype(np.float32), signed=True)


def _swi_processed(ctx, minip: bool = False):
    mag, phase, _ = _swi_parts(ctx)
    mask = np.where(phase < 0, np.clip(1 + phase / np.pi, 0, 1), 1.0).astype(np.float32)
    swi = mag * mask**4
    if minip:
        slab = float(ctx.spec.extra.get("minip_slab_mm", ctx.spec.slice_thickness))
        (img,) = sample(ctx, [swi], thickness=slab, reduce="min", depth_step=1.5)
        img = finish(ctx, img, snr_for(ctx, 5.0))
    else:
        (img,) = sample(ctx, [swi])
        img = finish(ctx, img, snr_for(ctx, 5.0))
    return _result(ctx, scale(ctx, img))


def _epi_s0(ctx, te: float, tr: float, se: bool = True, fa: float = 90.0) -> np.ndarray:
    if se:
        return tissue_volume(ctx, lambda p: ph.spin_echo(p, tr, te), flow="epi", fat_sat=True)
    return tissue_volume(ctx, lambda p: ph.spoiled_gre(p, tr, te, fa), flow="epi", fat_sat=True)


def fibres(phantom: Phantom) -> np.ndarray:
    """Where diffusion is anisotropic: white matter in a head; cord, tendons and menisci elsewhere."""
    found = [phantom.fractions[n] for n in ("WM", "TENDON") if n in phantom.fractions]
    return sum(found[1:], found[0]) if found else np.zeros(_GRID_SHAPE, np.float32)


def _diffusion_images(ctx, b_values: list[float]) -> list[np.ndarray]:
    """Noise-free EPI images, one per entry of ``b_values``.

    Repeated non-zero b-values are diffusion directions (DTI): each gets its own smooth
    anisotropic modulation of white matter, so directions differ as in real raw DTI data.
    """
    s = ctx.spec
    te, tr = _v(s.echo_time, 85), _v(s.repetition_time, 5000)
    unique = sorted(set(float(b) for b in b_values))
    vols = [
        tissue_volume(ctx, lambda p, b=b: ph.diffusion(ph.spin_echo(p, tr, te), p.adc, b), flow="epi", fat_sat=True)
        for b in unique
    ]
    repeated = any(b_values.count(b) > 1 for b in unique if b > 0)
    if repeated:
        vols.append(fibres(ctx.phantom))
    imgs = sample(ctx, vols, epi_shift=epi_shift_map(ctx))
    by_b = dict(zip(unique, imgs))
    out = []
    for b in b_values:
        img = by_b[float(b)]
        if repeated and b > 0:
            wm = imgs[-1]
            n, r, c = wm.shape
            pattern = _upsample(ctx.rng.normal(0, 1, (n, 6, 6)), (r, c), align_corners=True)
            img = img * (1 + 0.35 * wm**2 * np.tanh(pattern)).astype(np.float32)
        out.append(img)
    return out


def _dwi(ctx):
    b_values = [float(b) for b in ctx.spec.b_values] or [0.0, 1000.0]
    imgs = _diffusion_images(ctx, b_values)
    snr = snr_for(ctx, 4.5)
    ref = _reference(imgs[int(np.argmin(b_values))])
    frames = np.concatenate([finish(ctx, im, snr, reference=ref) for im in imgs])
    frames = epi_artefacts(ctx, frames)
    n = len(ctx.planes)
    return _result(
        ctx,
        scale(ctx, frames, 400, 1500),
        n_volumes=len(b_values),
        b_values=[float(b) for b in b_values for _ in range(n)],
    )


def _adc_from(ctx, b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ADC (mm²/s) from a b=0 and a b image that went through the same scanner effects (noise, ghost).

    Inside the head the log-ratio is the tissue's ADC; outside it is the log-ratio of noise,
    which some vendors show and others mask to zero (``mask_map``)."""
    s0, sb = _diffusion_images(ctx, [0.0, b])
    snr = snr_for(ctx, 4.5)
    ref = _reference(s0)
    n0, nb = finish(ctx, s0, snr, reference=ref), finish(ctx, sb, snr, reference=ref)
    ghosted = epi_artefacts(ctx, np.concatenate([n0, nb]))
    n0, nb = ghosted[: len(n0)], ghosted[len(n0) :]
    mask = ndi.binary_opening(n0 > 0.15 * ref, iterations=1)
    adc = np.clip(np.log(np.maximum(n0, 1e-6) / np.maximum(nb, 1e-6)) / b, 0, 0.004095)  # 1e-6 mm²/s, 12 bits
    return adc, mask, n0


def mask_map(ctx: _Context, img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A quantitative map's background: zeroed at ``MAP_MASK_RATE``, else left as computed (decided per series)."""
    if "map_mask" not in ctx.bias:
        ctx.bias["map_mask"] = bool(ctx.rng.random() < MAP_MASK_RATE)
    return np.where(mask, img, 0).astype(np.float32) if ctx.bias["map_mask"] else img.astype(np.float32)


def _adc(ctx):
    b = max(ctx.spec.b_values) if ctx.spec.b_values else 1000.0
    adc, mask, _ = _adc_from(ctx, b or 1000.0)
    return _result(ctx, mask_map(ctx, np.clip(adc * 1e6, 0, 4095), mask))


def _diffusion_derived(ctx):
    kind = str(ctx.spec.extra.get("diffusion_map", "FA")).upper()
    b = max(ctx.spec.b_values) if ctx.spec.b_values else 1000.0
    adc, mask, _ = _adc_from(ctx, b or 1000.0)
    if kind == "EADC":
        return _result(ctx, mask_map(ctx, np.exp(-(b or 1000.0) * adc) * 1000, mask))
    p = ctx.params(False)
    fa_vol = parameter_volume(ctx, p.fa)
    wm = fibres(ctx.phantom)
    # coherent tracts (deep WM) have higher FA than subcortical U-fibres
    fa_vol = fa_vol + 0.25 * wm**3 * ndi.gaussian_filter(wm, 2.0) ** 2
    (fa,) = sample(ctx, [fa_vol])
    fa = fa + ctx.rng.normal(0, 0.04, fa.shape) + 0.12 * ctx.rng.random(fa.shape) * (adc > 0.002)
    # the FA of pure noise is high and speckled
    fa = np.where(mask, fa, ctx.rng.beta(4, 2, fa.shape))
    return _result(ctx, mask_map(ctx, np.clip(fa, 0, 1) * 1000, mask))


def _epi_time_series(ctx, vols: list[np.ndarray], n_t: int):
    """A dynamic EPI series (DSC, BOLD) from its finished volumes: EPI artefacts, scaled, frames numbered by
    time point."""
    frames = epi_artefacts(ctx, np.concatenate(vols))
    n = len(ctx.planes)
    return _result(
        ctx, scale(ctx, frames, 300, 1500), n_volumes=n_t, temporal_indices=[k for k in range(n_t) for _ in range(n)]
    )


def _dsc(ctx):
    s = ctx.spec
    te_default = 30.0 if ctx.field_strength >= 2 else 45.0
    te, tr, fa = _v(s.echo_time, te_default), _v(s.repetition_time, 1500), _v(s.flip_angle, 90)
    s0 = _epi_s0(ctx, te, tr, se=False, fa=fa) * epi_dropout(ctx, te)
    cbv = parameter_volume(ctx, ctx.params(False).cbv)
    shift = epi_shift_map(ctx)
    img0, cbv_img = sample(ctx, [s0, cbv], epi_shift=shift)
    n_t = max(int(s.n_temporal), 1)
    t = np.arange(n_t) * tr / 1000.0
    conc = ph.gamma_variate(t, ctx.rng.uniform(8, 16), peak=1.0)
    snr = snr_for(ctx, 2.0)
    ref = _reference(img0)
    vols = []
    for k in range(n_t):
        ratio = ph.dsc_signal_ratio(cbv_img, np.array([conc[k]]), te)[..., 0]
        vols.append(finish(ctx, img0 * ratio, snr, reference=ref))
    return _epi_time_series(ctx, vols, n_t)


def _bold(ctx):
    s = ctx.spec
    te_default = 30.0 if ctx.field_strength >= 2 else 45.0
    te, tr, fa = _v(s.echo_time, te_default), _v(s.repetition_time, 2000), _v(s.flip_angle, 77)
    s0 = _epi_s0(ctx, te, tr, se=False, fa=fa) * epi_dropout(ctx, te)
    (img0,) = sample(ctx, [s0], epi_shift=epi_shift_map(ctx))
    n_t = max(int(s.n_temporal), 1)
    snr = snr_for(ctx, 2.0)
    ref = _reference(img0)
    drift = np.cumsum(ctx.rng.normal(0, 0.002, n_t))
    vols = [finish(ctx, img0 * (1 + drift[k]), snr, reference=ref) for k in range(n_t)]
    return _epi_time_series(ctx, vols, n_t)


def _asl(ctx):
    s = ctx.spec
    te, tr = _v(s.echo_time, 12), _v(s.repetition_time, 4500)
    # background-suppressed readout: static tissue mostly nulled; perfusion ~1 % of M0 in GM
    m0 = tissue_volume(ctx, lambda p: ph.spin_echo(p, max(tr, 3000), te), flow="epi", fat_sat=True)
    p = ctx.params(False)
    cbf_tissue = {n: 0.0 for n in p.names} | {
        "GM": 60.0,
        "WM": 22.0,
        "TUMOR": 90.0,
        "STROKE": 5.0,
        "MS": 18.0,
        "EDEMA": 15.0,
        "CHOROID": 40.0,
        "ARTERY": 80.0,
    }
    cbf = parameter_volume(ctx, cbf_tissue)
    cbf = ndi.gaussian_filter(cbf, 1.2)  # low-resolution readout and label dispersion
    m0_img, cbf_img = sample(ctx, [m0, cbf])
    if str(s.extra.get("asl_map", "")).upper() == "M0":  # the calibration scan: no labelling, no suppression
        return _result(ctx, scale(ctx, finish(ctx, m0_img, snr_for(ctx, 4.0)), 400, 1500))
    if s.derived or str(s.extra.get("asl_map", "")).upper() == "CBF":
        # quantified CBF (ml/100 g/min, stored ×10 as several vendors do): noisy, smooth, GM > WM
        noise = ndi.gaussian_filter(ctx.rng.normal(0, 1, cbf_img.shape), (0, 0.7, 0.7)) * ctx.rng.uniform(6, 12)
        img = np.clip(cbf_img * bias_field(ctx) + noise, 0, None)
        img = mask_map(ctx, img, m0_img > 0.05 * m0_img.max())
        return _result(ctx, np.clip(img * 10, 0, 4095).astype(np.float32))
    n_t = max(int(s.n_temporal), 2)
    bgs = ctx.rng.uniform(0.1, 0.3)  # background suppression leaves this fraction of static tissue
    ref = _reference(m0_img)
    snr = snr_for(ctx, 0.6)
    delta = 0.01 * ref * cbf_img / 60.0  # label − control difference: ~1 % of M0 in GM
    vols = []
    for k in range(n_t):
        control = m0_img * bgs + delta
        img = control - delta * 0.9 if k % 2 else control
        vols.append(finish(ctx, img, snr, reference=ref * bgs))
    n = len(ctx.planes)
    return _result(
        ctx,
        scale(ctx, np.concatenate(vols), 200, 1200),
        n_volumes=n_t,
        temporal_indices=[k for k in range(n_t) for _ in range(n)],
    )


def _tof_volume(ctx):
    s = ctx.spec
    tr, te, fa = _v(s.repetition_time, 22), _v(s.echo_time, 3.5), _v(s.flip_angle, 20)
    vol = tissue_volume(ctx, lambda p: ph.tof_inflow(p, tr, te, fa, mt=ctx.rng.uniform(0.55, 0.75)), flow="none")
    return vol


def _tof(ctx):
    (img,) = sample(ctx, [_tof_volume(ctx)])
    return _result(ctx, scale(ctx, finish(ctx, img, snr_for(ctx, 5.0), reference=_reference(img) * 0.5)))


def _mip_planes(ctx) -> list[Plane]:
    s = ctx.spec
    axis = str(s.extra.get("mip_axis", s.orientation if s.orientation in PLANES else "AXIAL")).upper()
    if axis not in PLANES:
        axis = "AXIAL"
    n = max(int(s.n_slices), 1)
    center = ctx.planes[len(ctx.planes) // 2].center
    if s.orientation == "MIXED":
        base_row, base_col = PLANES["CORONAL"]
        rot_axis = np.array([0, 0, 1.0])
        span = float(s.extra.get("mip_span_deg", 180.0))
    else:
        base_row, base_col = ctx.planes[0].row, ctx.planes[0].col
        rot_axis = base_col
        span = float(s.extra.get("mip_span_deg", 24.0))
        if s.orientation in PLANES and axis != s.orientation:
            base_row, base_col = PLANES[axis]
            rot_axis = base_col
    angles = np.linspace(-span / 2, span / 2, n) if n > 1 else np.array([0.0])
    if s.orientation == "MIXED":
        angles = np.arange(n) * span / n
    planes = []
    ps = (float(s.pixel_spacing[0]), float(s.pixel_spacing[1]))
    for a in angles:
        r = _rotation(rot_axis, a)
        row, col = r @ base_row, r @ base_col
        origin = center - (s.columns - 1) / 2 * ps[1] * row - (s.rows - 1) / 2 * ps[0] * col
        planes.append(Plane(origin, row, col, ps, (s.rows, s.columns)))
    return planes


def _mip(ctx):
    vol = _tof_volume(ctx)
    # the projected slab: the TOF acquisition covers ~70 mm around the circle of Willis
    world_c = _anchor_world(ctx.phantom, "TOF_MRA")
    t_c = ctx.phantom.world_to_template[:3, :3] @ world_c + ctx.phantom.world_to_template[:3, 3]
    z = np.arange(_GRID_SHAPE[2]) * GRID_SPACING + _GRID_MIN[2]
    slab = np.clip((40.0 - np.abs(z - t_c[2])) / 5.0, 0, 1).astype(np.float32)
    vol = vol * slab[None, None, :]
    ctx.planes = _mip_planes(ctx)
    snr = snr_for(ctx, 5.0)
    img = finish(
        ctx, _sample_mip(ctx, vol), snr, reference=1e-9 + 0.5 * float(np.percentile(vol[vol > 0], 75)), bias=False
    )
    return _result(ctx, scale(ctx, img, 800, 3000))


def _sample_mip(ctx, vol: np.ndarray) -> np.ndarray:
    (img,) = sample(ctx, [vol], thickness=180.0, reduce="max", depth_step=2.0, max_step=2.0)
    return img


def _ciss(ctx):
    s = ctx.spec
    tr, te, fa = _v(s.repetition_time, 5.5), _v(s.echo_time, 2.7), _v(s.flip_angle, 50)
    tr = min(tr, 12.0)
    return _simple(ctx, lambda p: ph.bssfp(p, tr, min(te, tr / 2), fa), "none", 6.0)


def _fieldmap(ctx):
    s = ctx.spec
    part = str(s.extra.get("fieldmap_part", "magnitude")).lower()
    tr, fa = _v(s.repetition_time, 500), _v(s.flip_angle, 60)
    te1 = _v(s.echo_time, 4.92)
    te2 = float(s.extra.get("echo_time_2", te1 + 2.46))
    if part == "sepi":  # spin-echo EPI b=0 volume (one of a reverse phase-encoding pair)
        s0 = _epi_s0(ctx, _v(s.echo_time, 65), _v(s.repetition_time, 7000))
        (img,) = sample(ctx, [s0], epi_shift=epi_shift_map(ctx))
        return _result(ctx, scale(ctx, epi_artefacts(ctx, finish(ctx, img, snr_for(ctx, 4.0))), 400, 1500))
    signal = _inflow_gre(ctx, tr, fa)
    if part == "b0map":  # field map in Hz, as GE and Philips scanners compute it
        ppm = offresonance_ppm(ctx) + 0.3 * local_field_ppm(ctx)
        mag = tissue_volume(ctx, lambda p: signal(p, te1))
        img, f = sample(ctx, [mag, ppm])
        hz = f * 1e-6 * ph.field_tesla_gamma() * ctx.field_strength
        hz = np.where(img > 0.1 * _reference(img), hz, 0) + ctx.rng.normal(0, 2.0, hz.shape)
        hz = np.clip(hz, -2048, 2047).astype(np.float32)
        if not s.extra.get("b0_with_magnitude"):
            return _result(ctx, hz, signed=True)
        # GE's and most Philips' maps keep the first echo's magnitude as a second volume (habits.py)
        magnitude = scale(ctx, finish(ctx, img, snr_for(ctx, 3.0)))
        return _result(ctx, np.concatenate([hz, magnitude]), n_volumes=2, signed=True)
    if part.startswith("phase"):
        ppm = offresonance_ppm(ctx) + 0.3 * local_field_ppm(ctx)
        mag = tissue_volume(ctx, lambda p: signal(p, te1))
        img, f = sample(ctx, [mag, ppm])
        dphi = 2 * np.pi * f * 1e-6 * ph.field_tesla_gamma() * ctx.field_strength * (te2 - te1) / 1000.0
        snr = snr_for(ctx, 3.0)
        ref = _reference(img)
        sigma = ref / snr / np.maximum(img, 1e-3 * ref)
        dphi = dphi + ctx.rng.standard_normal(dphi.shape).astype(np.float32) * np.minimum(sigma, np.pi)
        dphi = _wrap(dphi)
        return _result(ctx, np.clip(dphi / np.pi * 4096, -4096, 4095).astype(np.float32), signed=True)
    vols = [tissue_volume(ctx, lambda p, te=te: signal(p, te)) for te in (te1, te2)]
    imgs = sample(ctx, vols)
    snr = snr_for(ctx, 3.0)
    ref = _reference(imgs[0])
    frames = np.concatenate([finish(ctx, im, snr, reference=ref) for im in imgs])
    n = len(ctx.planes)
    return _result(ctx, scale(ctx, frames), n_volumes=2, echo_numbers=[e for e in (1, 2) for _ in range(n)])


# how much of the flow each encoding direction sees: vessels and the aqueduct run mostly through an axial slice
_PC_DIRECTION = {"in": 1.0, "fh": 0.8, "ap": -0.45, "rl": 0.25}


def _pc_flow_maps(ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid maps of what moves: arterial and venous blood, and the CSF of the third ventricle, aqueduct and
    fourth ventricle (elsewhere CSF barely moves)."""
    names = ctx.params(False).names
    art, vein, csf = (parameter_volume(ctx, np.array([float(n == name) for n in names]))
                      for name in ("ARTERY", "VEIN", "CSF"))
    x, y, z = (np.arange(_GRID_SHAPE[i]) * GRID_SPACING + _GRID_MIN[i] for i in range(3))
    near = (np.exp(-0.5 * (x / 5.0) ** 2)[:, None, None] * np.exp(-0.5 * ((y + 32.0) / 16.0) ** 2)[None, :, None]
            * np.exp(-0.5 * ((z + 8.0) / 16.0) ** 2)[None, None, :])  # template mm around the aqueduct
    return art, vein, (csf * near).astype(np.float32)


def _phase_contrast(ctx):
    """Phase contrast: a bright-blood GRE magnitude, or the signed velocity (±VENC → ±4096, aliasing above it),
    one volume per cardiac phase of a cine (systolic arterial peak, CSF oscillating along the aqueduct)."""
    s = ctx.spec
    tr, te, fa = _v(s.repetition_time, 40), _v(s.echo_time, 4), _v(s.flip_angle, 20)
    venc = float(s.extra.get("venc", 20))
    mag = tissue_volume(ctx, lambda p: ph.spoiled_gre(p, tr, te, fa) * np.where(p.is_blood > 0, 2.5, 1.0))
    img, art, vein, csf = sample(ctx, [mag, *_pc_flow_maps(ctx)])
    n_t = max(int(s.n_temporal), 1)
    t = np.arange(n_t) / n_t
    arterial = 0.35 + 0.65 * np.maximum(np.sin(2 * np.pi * t), 0) ** 2 if n_t > 1 else np.array([0.5])
    csf_wave = np.sin(2 * np.pi * t + ctx.rng.uniform(0, 2 * np.pi)) if n_t > 1 else np.array([0.0])
    peaks = ctx.rng.uniform([40, 10, 3], [90, 30, 8])  # cm/s: arteries, veins, aqueduct CSF
    snr = snr_for(ctx, 5.0)
    ref = _reference(img)
    if s.extra.get("pc_part") != "phase":
        frames = np.concatenate([finish(ctx, img * (1 + 0.6 * art * (a - arterial.mean())), snr, reference=ref)
                                 for a in arterial])
        return _result(ctx, scale(ctx, frames), n_volumes=n_t, **_cine_indices(ctx, n_t))
    gain = _PC_DIRECTION.get(str(s.extra.get("venc_dir", "in")), 1.0) * np.pi / venc
    sigma = np.minimum(ref / snr / np.maximum(img, 1e-3 * ref), np.pi)  # no signal: uniform phase noise
    frames = []
    for a, c in zip(arterial, csf_wave):
        v = peaks[0] * a * art - peaks[1] * vein + peaks[2] * c * csf
        noise = ctx.rng.standard_normal(img.shape).astype(np.float32) * sigma
        frames.append(_wrap(gain * v + noise) / np.pi * 4096)
    return _result(ctx, np.clip(np.concatenate(frames), -4096, 4095).astype(np.float32), n_volumes=n_t, signed=True,
                   **_cine_indices(ctx, n_t))


def _cine_indices(ctx, n_t: int) -> dict:
    """Per-frame cardiac phase numbers of a cine (nothing for a single volume)."""
    n = len(ctx.planes)
    return {"temporal_indices": [k for k in range(n_t) for _ in range(n)]} if n_t > 1 else {}


def _other(ctx):
    kinds = ("T1MAP", "MTR", "CSI", "MT")
    kind = str(ctx.spec.extra.get("other_kind") or kinds[int(ctx.rng.integers(len(kinds)))]).upper()
    if kind == "PC":
        return _phase_contrast(ctx)
    p = ctx.params(ctx.spec.contrast)
    if kind == "T1MAP":
        t1 = parameter_volume(ctx, p.t1)
        pd = tissue_volume(ctx, lambda q: q.pd)
        img, pdi = sample(ctx, [t1, pd])
        noise_t1 = ctx.rng.uniform(0, 4000, img.shape)  # a fit to noise gives any T1
        img = np.where(pdi > 0.2, img * (1 + ctx.rng.normal(0, 0.03, img.shape)), noise_t1)
        return _result(ctx, np.clip(mask_map(ctx, img, pdi > 0.2), 0, 4095))
    if kind == "MTR":
        mtr = {n: 0.0 for n in p.names} | {
            "WM": 48.0,
            "GM": 38.0,
            "MUSCLE": 45.0,
            "MS": 30.0,
            "EDEMA": 25.0,
            "TUMOR": 30.0,
            "STROKE": 35.0,
            "DURA": 40.0,
            "CSF": 2.0,
        }
        m = parameter_volume(ctx, mtr)
        pd = tissue_volume(ctx, lambda q: q.pd)
        img, pdi = sample(ctx, [m, pd])
        img = np.where(pdi > 0.2, img + ctx.rng.normal(0, 2, img.shape), ctx.rng.uniform(0, 60, img.shape)) * 10
        return _result(ctx, np.clip(mask_map(ctx, img, pdi > 0.2), 0, 1000))
    if kind == "CSI":
        # a metabolite map: NAA-like signal from neurons, coarse 16×16 grid, interpolated for display
        naa = parameter_volume(
            ctx,
            {n: 0.0 for n in p.names} | {"GM": 1.0, "WM": 0.9, "MS": 0.6, "TUMOR": 0.3, "STROKE": 0.4, "EDEMA": 0.6},
        )
        (img,) = sample(ctx, [naa])
        n, r, c = img.shape
        coarse = ndi.zoom(img, (1, 16 / r, 16 / c), order=1, grid_mode=True, mode="nearest")
        img = ndi.zoom(coarse, (1, r / coarse.shape[1], c / coarse.shape[2]), order=3, grid_mode=True, mode="nearest")
        img = np.clip(img + ctx.rng.normal(0, 0.05, img.shape), 0, None)[:, :r, :c]
        return _result(ctx, scale(ctx, img.astype(np.float32), 200, 1000))
    # MT-weighted GRE: like a PD-ish GRE with macromolecular saturation of WM/GM
    s = ctx.spec
    tr, te, fa = _v(s.repetition_time, 30), _v(s.echo_time, 4), _v(s.flip_angle, 8)
    mt_sat = np.array([{"WM": 0.5, "GM": 0.62, "MUSCLE": 0.55, "DURA": 0.6}.get(n, 1.0) for n in p.names])
    return _simple(ctx, lambda q: ph.spoiled_gre(q, tr, te, fa) * mt_sat, "none", 6.0)


_RECIPES = {
    "SCOUT": _scout,
    "T1_2D_PRE": _t1_2d,
    "T1_2D_POST": _t1_2d,
    "T1_3D_PRE": _t1_3d,
    "T1_3D_POST": _t1_3d,
    "T2_2D": _t2,
    "T2_3D": _t2,
    "T2_HASTE": _haste,
    "FLAIR_2D": _flair,
    "FLAIR_3D": _flair,
    "PD": _pd,
    "T2STAR_GRE": _t2star,
    "SWI": _swi_processed,
    "SWI_MAG": _swi_mag,
    "SWI_PHASE": _swi_phase,
    "SWI_MINIP": lambda ctx: _swi_processed(ctx, minip=True),
    "DWI": _dwi,
    "ADC": _adc,
    "DIFFUSION_DERIVED": _diffusion_derived,
    "PERFUSION_DSC": _dsc,
    "PERFUSION_ASL": _asl,
    "TOF_MRA": _tof,
    "MRA_MIP": _mip,
    "CISS": _ciss,
    "FMRI_BOLD": _bold,
    "FIELDMAP": _fieldmap,
    "OTHER": _other,
}


def supported_sequences() -> list[str]:
    return list(_RECIPES)


def render_series(spec: SeriesSpec, phantom: Phantom, rng: np.random.Generator) -> RenderedSeries:
    """Pixels and geometry of ``spec`` acquired on ``phantom``.

    Frames are ordered volume-major (all slices of volume 0, then volume 1, …) for
    multi-volume series (b-values, time points, echoes).
    """
    recipe = _RECIPES.get(spec.sequence)
    if recipe is None:
        raise ValueError(f"render: no recipe for sequence {spec.sequence!r}; known: {', '.join(_RECIPES)}")
    if spec.rows < 4 or spec.columns < 4 or spec.n_slices < 1:
        raise ValueError(f"render: bad matrix {spec.rows}x{spec.columns}x{spec.n_slices} for {spec.sequence}")
    with _single_thread():
        planes = slice_geometry(spec, phantom, rng)
        offcentre(planes, spec, rng)
        ctx = _Context(spec, phantom, rng, planes, float(spec.field_strength or 1.5), spec.sequence in EPI_SEQUENCES)
        return recipe(ctx)


def offcentre(planes: list[Plane], spec: SeriesSpec, rng: np.random.Generator) -> None:
    """At ``OFFCENTRE_RATE``, shift the field of view in-plane by up to 18 % of its size (any sequence)."""
    move, (du, dv) = rng.random() < OFFCENTRE_RATE, rng.uniform(-0.18, 0.18, 2)
    seed = spec.extra.get("grid_seed")
    if seed is not None:  # a derived series and its source share the shift too (the draws above keep the stream)
        grid = np.random.default_rng([*seed, 1])
        move, (du, dv) = grid.random() < OFFCENTRE_RATE, grid.uniform(-0.18, 0.18, 2)
    if not move:
        return
    for p in planes:
        p.origin = p.origin + du * p.shape[1] * p.spacing[1] * p.row + dv * p.shape[0] * p.spacing[0] * p.col


class _single_thread:
    """Run torch ops on one thread: the interpolation calls are small, and on a busy machine
    (several generator processes) torch's thread pool spins instead of helping."""

    def __enter__(self):
        self.torch = _torch()
        if self.torch is not None:
            self.n = self.torch.get_num_threads()
            self.torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.torch is not None:
            self.torch.set_num_threads(self.n)
        return False


def tissue_maps(
    rendered: RenderedSeries, phantom: Phantom, tissues: list[str], n_planes: int | None = None
) -> dict[str, np.ndarray]:
    """Fractions of the named tissues on the planes of a rendered series (no EPI shift), for checks and labels.

    Base tissues (anatomy.BASE_TISSUES) and overlay tissues (ARTERY, VEIN, lesions) are accepted.
    ``n_planes`` limits to the first planes (one volume of a 4-D series).
    """
    n = len(rendered.positions) if n_planes is None else n_planes
    rows, cols = rendered.frames.shape[1:]
    planes = []
    for pos, iop in zip(rendered.positions[:n], rendered.orientations[:n]):
        planes.append(Plane(np.array(pos), np.array(iop[:3]), np.array(iop[3:]), rendered.pixel_spacing, (rows, cols)))
    vols = []
    for name in tissues:
        if name in phantom.fractions:
            vols.append(phantom.fractions[name])
        else:
            v = np.zeros(_GRID_SHAPE, np.float32)
            for o in phantom.overlays:
                if o.tissue == name:
                    np.maximum(v[o.index], o.fraction, out=v[o.index])
            vols.append(v)
    spec = SeriesSpec("OTHER", "AXIAL", rows=rows, columns=cols, slice_thickness=rendered.slice_thickness)
    ctx = _Context(spec, phantom, np.random.default_rng(0), planes, 3.0)
    with _single_thread():
        imgs = sample(ctx, vols, thickness=rendered.slice_thickness)
    return dict(zip(tissues, imgs))
