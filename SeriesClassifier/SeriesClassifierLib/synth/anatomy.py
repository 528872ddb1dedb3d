"""Digital head phantom: tissue fraction maps on a template grid, randomised per subject.

The template is built once per process from two anatomy sources that ship with
installed packages (no download):

* nilearn's copy of the MNI ICBM152 2009a nonlinear symmetric T1 template and its grey/white
  matter probability maps (``nilearn/datasets/data/mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz``).
  Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
  Neurological Institute, McGill University. Permission to use, copy, modify, and
  distribute this software and its documentation for any purpose and without fee is
  hereby granted, provided that the above copyright notice appear in all copies. The
  authors and McGill University make no representations about the suitability of this
  software for any purpose. It is provided "as is" without express or implied warranty.
  The authors are not responsible for any data loss, equipment damage, property loss, or
  injury to subjects or patients resulting from the use or misuse of this software
  package. (Fonov et al., NeuroImage 2011; Fonov et al., NeuroImage 2009.)
* pydeface's full-head mean T1 (``pydeface/data/mean_reg2mean.nii.gz``), which has
  skull, scalp and face. pydeface is MIT licensed ("The MIT License (MIT) Copyright
  (c) 2015"; Russell Poldrack and contributors): the copyright and permission notice
  must be kept with copies. It was registered to MNI space once, offline: a
  12-parameter affine maximising the correlation with the MNI T1 inside the dilated
  brain mask, refined by a 7-parameter fit that puts the MNI intracranial boundary
  ~11 mm inside the head surface over the calvarium (skull + scalp); the matrix is
  ``_MNI_TO_PYDEFACE`` below.

See docs/THIRD_PARTY.md for the full notices.

From these come the base tissues (GM, WM, CSF incl. ventricles and the subarachnoid
space, fat/marrow, bone, muscle/skin, eyes, dura/falx, choroid plexus, pituitary).
Per subject (``make_phantom``) come a random head pose and size, a smooth random
deformation, an arterial tree (ICA, vertebral/basilar, circle of Willis, ACA/MCA/PCA
branches), venous sinuses and cortical/medullary veins, and sometimes lesions (MS-like
plaques, a tumour with enhancing rim, necrosis and oedema, an acute infarct,
microbleeds). Subject-specific structures are small patches on the template grid
(``Overlay``); the deformation and pose are applied when the renderer samples, so
the shared base maps are never copied.

Coordinates: the template grid is in MNI space expressed in DICOM LPS (mm).
``Phantom.world_to_template`` maps scanner LPS (where the subject lies) to template LPS.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from ..errors import MissingDependencyError

BASE_TISSUES = ("GM", "WM", "CSF", "FAT", "BONE", "MUSCLE", "EYE", "DURA", "CHOROID", "PITUITARY")
OVERLAY_TISSUES = ("MS", "EDEMA", "NECROSIS", "TUMOR", "STROKE", "BLEED", "ARTERY", "VEIN")

GRID_SPACING = 1.5  # mm; a 1 mm series is still resolved, and a render stays fast
# template box in LPS mm (L, P, S); covers the head from the neck to the vertex and nose to occiput
_GRID_MIN = np.array([-96.0, -112.0, -96.0])
_GRID_SHAPE = (129, 163, 129)

# MNI (RAS) -> pydeface template world (RAS); found once with an affine registration (see module docstring)
_MNI_TO_PYDEFACE = np.array(
    [
        [0.92212, -0.00428, -0.02911, -5.12955],
        [0.00176, 0.92412, -0.06973, 16.72044],
        [0.02897, 0.06946, 0.96762, -5.55574],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _ras(points_mm: list[tuple[float, float, float]]) -> np.ndarray:
    """MNI RAS coordinates (as written in atlases) -> template LPS."""
    p = np.asarray(points_mm, dtype=float)
    return p * np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Template:
    """The shared, read-only base maps (one per process)."""

    fractions: dict[str, np.ndarray]  # name -> float32 (grid shape), fraction of the voxel
    affine: np.ndarray  # grid index -> template LPS mm
    brain: np.ndarray  # float32 brain fraction (GM+WM+inner CSF)
    icv: np.ndarray  # bool intracranial volume
    air: np.ndarray  # float32 air inside the head (sinuses, mastoids, airway): susceptibility source
    head: np.ndarray  # bool head mask
    wm_points: np.ndarray  # (n, 3) template LPS of deep white matter voxels (lesion sites)
    periventricular_points: np.ndarray  # (n, 3) WM voxels near the ventricles
    cortex_points: np.ndarray  # (n, 3) cortical GM voxels
    surface_center: np.ndarray  # (3,) centre used for the inner-skull radius table
    surface_radius: np.ndarray  # (n_theta, n_phi) distance from centre to the inner skull surface
    brain_center: np.ndarray  # (3,) template LPS
    # whether the anatomy goes on past the box's inferior and superior faces (a neck, a limb, a trunk) or ends
    # inside it (a vertex, a phantom): where it goes on, sampling repeats its last full cross-section
    continues: tuple[bool, bool] = (True, False)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # maps derived once per process


@dataclass
class Overlay:
    """A subject-specific structure: a fraction patch at a place in the template grid."""

    tissue: str  # one of OVERLAY_TISSUES, or a base tissue (an aged brain's widened sulci are CSF)
    index: tuple[slice, slice, slice]
    fraction: np.ndarray  # float32 patch, 0..1
    enhancing: float = 0.0  # gadolinium concentration (mM) after contrast; 0 = none


@dataclass
class Phantom:
    """One randomised subject.

    ``fractions``: base tissue fraction maps (shared template, read-only) on the grid
    described by ``affine`` (index -> template LPS mm). ``overlays``: the subject's vessels
    and lesions. ``world_to_template`` (4×4) and ``displacement`` (smooth field, mm, on the
    coarse grid ``displacement_affine``) map scanner LPS to template LPS.
    """

    fractions: dict[str, np.ndarray]
    affine: np.ndarray
    overlays: list[Overlay]
    world_to_template: np.ndarray
    displacement: np.ndarray  # (3, nx, ny, nz) mm
    displacement_affine: np.ndarray  # coarse index -> template LPS
    brain_center: np.ndarray  # scanner LPS of the brain centre
    template: Template = field(repr=False)
    params: dict = field(default_factory=dict)  # per-subject physiology (e.g. Gd dose, SNR factor)
    seed_info: dict = field(default_factory=dict)
    anatomy: str = "head"  # or a part of synth/body.py
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return _GRID_SHAPE

    def has(self, tissue: str) -> bool:
        return any(o.tissue == tissue for o in self.overlays)

    def template_to_world(self, points: np.ndarray) -> np.ndarray:
        """Template LPS -> scanner LPS, ignoring the small deformation (for placing stacks)."""
        inv = np.linalg.inv(self.world_to_template)
        return points @ inv[:3, :3].T + inv[:3, 3]

    def to_template(self, world: np.ndarray) -> np.ndarray:
        """Scanner LPS points (..., 3) -> template LPS, including the smooth deformation."""
        t = world @ self.world_to_template[:3, :3].T + self.world_to_template[:3, 3]
        return t + self.displacement_at(t)

    def displacement_at(self, t: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.displacement_affine)
        idx = t @ inv[:3, :3].T + inv[:3, 3]
        flat = idx.reshape(-1, 3).T
        out = np.stack([ndi.map_coordinates(self.displacement[k], flat, order=1, mode="nearest") for k in range(3)])
        return out.T.reshape(t.shape)


# ---------------------------------------------------------------- template (once per process)


GENERATOR_INSTALL = "pip install 'seriesclassifier[synth]'"


def _missing(what: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"the simulated-study generator needs {what} (nibabel reads, nilearn and pydeface ship the anatomy "
        f"templates); they are an optional extra: {GENERATOR_INSTALL}"
    )


def _package_file(package: str, relative: str) -> str:
    """A data file shipped inside ``package``, found without importing it (pydeface's import pulls nipype)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(f"{package}, which is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.exists(path):
        raise FileNotFoundError(f"anatomy source {path} missing: reinstall {package}")
    return path


def _grid_points() -> np.ndarray:
    idx = np.indices(_GRID_SHAPE, dtype=np.float32).reshape(3, -1)
    return (idx * GRID_SPACING + _GRID_MIN[:, None].astype(np.float32)).T  # (n, 3) LPS


def _grid_affine() -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] *= GRID_SPACING
    a[:3, 3] = _GRID_MIN
    return a


def _resample(volume: np.ndarray, vox_affine: np.ndarray, mni_to_source: np.ndarray, smooth: float) -> np.ndarray:
    """Resample a NIfTI volume (``vox_affine``: voxel -> its RAS world) onto the template grid.

    ``mni_to_source`` maps MNI RAS to the volume's world. One affine_transform: no coordinate arrays.
    """
    if smooth > 0:
        volume = ndi.gaussian_filter(volume, smooth)
    grid_to_lps = _grid_affine()
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    m = np.linalg.inv(vox_affine) @ mni_to_source @ lps_to_ras @ grid_to_lps
    lin = m[:3, :3]
    if np.allclose(lin, np.diag(np.diag(lin))):
        lin = np.diag(lin)  # axis-aligned (the MNI files): scipy takes its much faster zoom path
    return ndi.affine_transform(volume, lin, offset=m[:3, 3], output_shape=_GRID_SHAPE, order=1, cval=0.0)


def _grid_axes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS coordinates along each grid axis, shaped to broadcast to the grid."""
    ax = [(np.arange(n) * GRID_SPACING + _GRID_MIN[k]).astype(np.float32) for k, n in enumerate(_GRID_SHAPE)]
    return ax[0][:, None, None], ax[1][None, :, None], ax[2][None, None, :]


def _distance_to(center: np.ndarray, radii: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Distance (scaled per axis by ``radii``) from a point, on the whole grid, via broadcasting."""
    x, y, z = _grid_axes()
    return np.sqrt(
        ((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 + ((z - center[2]) / radii[2]) ** 2
    )


def _ball(radius_vox: int) -> np.ndarray:
    r = radius_vox
    z, y, x = np.ogrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return (x * x + y * y + z * z) <= r * r + 0.5


def _ellipsoid_field(points: np.ndarray, center: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Normalised radius (1 on the surface) of points in an ellipsoid."""
    d = (points - center) @ rotation
    return np.sqrt(np.sum((d / radii) ** 2, axis=-1))


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Build the base tissue maps from the packaged templates (≈2–4 s, once per process)."""
    t1_img, gm_img, wm_img, head_img = _source_images()
    brain, gm, wm, inner_csf = _brain_maps(t1_img, gm_img, wm_img)
    head_t1, head = _head_maps(head_img)
    icv, icv_f, csf = _intracranial(brain, head, inner_csf)
    dist_icv = (ndi.distance_transform_edt(~icv) * GRID_SPACING).astype(np.float32)
    fat, bone, air, muscle = _extracranial(head, head_t1, icv_f, dist_icv)
    eye, fat, muscle, bone = _eyes(fat, muscle, bone, air, icv_f)
    dura, choroid, pituitary, csf = _small_structures(icv, csf, inner_csf, bone)
    fractions = _normalised({"GM": gm, "WM": wm, "CSF": csf, "FAT": fat, "BONE": bone, "MUSCLE": muscle,
                             "EYE": eye, "DURA": dura, "CHOROID": choroid, "PITUITARY": pituitary})

    # where lesions may be placed: deep and periventricular white matter, the cortex
    lps = _grid_points()
    ventricles = ndi.binary_opening(inner_csf > 0.8, iterations=1)
    dist_vent = ndi.distance_transform_edt(~ventricles) * GRID_SPACING
    deep_wm = (wm > 0.9).ravel()
    peri = (deep_wm & (dist_vent.ravel() < 9)).nonzero()[0]
    cortex = ((gm > 0.7) & (dist_icv < 1)).ravel().nonzero()[0]
    brain_center = lps[(brain > 0.5).ravel()].mean(axis=0)

    center = _ras([(0, -18, 12)])[0]
    radius = _surface_radius(icv, center)
    return Template(
        fractions=fractions,
        affine=_grid_affine(),
        brain=brain.astype(np.float32),
        icv=icv,
        air=air.astype(np.float32),
        head=head,
        wm_points=lps[deep_wm.nonzero()[0]],
        periventricular_points=lps[peri],
        cortex_points=lps[cortex],
        surface_center=center,
        surface_radius=radius,
        brain_center=brain_center,
    )


def _source_images() -> tuple:
    """The MNI152 T1 and tissue probability maps (nilearn) and pydeface's mean head, as nibabel images."""
    try:
        import nibabel as nib
    except ImportError:
        raise _missing("nibabel, which is not installed") from None

    mni_dir = "datasets/data/"
    t1_img = nib.load(_package_file("nilearn", mni_dir + "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    gm_img = nib.load(_package_file("nilearn", mni_dir + "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"))
    wm_img = nib.load(_package_file("nilearn", mni_dir + "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"))
    head_img = nib.load(_package_file("pydeface", "data/mean_reg2mean.nii.gz"))
    return t1_img, gm_img, wm_img, head_img


def _brain_maps(t1_img, gm_img, wm_img) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(brain, GM, WM, CSF inside the brain mask) on the grid: the tissue maps scaled to fill the mask."""
    eye4 = np.eye(4)
    mni_aff = t1_img.affine
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32)
    # the brain mask's morphology is done on the (3x smaller) template grid
    inside = _resample((t1 > 3).astype(np.float32), mni_aff, eye4, 0.5)
    filled = ndi.binary_fill_holes(ndi.binary_closing(inside > 0.5, iterations=1)).astype(np.float32)
    brain = np.clip(np.maximum(inside, ndi.gaussian_filter(filled, 0.5)), 0, 1)
    gm = np.clip(_resample(np.asarray(gm_img.dataobj, np.float32) / 255.0, mni_aff, eye4, 0.5), 0, 1)
    wm = np.clip(_resample(np.asarray(wm_img.dataobj, np.float32) / 255.0, mni_aff, eye4, 0.5), 0, 1)
    tissue = np.clip(gm + wm, 0, 1)
    gm, wm = gm * np.minimum(1, brain / np.maximum(tissue, 1e-3)), wm * np.minimum(1, brain / np.maximum(tissue, 1e-3))
    inner_csf = np.clip(brain - gm - wm, 0, 1)
    return brain, gm, wm, inner_csf


def _head_maps(head_img) -> tuple[np.ndarray, np.ndarray]:
    """(the mean head's T1, normalised to its 99th percentile; the filled head mask) on the grid."""
    head_t1 = _resample(np.asarray(head_img.dataobj, np.float32), head_img.affine, _MNI_TO_PYDEFACE, 0.0)
    head_t1 /= np.percentile(head_t1[head_t1 > 60], 99)
    head = ndi.binary_fill_holes(ndi.binary_closing(head_t1 > 0.14, iterations=2))
    return head_t1, head


def _intracranial(brain: np.ndarray, head: np.ndarray, inner_csf: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intracranial volume mask, its soft fraction, all CSF): ~3 mm of subarachnoid CSF around the brain."""
    brain_bin = brain > 0.5
    # the subarachnoid space: ~3 mm of CSF between brain and inner table
    icv = ndi.binary_fill_holes(ndi.binary_dilation(brain_bin, _ball(2))) & head
    icv_f = np.clip(ndi.gaussian_filter(icv.astype(np.float32), 0.6), 0, 1)
    icv_f = np.maximum(icv_f, brain)
    csf = inner_csf + np.clip(icv_f - brain, 0, 1)
    return icv, icv_f, csf


def _ramp(d: np.ndarray, a: float, b: float) -> np.ndarray:
    """1 inside [a, b] mm with 1 mm soft edges."""
    return np.clip(np.minimum(d - a, b - d) + 0.5, 0, 1)


def _extracranial(head: np.ndarray, head_t1: np.ndarray, icv_f: np.ndarray, dist_icv: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fat, bone, air, muscle) outside the intracranial volume.

    Near the brain: calvarium layers by distance (the averaged head's intensities are too smooth and
    uneven to separate them); farther away (face, neck, skull base) the head T1 intensity decides:
    bright = fat/marrow, dark = bone or air.
    """
    rest = np.clip(ndi.gaussian_filter(head.astype(np.float32), 0.6) - icv_f, 0, 1)
    h = ndi.gaussian_filter(head_t1, 0.7)
    fat_i = np.clip((h - 0.58) / 0.17, 0, 1)
    dark_i = np.clip((0.38 - h) / 0.2, 0, 1)
    dist_out = (ndi.distance_transform_edt(head) * GRID_SPACING).astype(np.float32)

    inner_table, diploe, outer_table = _ramp(dist_icv, -1, 2.0), _ramp(dist_icv, 2.0, 4.5), _ramp(dist_icv, 4.5, 6.5)
    scalp = np.clip(dist_icv - 6.0, 0, 1)
    skin = np.clip(2.0 - dist_out, 0, 1) * scalp
    x, y, z = _grid_axes()
    temporalis = np.clip((np.abs(x) - 42) / 6, 0, 1) * np.clip((35 - z) / 10, 0, 1) * np.clip((20 - y) / 10, 0, 1)
    muscle_g = skin + (scalp - skin) * temporalis * 0.8
    fat_g = np.clip(scalp - muscle_g, 0, 1) + 0.7 * diploe
    bone_g = inner_table + outer_table + 0.3 * diploe
    g = np.clip((20.0 - dist_icv) / 5.0, 0, 1)  # 1 near the brain (layers), 0 far from it (intensity)
    bone_i = dark_i * np.clip((16.0 - dist_icv) / 6.0, 0.5, 1)
    fat = rest * (g * fat_g + (1 - g) * fat_i)
    bone = rest * (g * bone_g + (1 - g) * bone_i)
    air = rest * (1 - g) * dark_i * (1 - np.clip((16.0 - dist_icv) / 6.0, 0.5, 1))
    muscle = np.clip(rest - fat - bone - air, 0, 1)
    return fat, bone, air, muscle


def _eyes(fat: np.ndarray, muscle: np.ndarray, bone: np.ndarray, air: np.ndarray, icv_f: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(eye, fat, muscle, bone): vitreous in the orbits (located on the pydeface head), orbital fat around it.

    ``air`` is scaled in place (as the others) so that no voxel holds eye and air.
    """
    eye = np.zeros(_GRID_SHAPE, np.float32)
    for c in _ras([(31, 64, -29), (-31, 64, -29)]):
        r = _distance_to(c)
        eye = np.maximum(eye, np.clip((11.5 - r) / GRID_SPACING + 0.5, 0, 1) * (1 - icv_f))
        orbit = np.clip((17.0 - r) / GRID_SPACING + 0.5, 0, 1) - eye
        fat = np.maximum(fat, orbit * 0.8 * (1 - icv_f))
    for name_map in (fat, muscle, bone, air):
        name_map *= 1 - eye
    fat_mus_bone = fat + muscle + bone
    scale = np.minimum(1, (1 - icv_f - eye) / np.maximum(fat_mus_bone, 1e-3))
    return eye, fat * scale, muscle * scale, bone * scale


def _small_structures(icv: np.ndarray, csf: np.ndarray, inner_csf: np.ndarray, bone: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(dura, choroid plexus, pituitary, CSF less them); ``csf`` and ``bone`` are cut out in place.

    Dura: the shell lining the inner table plus the falx in the interhemispheric fissure; choroid plexus
    in the ventricular atria, pituitary in the sella (approximate MNI positions).
    """
    x, _, z = _grid_axes()
    shell = icv & ~ndi.binary_erosion(icv, iterations=1)
    dura = ndi.gaussian_filter(shell.astype(np.float32), 0.5) * 0.5
    dura = np.maximum(dura, csf * np.clip(1.5 - np.abs(x) / GRID_SPACING, 0, 1) * (z > 0) * 0.7)
    choroid = np.zeros(_GRID_SHAPE, np.float32)
    for c in _ras([(28, -40, 14), (-28, -40, 14)]):
        r = _distance_to(c)
        choroid = np.maximum(choroid, inner_csf * np.clip((7.0 - r) / 3.0, 0, 1) * 0.6)
    pit_c = _ras([(0, 2, -34)])[0]
    rp = _distance_to(pit_c, (6.0, 5.0, 4.0))
    pituitary = np.clip((1.0 - rp) * 3, 0, 1).astype(np.float32)
    for m in (csf, dura, choroid):
        m *= 1 - pituitary
    bone *= 1 - pituitary
    csf = csf - dura - choroid
    csf = np.clip(csf, 0, 1)
    return dura, choroid, pituitary, csf


def _normalised(fractions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Read-only float32 fractions in [0, 1] whose sum per voxel is at most 1.

    The two sources disagree by a few mm in places (orbits, skull base): keep each voxel's sum ≤ 1.
    """
    fractions = {k: np.clip(v, 0, 1).astype(np.float32) for k, v in fractions.items()}
    total = sum(fractions.values())
    over = np.maximum(total, 1.0)
    fractions = {k: np.ascontiguousarray(v / over, dtype=np.float32) for k, v in fractions.items()}
    for v in fractions.values():
        v.setflags(write=False)
    return fractions


_N_THETA, _N_PHI = 64, 128


def _directions(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Unit vectors; theta from superior (0) to inferior (pi), phi around S (LPS)."""
    theta, phi = np.broadcast_arrays(theta, phi)
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)


def _surface_radius(icv: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Distance from ``center`` to the inner skull along each direction (for veins along the surface)."""
    theta = (np.arange(_N_THETA) + 0.5) / _N_THETA * np.pi
    phi = np.arange(_N_PHI) / _N_PHI * 2 * np.pi
    d = _directions(theta[:, None], phi[None, :])  # (nt, np, 3)
    radii = np.arange(0, 110, 1.0)
    pts = center + d[..., None, :] * radii[:, None]  # (nt, np, nr, 3)
    idx = (pts - _GRID_MIN) / GRID_SPACING
    inside = ndi.map_coordinates(icv.astype(np.float32), idx.reshape(-1, 3).T, order=0, mode="constant")
    inside = inside.reshape(pts.shape[:-1]) > 0.5
    # last inside sample along the ray
    last = np.where(inside, radii, 0).max(axis=-1)
    return ndi.uniform_filter(last, 3, mode="wrap")


# ---------------------------------------------------------------- vessels


# Arterial tree in MNI RAS mm, from atlases of the circle of Willis (approximate):
# each entry is (polyline, radius at start mm, radius at end mm). Mirrored for left/right with "±".
_ARTERIES_RIGHT = [
    # internal carotid artery: neck -> carotid siphon -> terminus
    ([(22, 8, -95), (20, 10, -70), (17, 4, -50), (16, 12, -38), (15, 16, -28), (14, 5, -20), (14, 2, -16)], 2.4, 2.0),
    # vertebral artery
    ([(12, -40, -95), (10, -38, -70), (5, -38, -55)], 1.8, 1.6),
    # middle cerebral artery: M1 laterally, then M2/M3 up in the sylvian fissure
    ([(14, 2, -16), (28, 4, -14), (40, 4, -8)], 1.5, 1.3),
    ([(40, 4, -8), (46, 8, 2), (50, 18, 12), (48, 30, 24)], 1.1, 0.7),
    ([(40, 4, -8), (48, -8, 4), (54, -20, 14), (54, -36, 24)], 1.1, 0.7),
    ([(46, 8, 2), (54, 0, 20), (52, -8, 38)], 0.8, 0.5),
    ([(48, -8, 4), (50, -40, 10), (48, -58, 18)], 0.8, 0.5),
    # anterior cerebral artery: A1 medially, A2 up the genu, pericallosal along the corpus callosum
    ([(14, 2, -16), (6, 12, -12), (2, 18, -8)], 1.1, 1.0),
    ([(2, 18, -8), (3, 32, 4), (3, 34, 20), (4, 22, 34), (4, 0, 42), (5, -26, 46), (5, -48, 40)], 1.0, 0.6),
    ([(3, 34, 20), (6, 52, 24), (8, 58, 40)], 0.7, 0.5),
    # posterior communicating and posterior cerebral artery around the midbrain
    ([(14, 2, -16), (12, -8, -16), (8, -18, -16)], 0.7, 0.7),
    (
        [(2, -20, -18), (8, -18, -16), (18, -26, -12), (24, -40, -6), (20, -60, 0), (14, -80, 6), (10, -92, 10)],
        1.1,
        0.6,
    ),
    ([(24, -40, -6), (30, -56, -10), (34, -70, -6)], 0.7, 0.5),
    # superior cerebellar artery
    ([(2, -22, -22), (12, -30, -24), (20, -46, -22), (14, -64, -18)], 0.7, 0.5),
]
_ARTERIES_MIDLINE = [
    # basilar artery from the vertebral confluence to the tip
    ([(5, -38, -55), (0, -34, -50), (0, -26, -34), (2, -20, -18)], 1.7, 1.5),
    ([(-5, -38, -55), (0, -34, -50)], 1.6, 1.6),
    # anterior communicating artery
    ([(2, 18, -8), (-2, 18, -8)], 0.6, 0.6),
]
_VEINS_FIXED = [
    # straight sinus, vein of Galen, internal cerebral veins
    ([(0, -46, 6), (0, -60, 2), (0, -80, 2), (0, -98, 4)], 2.0, 2.6),
    ([(3, 0, 16), (2, -22, 16), (0, -38, 10), (0, -46, 6)], 1.0, 1.6),
    ([(-3, 0, 16), (-2, -22, 16), (0, -38, 10)], 1.0, 1.4),
    # transverse and sigmoid sinuses, jugular bulb
    (
        [(0, -100, 4), (24, -98, 2), (42, -84, -4), (50, -60, -14), (46, -44, -32), (40, -34, -48), (36, -30, -70)],
        3.0,
        2.6,
    ),
    (
        [
            (0, -100, 4),
            (-24, -98, 2),
            (-42, -84, -4),
            (-50, -60, -14),
            (-46, -44, -32),
            (-40, -34, -48),
            (-36, -30, -70),
        ],
        3.0,
        2.6,
    ),
    # basal veins of Rosenthal
    ([(20, -8, -12), (24, -26, -6), (14, -38, 6), (2, -44, 8)], 0.9, 1.1),
    ([(-20, -8, -12), (-24, -26, -6), (-14, -38, 6), (-2, -44, 8)], 0.9, 1.1),
    # thalamostriate veins
    ([(16, 6, 12), (10, -4, 16), (4, -2, 16)], 0.7, 0.8),
    ([(-16, 6, 12), (-10, -4, 16), (-4, -2, 16)], 0.7, 0.8),
]


def _mirror(polyline: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    return [(-x, y, z) for x, y, z in polyline]


def _polyline_to_segments(points: np.ndarray, r0: float, r1: float):
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(lengths)])
    total = max(cum[-1], 1e-6)
    radii = r0 + (r1 - r0) * cum / total
    for i in range(len(points) - 1):
        yield points[i], points[i + 1], radii[i], radii[i + 1]


def _smooth_polyline(points: np.ndarray, step: float = 3.0) -> np.ndarray:
    """Resample a polyline densely with a Catmull-Rom-ish smoothing so vessels curve."""
    if len(points) < 3:
        return points
    from scipy.interpolate import CubicSpline

    d = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    keep = np.concatenate([[True], np.diff(d) > 1e-6])
    points, d = points[keep], d[keep]
    if len(points) < 3:
        return points
    cs = CubicSpline(d, points, axis=0, bc_type="natural")
    n = max(int(d[-1] / step), 2)
    return cs(np.linspace(0, d[-1], n + 1))


def _rasterise_tubes(segments: list, tissue: str) -> list[Overlay]:
    """Partial-volume fractions of tubes (p0, p1, r0, r1) as one overlay patch per vessel."""
    if not segments:
        return []
    pts = np.array([[s[0], s[1]] for s in segments])  # (n, 2, 3)
    rmax = max(max(s[2], s[3]) for s in segments)
    lo = np.floor((pts.min(axis=(0, 1)) - rmax - 2 - _GRID_MIN) / GRID_SPACING).astype(int)
    hi = np.ceil((pts.max(axis=(0, 1)) + rmax + 2 - _GRID_MIN) / GRID_SPACING).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, _GRID_SHAPE)
    if np.any(hi <= lo):
        return []
    axes = [np.arange(lo[k], hi[k]) * GRID_SPACING + _GRID_MIN[k] for k in range(3)]
    frac = np.zeros(tuple(hi - lo), np.float32)
    for p0, p1, r0, r1 in segments:
        slo = np.maximum(np.floor((np.minimum(p0, p1) - max(r0, r1) - 2 - _GRID_MIN) / GRID_SPACING).astype(int), lo)
        shi = np.minimum(np.ceil((np.maximum(p0, p1) + max(r0, r1) + 2 - _GRID_MIN) / GRID_SPACING).astype(int) + 1, hi)
        if np.any(shi <= slo):
            continue
        gx, gy, gz = np.meshgrid(*[axes[k][slo[k] - lo[k] : shi[k] - lo[k]] for k in range(3)], indexing="ij")
        q = np.stack([gx, gy, gz], axis=-1)
        v = p1 - p0
        vv = max(float(v @ v), 1e-9)
        t = np.clip(((q - p0) @ v) / vv, 0, 1)
        dist = np.linalg.norm(q - (p0 + t[..., None] * v), axis=-1)
        r = r0 + (r1 - r0) * t
        # fraction of a 1.5 mm voxel covered: linear ramp over one voxel around the wall, thin vessels dimmer
        f = np.clip((r - dist) / GRID_SPACING + 0.5, 0, 1) * np.minimum(1.0, 2 * r / GRID_SPACING)
        sub = tuple(slice(slo[k] - lo[k], shi[k] - lo[k]) for k in range(3))
        np.maximum(frac[sub], f.astype(np.float32), out=frac[sub])
    index = tuple(slice(int(lo[k]), int(hi[k])) for k in range(3))
    return [Overlay(tissue, index, frac)]


def _jitter(polyline, rng: np.random.Generator, sd: float) -> np.ndarray:
    p = _ras(polyline)
    noise = rng.normal(0, sd, p.shape)
    noise[0] *= 0.3  # keep the origin attached to its parent
    return p + noise


def _arteries(rng: np.random.Generator) -> list[Overlay]:
    out = []
    radius_scale = rng.uniform(0.85, 1.2)
    for side in (1, -1):
        for poly, r0, r1 in _ARTERIES_RIGHT:
            if side < 0:
                poly = _mirror(poly)
            if r1 < 0.8 and rng.random() < 0.15:  # small branches vary from subject to subject
                continue
            p = _smooth_polyline(_jitter(poly, rng, 1.5))
            s = rng.uniform(0.85, 1.15) * radius_scale
            out += _rasterise_tubes(list(_polyline_to_segments(p, r0 * s, r1 * s)), "ARTERY")
    for poly, r0, r1 in _ARTERIES_MIDLINE:
        p = _smooth_polyline(_jitter(poly, rng, 1.0))
        out += _rasterise_tubes(list(_polyline_to_segments(p, r0 * radius_scale, r1 * radius_scale)), "ARTERY")
    return out


def _surface_point(t: Template, theta: float, phi: float, depth: float) -> np.ndarray:
    it = int(np.clip(theta / np.pi * _N_THETA, 0, _N_THETA - 1))
    ip = int(phi / (2 * np.pi) * _N_PHI) % _N_PHI
    r = t.surface_radius[it, ip] - depth
    return t.surface_center + _directions(np.array(theta), np.array(phi)) * r


def _veins(t: Template, rng: np.random.Generator) -> list[Overlay]:
    out = []
    # superior sagittal sinus along the midline inner table from the frontal pole to the torcula
    thetas = np.linspace(np.deg2rad(rng.uniform(70, 85)), np.deg2rad(-100), 24)
    sss = []
    for th in thetas:
        # phi = -pi/2 is anterior (LPS: -P), phi = +pi/2 posterior; negative theta -> posterior side
        phi = -np.pi / 2 if th >= 0 else np.pi / 2
        sss.append(_surface_point(t, abs(th), phi, 2.0))
    sss = np.array(sss)
    out += _rasterise_tubes(list(_polyline_to_segments(_smooth_polyline(sss), 1.6, 3.2)), "VEIN")
    for poly, r0, r1 in _VEINS_FIXED:
        p = _smooth_polyline(_jitter(poly, rng, 1.0))
        out += _rasterise_tubes(list(_polyline_to_segments(p, r0, r1)), "VEIN")
    # cortical veins running up over the convexity into the sinus
    for _ in range(int(rng.integers(16, 28))):
        phi0 = rng.uniform(-np.pi, np.pi)
        th0 = rng.uniform(np.deg2rad(50), np.deg2rad(100))
        th1 = rng.uniform(np.deg2rad(3), np.deg2rad(10))
        n = 10
        ths = np.linspace(th0, th1, n)
        phis = phi0 + np.cumsum(rng.normal(0, 0.05, n))
        depth = rng.uniform(2.5, 4.0)
        pts = np.array([_surface_point(t, th, ph, depth) for th, ph in zip(ths, phis)])
        out += _rasterise_tubes(list(_polyline_to_segments(_smooth_polyline(pts), 0.6, rng.uniform(0.9, 1.4))), "VEIN")
    # medullary veins: short straight radial lines in the white matter (seen on SWI)
    segs = []
    if len(t.periventricular_points):
        for i in rng.choice(len(t.periventricular_points), size=int(rng.integers(40, 80))):
            p0 = t.periventricular_points[i]
            direction = p0 - t.brain_center
            direction[2] *= 0.3
            direction /= np.linalg.norm(direction) + 1e-6
            segs.append((p0, p0 + direction * rng.uniform(10, 20), 0.5, 0.4))
    out += _rasterise_tubes(segs, "VEIN")
    return out


# ---------------------------------------------------------------- lesions


def _ellipsoid_overlay(
    center: np.ndarray,
    radii: np.ndarray,
    rotation: np.ndarray,
    tissue: str,
    weight: np.ndarray | None = None,
    inner: float = 0.0,
    enhancing: float = 0.0,
    shape=None,
) -> Overlay | None:
    """Smooth ellipsoid (or a shell when ``inner`` > 0, as a fraction of the radii) as an overlay patch.

    ``shape(points - center)`` (optional) scales the normalised radius, making the outline lobulated.
    """
    rmax = float(np.max(radii)) + 2 * GRID_SPACING
    lo = np.maximum(np.floor((center - rmax - _GRID_MIN) / GRID_SPACING).astype(int), 0)
    hi = np.minimum(np.ceil((center + rmax - _GRID_MIN) / GRID_SPACING).astype(int) + 1, _GRID_SHAPE)
    if np.any(hi <= lo):
        return None
    axes = [np.arange(lo[k], hi[k]) * GRID_SPACING + _GRID_MIN[k] for k in range(3)]
    q = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    rho = _ellipsoid_field(q, center, radii, rotation)
    if shape is not None:
        rho = rho * shape(q - center)
    edge = GRID_SPACING / float(np.mean(radii))
    f = np.clip((1.0 - rho) / edge + 0.5, 0, 1)
    if inner > 0:
        f = f * np.clip((rho - inner) / edge + 0.5, 0, 1)
    index = tuple(slice(int(lo[k]), int(hi[k])) for k in range(3))
    if weight is not None:
        f = f * weight[index]
    if not np.any(f > 0.05):
        return None
    return Overlay(tissue, index, f.astype(np.float32), enhancing)


def _lobulation(rng: np.random.Generator, amplitude: float, scale_mm: float):
    """A smooth random radial modulation (sum of plane waves) for irregular lesion outlines."""
    k = rng.normal(0, 1, (5, 3))
    k *= (2 * np.pi / scale_mm) / np.linalg.norm(k, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, 5)
    weight = rng.uniform(0.5, 1.0, 5)
    weight *= amplitude / weight.sum()

    def shape(d: np.ndarray) -> np.ndarray:
        return 1.0 + np.sin(d @ k.T + phase) @ weight

    return shape


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _lesions(t: Template, rng: np.random.Generator, info: dict) -> list[Overlay]:
    out: list[Overlay] = []
    brain_w = np.clip(t.fractions["WM"] + 0.7 * t.fractions["GM"], 0, 1)
    if rng.random() < 0.35 and len(t.periventricular_points):
        n = int(rng.integers(2, 16))
        info["ms_plaques"] = n
        for _ in range(n):
            pool = t.periventricular_points if rng.random() < 0.7 else t.wm_points
            c = pool[rng.integers(len(pool))] + rng.normal(0, 2, 3)
            radii = rng.uniform(1.5, 6.0, 3) * np.array([1.0, 1.0, 1.6])
            enh = 0.35 if rng.random() < 0.15 else 0.0
            o = _ellipsoid_overlay(
                c, radii, _random_rotation(rng), "MS", brain_w, enhancing=enh, shape=_lobulation(rng, 0.15, 8.0)
            )
            if o is not None:
                out.append(o)
    if rng.random() < 0.15 and len(t.wm_points):
        c = t.wm_points[rng.integers(len(t.wm_points))]
        r = rng.uniform(6, 16)
        rot = _random_rotation(rng)
        radii = r * rng.uniform(0.8, 1.2, 3)
        info["tumour_radius_mm"] = round(float(r), 1)
        lobes = _lobulation(rng, 0.25, 12.0)
        for o in (
            _ellipsoid_overlay(
                c, radii * rng.uniform(1.8, 2.8), rot, "EDEMA", t.fractions["WM"], shape=_lobulation(rng, 0.35, 25.0)
            ),
            _ellipsoid_overlay(
                c, radii, rot, "TUMOR", t.brain + 0.3, inner=rng.uniform(0.5, 0.75), enhancing=0.6, shape=lobes
            ),
            _ellipsoid_overlay(c, radii * 0.7, rot, "NECROSIS", None, shape=lobes),
        ):
            if o is not None:
                out.append(o)
    if rng.random() < 0.15 and len(t.cortex_points):
        # acute infarct: a wedge of cortex and underlying white matter in one territory
        cands = t.cortex_points[np.abs(t.cortex_points[:, 0]) > 25]
        if len(cands):
            c = cands[rng.integers(len(cands))]
            c = c + (t.brain_center - c) * rng.uniform(0.05, 0.2)
            radii = rng.uniform(6, 22, 3)
            info["stroke"] = True
            o = _ellipsoid_overlay(
                c,
                radii,
                _random_rotation(rng),
                "STROKE",
                np.clip(t.fractions["GM"] + t.fractions["WM"], 0, 1),
                shape=_lobulation(rng, 0.3, 20.0),
            )
            if o is not None:
                out.append(o)
    if rng.random() < 0.15:
        pool = np.concatenate([t.wm_points[::50], t.cortex_points[::20]])
        n_bleeds = int(rng.integers(1, 10))
        info["microbleeds"] = n_bleeds
        for i in rng.choice(len(pool), size=n_bleeds):
            o = _ellipsoid_overlay(pool[i], np.full(3, rng.uniform(1.2, 2.2)), np.eye(3), "BLEED")
            if o is not None:
                out.append(o)
    return out


# ---------------------------------------------------------------- subject


def _pose(t: Template, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random head pose and size: returns world->template 4×4 and the brain centre in the scanner."""
    from scipy.spatial.transform import Rotation

    angles = rng.normal(0, [4.0, 3.0, 3.0])  # pitch (about L-R) largest: chin up/down
    rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    # head size and shape: children to large adults, round and long heads (the CNN must not learn one brain)
    scale = np.exp(rng.normal(0, 0.05, 3)) * np.exp(rng.normal(0, 0.06))
    scale = np.clip(scale, 0.82, 1.18)
    # brain centre somewhere near the magnet's isocentre
    world_center = np.array([rng.normal(0, 3), rng.normal(10, 8), rng.normal(20, 15)])
    return world_to_template(rot, scale, t.brain_center, world_center), world_center


def world_to_template(rot: np.ndarray, scale: np.ndarray, template_center: np.ndarray,
                      world_center: np.ndarray) -> np.ndarray:
    """The 4×4 that undoes a pose: world = rot·diag(scale)·(template − c_t) + c_w."""
    m = np.diag(1 / scale) @ rot.T
    w2t = np.eye(4)
    w2t[:3, :3] = m
    w2t[:3, 3] = template_center - m @ world_center
    return w2t


def _displacement(rng: np.random.Generator, amplitude: float, atrophy: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field (mm) on a coarse grid over the template box.

    ``atrophy`` (mm) adds a radial pull towards the ventricles' centre: samples near the
    ventricles come from closer in, so the ventricles look wider (an older brain).
    """
    step = 8.0
    shape = tuple(int(np.ceil(_GRID_SHAPE[k] * GRID_SPACING / step)) + 1 for k in range(3))
    field_ = rng.normal(0, 1, (3, *shape))
    field_ = np.stack([ndi.gaussian_filter(f, 18.0 / step, mode="nearest") for f in field_])
    field_ *= amplitude / (field_.std() + 1e-9)
    if atrophy > 0:
        axes = [np.arange(n) * step + _GRID_MIN[k] for k, n in enumerate(shape)]
        q = np.stack(np.meshgrid(*axes, indexing="ij"))  # (3, nx, ny, nz)
        center = _ras([(0, -12, 14)])[0][:, None, None, None]
        sigma = np.array([14.0, 30.0, 16.0])[:, None, None, None]
        u = (q - center) / sigma
        g = np.exp(-0.5 * np.sum(u**2, axis=0))
        field_ -= atrophy * u * g * 1.6  # peak pull ≈ atrophy mm about one σ from the centre
    aff = np.eye(4)
    aff[:3, :3] *= step
    aff[:3, 3] = _GRID_MIN
    return field_.astype(np.float32), aff


@dataclass
class _Age:
    """What age does to a subject's brain (``_aged``)."""

    ventricles_mm: float  # the radial pull that widens the ventricles (``_displacement``)
    warp_mm: float  # the random deformation's amplitude
    sulci: float  # share of the cortex beside CSF that has become CSF
    wmh: float  # peak fraction of the periventricular white-matter hyperintensity
    overlays: list[Overlay]


def _aged(t: Template, rng: np.random.Generator) -> _Age:
    """An old brain: the young-adult template shrunk away from its CSF, with leukoaraiosis.

    Widened sulci are cortex beside CSF turned to CSF (an overlay, under the lesions and vessels);
    the ventricles widen by a stronger radial pull; white-matter hyperintensities are confluent caps
    around the ventricles, patchy by a smooth random field. The deformation is stronger too: the
    template's symmetry and size must not be what the CNN knows a head by.
    """
    sulci = float(rng.uniform(0.3, 0.9))
    wmh = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.6 else 0.0
    overlays = [_sulcal_widening(t, sulci)]
    if wmh:
        overlays.append(_leukoaraiosis(t, rng, wmh))
    return _Age(float(rng.uniform(2.5, 5.5)), float(rng.uniform(3.5, 6.5)), sulci, wmh, overlays)


def _icv_box(t: Template) -> tuple[slice, slice, slice]:
    if "icv_box" not in t.cache:
        nz = np.nonzero(t.icv)
        t.cache["icv_box"] = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)
    return t.cache["icv_box"]


def _sulcal_widening(t: Template, amount: float) -> Overlay:
    """CSF where cortex touched CSF, up to ``amount`` of the grey matter there (the map is cached)."""
    box = _icv_box(t)
    if "sulcal" not in t.cache:
        near_csf = ndi.gaussian_filter(t.fractions["CSF"][box], 1.5)
        t.cache["sulcal"] = (np.clip(3.0 * near_csf, 0, 1) * t.fractions["GM"][box]).astype(np.float32)
    return Overlay("CSF", box, (amount * t.cache["sulcal"]).astype(np.float32))


def _leukoaraiosis(t: Template, rng: np.random.Generator, peak: float) -> Overlay:
    """Confluent periventricular white-matter hyperintensity, thickest at the horns, patchy."""
    box = _icv_box(t)
    if "periventricular" not in t.cache:
        near = np.zeros(_GRID_SHAPE, np.float32)
        idx = np.round((t.periventricular_points - _GRID_MIN) / GRID_SPACING).astype(int)
        near[tuple(idx.T)] = 1.0
        near = ndi.gaussian_filter(near[box], 2.0)
        t.cache["periventricular"] = near / max(float(near.max()), 1e-6)
    patchy = ndi.gaussian_filter(rng.normal(0, 1, t.cache["periventricular"].shape).astype(np.float32), 4.0)
    patchy /= patchy.std() + 1e-9
    f = t.cache["periventricular"] * np.clip(0.6 + 0.5 * patchy, 0, 1) * t.fractions["WM"][box]
    return Overlay("MS", box, np.clip(peak * 1.5 * f, 0, peak).astype(np.float32))


def subject_params(rng: np.random.Generator) -> dict:
    """A subject's physiology, the same whatever the body part."""
    return {
        "snr_factor": float(np.exp(rng.normal(0, 0.2))),
        "gd_dose": float(rng.uniform(0.8, 1.2)),
        "t1_scale": float(np.exp(rng.normal(0, 0.04))),  # subject-to-subject relaxation variation
        "t2_scale": float(np.exp(rng.normal(0, 0.04))),
        "texture_seed": int(rng.integers(2**31)),  # fine tissue inhomogeneity, same in every series
        "texture_amplitude": float(rng.uniform(0.02, 0.06)),
    }


def make_phantom(rng: np.random.Generator, aged_share: float = 0.0) -> Phantom:
    """A new randomised subject (pose, size, deformation, vessels, lesions) on the shared template.

    ``aged_share``: the chance that the subject is old (``_aged``): wide ventricles and sulci, confluent
    white-matter hyperintensities, and a brain deformed more strongly than the template's young adults.
    """
    t = load_template()
    w2t, world_center = _pose(t, rng)
    atrophy = float(rng.uniform(1.0, 4.0)) if rng.random() < 0.4 else 0.0
    amplitude = rng.uniform(1.5, 5.0)
    # drawn only when asked for, so that subjects without it stay the same for a given seed
    aged = _aged(t, rng) if aged_share > 0 and rng.random() < aged_share else None
    if aged is not None:
        atrophy, amplitude = aged.ventricles_mm, aged.warp_mm
    disp, disp_aff = _displacement(rng, amplitude, atrophy)
    info: dict = {"atrophy_mm": round(atrophy, 1)} if atrophy else {}
    if aged is not None:
        info["aged"] = {"sulci": round(aged.sulci, 2), "warp_mm": round(aged.warp_mm, 1),
                        "wmh": round(aged.wmh, 2)}
    overlays = (aged.overlays if aged is not None else []) + _lesions(t, rng, info) + _arteries(rng) + _veins(t, rng)
    params = subject_params(rng)
    return Phantom(
        fractions=t.fractions,
        affine=t.affine,
        overlays=overlays,
        world_to_template=w2t,
        displacement=disp,
        displacement_affine=disp_aff,
        brain_center=world_center,
        template=t,
        params=params,
        seed_info=info,
    )
