"""Body parts other than the head: knee, spine, abdomen, pelvis and a QA phantom, drawn from shapes.

A brain MR archive is not only brains: a study holds a knee, a spine, an abdomen or a test
phantom often enough, and the CNN, trained on heads alone, read every one of them as some brain
class (issue 11: 17 of the 21 real non-head development series wrong). These parts let the same
protocols and signal equations be acquired on other anatomy, so the CNN learns what a T1, a T2
or a DWI looks like where there is no brain.

Each part is a ``Template`` on the head template's grid (same spacing and box, so the renderer
needs nothing new), built from ellipsoids, cylinders and flaring long-bone ends whose sizes are drawn
per variant, then given the texture real tissue shows (fat planes between muscles, septa and vessels in
fat, vessels in organs, mottled marrow); a cervical spine carries the head template above it. A few
variants are cached per process. Per subject come the pose, size, a smooth deformation and the
fine texture, as for the head. Structures are painted in order, each replacing what it covers,
so every voxel's fractions sum to at most 1 (air is what is left).

Shapes follow textbook anatomy loosely: what matters here is which tissues lie beside which
(fat, fluid, muscle, marrow, parenchyma, cartilage, tendon), not their exact outlines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from .anatomy import (
    _GRID_SHAPE,
    GRID_SPACING,
    Phantom,
    Template,
    _displacement,
    _grid_affine,
    _grid_axes,
    load_template,
    subject_params,
    world_to_template,
)
from .spec import SeriesSpec

PARTS = ("knee", "spine", "abdomen", "pelvis", "phantom")
VARIANTS = 3  # shape variants per part, each cached once per process

# what a study of another part never holds: sequences whose physics or purpose is the brain's
_BRAIN_ONLY = frozenset({"SWI", "SWI_MAG", "SWI_PHASE", "SWI_MINIP", "PERFUSION_DSC", "PERFUSION_ASL", "TOF_MRA",
                         "MRA_MIP", "CISS", "FMRI_BOLD", "FLAIR_2D", "FLAIR_3D", "DIFFUSION_DERIVED"})
# a QA phantom is scanned with the fMRI and diffusion protocols too (stability and gradient checks)
_PHANTOM_EXCLUDED = _BRAIN_ONLY - {"FMRI_BOLD", "FLAIR_2D"}


# yellow (fatty) marrow is fat to the signal equations; painted under its own name until its trabeculae are drawn
_YELLOW_MARROW = "_YELLOW_MARROW"

# the planes each part is mostly imaged in (a head protocol is mostly axial)
_PLANES = {"knee": {"SAGITTAL": 0.4, "CORONAL": 0.35, "AXIAL": 0.25}, "spine": {"SAGITTAL": 0.65, "AXIAL": 0.35},
           "abdomen": {"AXIAL": 0.7, "CORONAL": 0.3}, "pelvis": {"AXIAL": 0.6, "SAGITTAL": 0.2, "CORONAL": 0.2}}


def excluded_sequences(part: str) -> frozenset[str]:
    """Sequence codes a generated study of ``part`` leaves out of its protocol."""
    if part == "head":
        return frozenset()
    return _PHANTOM_EXCLUDED if part == "phantom" else _BRAIN_ONLY


def adapt_spec(part: str, spec: SeriesSpec, rng: np.random.Generator) -> SeriesSpec | None:
    """A head protocol's series as a study of ``part`` would have it: None when left out, else re-planed.

    Localizers (MIXED) and obliques keep their planes; ``rng`` should be shared by a derived series and its
    source so both get the same plane.
    """
    if spec.sequence in excluded_sequences(part):
        return None
    planes = _PLANES.get(part)
    if planes is None or spec.orientation not in ("AXIAL", "SAGITTAL", "CORONAL"):
        return spec
    orientation = str(rng.choice(list(planes), p=list(planes.values())))
    return dataclasses.replace(spec, orientation=orientation)


# ---------------------------------------------------------------- painting


class _Canvas:
    """Tissue fractions on the grid, painted in order: a new structure replaces what it covers."""

    def __init__(self) -> None:
        self.fractions: dict[str, np.ndarray] = {}
        self.x, self.y, self.z = _grid_axes()
        self.continues = (True, True)  # a limb or trunk goes on past the box, below and above

    def paint(self, tissue: str | None, amount: np.ndarray) -> None:
        """Put ``tissue`` (None: air, nothing) where ``amount`` (0…1, broadcastable) says."""
        amount = np.broadcast_to(np.clip(amount, 0, 1), _GRID_SHAPE).astype(np.float32)
        for frac in self.fractions.values():
            frac *= 1 - amount
        if tissue is not None:
            self.fractions.setdefault(tissue, np.zeros(_GRID_SHAPE, np.float32))
            self.fractions[tissue] += amount

    def ellipsoid(self, center, radii, power: float = 2.0) -> np.ndarray:
        """Soft inside (1 mm edge) of an axis-aligned (super-)ellipsoid; a radius of inf is a cylinder."""
        terms = []
        for axis, c, r in zip((self.x, self.y, self.z), center, radii):
            if np.isfinite(r):
                terms.append(np.abs((axis - c) / r) ** power)
        d = sum(terms) ** (1.0 / power)
        edge = GRID_SPACING / min(r for r in radii if np.isfinite(r))
        return np.clip((1.0 - d) / edge + 0.5, 0, 1)

    def shell(self, center, radii, thickness: float, power: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """(the whole ellipsoid, its inside ``thickness`` mm in from the surface)."""
        inner = tuple(r - thickness if np.isfinite(r) else r for r in radii)
        return self.ellipsoid(center, radii, power), self.ellipsoid(center, inner, power)

    def between(self, lo: float, hi: float, axis: str = "z") -> np.ndarray:
        """Soft slab lo ≤ coordinate ≤ hi along ``axis``."""
        a = {"x": self.x, "y": self.y, "z": self.z}[axis]
        return np.clip(np.minimum(a - lo, hi - a) / GRID_SPACING + 0.5, 0, 1)

    def trunk(self, center, rx: float, ry: float, fat: float) -> None:
        """A limb or trunk along z: subcutaneous fat ``fat`` mm thick over muscle."""
        self.paint("FAT", self.ellipsoid(center, (rx, ry, np.inf)))
        self.paint("MUSCLE", self.ellipsoid(center, (rx - fat, ry - fat, np.inf)))

    def bone(self, center, radii, cortex: float, marrow: str = "MARROW", power: float = 2.0,
             within: np.ndarray | float = 1.0) -> None:
        """Cortex around marrow: red ("MARROW") or yellow ("FAT")."""
        self.bones([tuple(part * within for part in self.shell(center, radii, cortex, power))], marrow)

    def flare(self, centre_xy, z_end: float, radii_end, z_shaft: float, radii_shaft, cortex: float
              ) -> tuple[np.ndarray, np.ndarray]:
        """(whole, marrow) of a long bone's end: its elliptic section widens smoothly from ``radii_shaft`` at
        ``z_shaft`` (and beyond: the shaft) to ``radii_end`` at ``z_end``, where it stops."""
        t = np.clip((self.z - z_end) / (z_shaft - z_end), 0, 1)
        t = t * t * (3 - 2 * t)
        rx = radii_end[0] + (radii_shaft[0] - radii_end[0]) * t
        ry = radii_end[1] + (radii_shaft[1] - radii_end[1]) * t
        lo, hi = sorted((z_end, np.sign(z_shaft - z_end) * 300.0))
        along = self.between(lo, hi)

        def inside(shrink: float) -> np.ndarray:
            d = np.hypot((self.x - centre_xy[0]) / (rx - shrink), (self.y - centre_xy[1]) / (ry - shrink))
            return np.clip((1 - d) * (np.minimum(rx, ry) - shrink) / GRID_SPACING + 0.5, 0, 1) * along

        return inside(0.0), inside(cortex)

    def bones(self, pieces: list[tuple[np.ndarray, np.ndarray]], marrow: str = "MARROW") -> None:
        """One bone made of overlapping (whole, marrow) pieces: cortex only where no piece has marrow.

        Yellow marrow is painted under its own name until its trabeculae are drawn (``_substructure``).
        """
        for whole, _ in pieces:
            self.paint("BONE", whole)
        for _, inner in pieces:
            self.paint(_YELLOW_MARROW if marrow == "FAT" else marrow, inner)

    def blend(self, fractions: dict[str, np.ndarray], weight: np.ndarray) -> None:
        """Cross-fade to whole tissue maps: ``weight`` 1 keeps only ``fractions`` (its air is air), 0 the canvas."""
        weight = np.clip(weight, 0, 1).astype(np.float32)
        for frac in self.fractions.values():
            frac *= 1 - weight
        for tissue, frac in fractions.items():
            self.fractions.setdefault(tissue, np.zeros(_GRID_SHAPE, np.float32))
            self.fractions[tissue] += frac * weight

    def merge(self, source: str, target: str) -> None:
        """All of ``source`` becomes ``target``."""
        self.move(source, target, np.ones(1, np.float32))
        self.fractions.pop(source, None)

    def move(self, source: str, target: str, share: np.ndarray) -> None:
        """Turn ``share`` (0…1) of ``source`` into ``target`` in place: a texture inside one tissue."""
        if source not in self.fractions:
            return
        moved = self.fractions[source] * np.clip(share, 0, 1).astype(np.float32)
        self.fractions[source] -= moved
        self.fractions.setdefault(target, np.zeros(_GRID_SHAPE, np.float32))
        self.fractions[target] += moved


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------- parts (template LPS mm: x left, y posterior, z up)


def _knee(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    r_leg = _u(rng, 52, 64)
    c.paint("FAT", c.ellipsoid((0, 2, 0), (r_leg, r_leg * _u(rng, 0.9, 1.05), np.inf)))
    fat = _u(rng, 4, 14)
    c.paint("MUSCLE", c.ellipsoid((0, 8, 0), (r_leg - fat, r_leg - fat, np.inf)) * (c.y > -20))
    c.paint("FAT", c.ellipsoid((0, -24, -12), (20, 10, 14)))  # Hoffa's fat pad
    gap = _u(rng, 3.5, 6.0)  # joint space
    femur = []
    for side in (-1, 1):  # femoral condyles, cartilage first so the bone leaves a rim of it
        centre = (side * _u(rng, 17, 22), 6, gap / 2 + 22)
        radii = (_u(rng, 19, 24), _u(rng, 25, 30), 22)
        c.paint("CARTILAGE", c.ellipsoid(centre, tuple(r + 2.5 for r in radii)))
        femur.append(c.shell(centre, radii, 2.0))
    # the metaphysis flares from the shaft into the condyles: one bone, not a rod on two balls
    condyles = gap / 2 + 22
    femur.append(c.flare((0, 5), condyles, (_u(rng, 34, 40), 25), condyles + _u(rng, 45, 60), (16, 15), 3.0))
    c.bones(femur, marrow="FAT")
    c.paint("FAT", c.ellipsoid((0, 14, 18), (8, 12, 14)))  # intercondylar notch
    plateau = (0, 3, -gap / 2 - 14)
    c.paint("CARTILAGE", c.ellipsoid(plateau, (40, 31, 16.5)) * c.between(-200, plateau[2]))
    below = c.between(-200, plateau[2])
    tibia = [tuple(part * below for part in c.shell(plateau, (38, 29, 14), 2.0)),
             c.flare((0, 5), plateau[2] - 6, (36, 27), plateau[2] - _u(rng, 40, 55), (19, 17), 3.0)]
    c.bones(tibia, marrow="FAT")
    c.bone((31, 14, -50), (7, 7, np.inf), 2.0, marrow="FAT", within=c.between(-200, -25))  # fibula
    for side in (-1, 1):  # menisci: dark wedges at the joint line
        c.paint("TENDON", c.ellipsoid((side * 22, 6, -gap / 2), (18, 26, 3.0)) *
                (1 - c.ellipsoid((side * 22, 6, -gap / 2), (9, 15, 4.0))))
    c.paint("CSF", c.ellipsoid((0, -20, 28), (_u(rng, 14, 28), _u(rng, 3, 8), _u(rng, 10, 25))))  # effusion
    patella = (0, -36, _u(rng, 8, 18))
    c.paint("CARTILAGE", c.ellipsoid((0, patella[1] + 2, patella[2]), (22, 10.5, 20)))
    c.bone(patella, (21, 8, 19), 1.5, marrow="FAT")
    c.paint("TENDON", c.ellipsoid((0, -37, -22), (11, 3.0, 26)))  # patellar tendon
    c.paint("TENDON", c.ellipsoid((0, -42, 42), (22, 3.0, 22)) * c.between(30, 200))  # quadriceps tendon
    c.paint("ARTERY", c.ellipsoid((2, 36, 0), (3.5, 3.5, np.inf)))
    c.paint("VEIN", c.ellipsoid((-4, 40, 0), (4.5, 4.5, np.inf)))
    return np.array([0.0, 4.0, 0.0])


def _spine(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    cervical = rng.random() < 0.4
    period = _u(rng, 15, 19) if cervical else _u(rng, 30, 36)
    disc = period * _u(rng, 0.22, 0.3)
    width, depth = ((14, 11) if cervical else (23, 18))
    y0 = 0.0 if cervical else 20.0
    curve = _u(rng, 4, 12) * (1 if cervical else -1)  # lordosis: the column bows forward

    def y_at(z):
        return y0 - curve * np.cos(z / 110.0)

    # a neck, or a trunk with the abdomen in front
    ry, rx, y_c = (_u(rng, 50, 60), _u(rng, 55, 65), 0.0) if cervical else (118.0, 95.0, 10.0)
    c.trunk((0, y_c, 0), rx, ry, _u(rng, 4, 10) if cervical else _u(rng, 6, 20))
    yc = y_at(c.z)
    if cervical:  # the neck in front: airway, then muscle and fat
        c.paint(None, np.clip(1 - np.hypot(c.x / 9, (c.y - (yc - depth - 25)) / 7), 0, 1) * 6)
    else:  # the abdomen in front: visceral fat, bowel, the aorta
        c.paint("FAT", np.clip((yc - 12 - c.y) / 3, 0, 1) * c.ellipsoid((0, 10, 0), (80, 110, np.inf)))
        _bowel(c, rng, (-60, 60), (-95, -5), (-90, 90), 10)
        c.paint("ARTERY", np.clip(1 - np.hypot(c.x - 10, c.y - (yc - depth - 14)) / 9, 0, 1) * 2)
    canal_y = yc + depth + 12
    for k in range(-8, 9):  # vertebral bodies and discs
        zc = k * period + _u(rng, -1, 1)
        body = np.clip(1 - np.maximum(np.hypot((c.x) / width, (c.y - y_at(zc)) / depth),
                                      np.abs(c.z - zc) / ((period - disc) / 2)), 0, 1) * 8
        inner = np.clip(1 - np.maximum(np.hypot(c.x / (width - 1.5), (c.y - y_at(zc)) / (depth - 1.5)),
                                       np.abs(c.z - zc) / ((period - disc) / 2 - 1.2)), 0, 1) * 8
        c.paint("BONE", body)
        c.paint("MARROW" if rng.random() < 0.8 else "FAT", inner)
        zd = zc + period / 2
        c.paint("DISC", np.clip(1 - np.maximum(np.hypot(c.x / width, (c.y - y_at(zd)) / depth),
                                               np.abs(c.z - zd) / (disc / 2)), 0, 1) * 6)
        sp = (0, y_at(zc) + depth + 32, zc - period * 0.15)  # spinous process
        c.bone(sp, (4, 12, period * 0.3), 1.2)
    canal = np.clip(1 - np.hypot(c.x / 11, (c.y - canal_y) / 8), 0, 1) * 8
    c.paint("CSF", canal)
    cord_r = 4.5 if cervical else 3.5
    conus = -300.0 if cervical else _u(rng, -20, 40)  # the cord ends at L1-L2, below every cervical level
    c.paint("WM", np.clip(1 - np.hypot(c.x / cord_r, (c.y - canal_y) / (cord_r * 0.8)), 0, 1) * 4
            * c.between(conus, 300))
    c.paint("FAT", np.clip(1 - np.hypot(c.x / 12, (c.y - canal_y - 9) / 3), 0, 1) * 3)  # epidural fat
    if cervical:
        _head_above(c, rng, lambda z: y_at(z) + depth + 12)
    return np.array([0.0, y0 + 10, 0.0])


# where the head template's medulla leaves the skull (template LPS mm): the cord continues from here
_MEDULLA_EXIT = (45.0, -70.0)


def _head_above(c: _Canvas, rng: np.random.Generator, canal_y: Callable[[float], float]) -> None:
    """The head template over a cervical spine, its medulla on the spinal canal: a sagittal image of the
    neck shows the posterior fossa and the brain above it, and the real cervical spines the CNN misread do."""
    rise = _u(rng, 60, 90)  # mm the head moves up: how much of the neck lies below the skull
    junction = _MEDULLA_EXIT[1] + rise
    shift_y = int(round((canal_y(junction) - _MEDULLA_EXIT[0]) / GRID_SPACING))
    shift_z = int(round(rise / GRID_SPACING))
    head = {tissue: ndi.shift(frac, (0, shift_y, shift_z), order=0, cval=0.0)
            for tissue, frac in load_template().fractions.items()}
    c.blend(head, np.clip((c.z - junction) / 12.0, 0, 1))  # the cord and medulla overlap as they fade
    c.continues = (True, False)  # the head ends at its vertex


def _bowel(c: _Canvas, rng: np.random.Generator, xr, yr, zr, n: int) -> None:
    for _ in range(n):
        centre = (_u(rng, *xr), _u(rng, *yr), _u(rng, *zr))
        radii = (_u(rng, 8, 20), _u(rng, 8, 18), _u(rng, 10, 30))
        c.paint("MUSCLE", c.ellipsoid(centre, radii))  # the wall
        c.paint("CSF" if rng.random() < 0.5 else None, c.ellipsoid(centre, tuple(r - 3 for r in radii)))


def _abdomen(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    rx, ry = _u(rng, 85, 95), _u(rng, 62, 76)
    fat = _u(rng, 5, 22)
    c.trunk((0, 0, 0), rx, ry, fat)
    cavity = c.ellipsoid((0, 0, 0), (rx - fat - 7, ry - fat - 7, np.inf))
    c.paint("FAT", cavity)
    _bowel(c, rng, (-50, 50), (-50, 10), (-90, 20), 12)
    c.paint("LIVER", c.ellipsoid((-30, -5, _u(rng, 30, 55)), (_u(rng, 55, 68), 52, 70)) * cavity)
    if rng.random() < 0.5:
        c.paint("CSF", c.ellipsoid((-30, -38, 10), (12, 10, 18)) * cavity)  # gallbladder
    stomach = (40, -18, 60)
    c.paint("MUSCLE", c.ellipsoid(stomach, (30, 22, 26)) * cavity)
    c.paint("CSF" if rng.random() < 0.6 else None, c.ellipsoid(stomach, (26, 18, 22)) * cavity)
    c.paint("SPLEEN", c.ellipsoid((58, 30, _u(rng, 30, 55)), (20, 32, 40)) * cavity)
    for side in (-1, 1):
        kc = (side * 45, 32, _u(rng, -30, 0))
        c.paint("KIDNEY", c.ellipsoid(kc, (19, 15, 45)))
        c.paint("FAT", c.ellipsoid((kc[0] - side * 5, kc[1] - 3, kc[2]), (7, 6, 22)))  # renal sinus
        c.paint("MUSCLE", c.ellipsoid((side * 25, 32, -60), (12, 12, 50)))  # psoas
    for k in range(-4, 5):
        zc = k * 34
        c.bone((0, 40, zc), (22, 17, 13.5), 1.5, power=4.0)
        c.paint("DISC", c.ellipsoid((0, 40, zc + 17), (22, 17, 3.5), power=4.0))
    c.paint("CSF", c.ellipsoid((0, 66, 0), (10, 8, np.inf)))
    for side in (-1, 1):
        c.paint("MUSCLE", c.ellipsoid((side * 28, 74, 0), (20, 14, np.inf)))  # erector spinae
    c.paint("ARTERY", c.ellipsoid((10, 20, 0), (10, 10, np.inf)))
    c.paint("VEIN", c.ellipsoid((-18, 18, 0), (12, 9, np.inf)))
    return np.array([0.0, 0.0, 10.0])


def _pelvis(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    rx, ry = _u(rng, 88, 95), _u(rng, 60, 72)
    fat = _u(rng, 6, 20)
    c.trunk((0, 5, 0), rx, ry, fat)
    c.paint("FAT", c.ellipsoid((0, 0, 0), (rx - fat - 22, ry - fat - 16, np.inf)))
    for side in (-1, 1):
        c.bone((side * 62, 8, _u(rng, -5, 10)), (22, 22, 22), 2.0, marrow="FAT")  # femoral heads
        c.paint("MUSCLE", c.ellipsoid((side * 42, 5, -10), (9, 22, 40)))  # obturator internus
        c.paint("ARTERY", c.ellipsoid((side * 45, -25, 0), (4, 4, np.inf)))
        c.paint("VEIN", c.ellipsoid((side * 40, -22, 0), (5.5, 5, np.inf)))
    full = _u(rng, 0.5, 1.2)
    bladder = (0, -22, 25)
    c.paint("MUSCLE", c.ellipsoid(bladder, (32 * full + 3, 24 * full + 3, 25 * full + 3)))
    c.paint("CSF", c.ellipsoid(bladder, (32 * full, 24 * full, 25 * full)))
    prostate = (0, 8, _u(rng, -25, -10))
    size = _u(rng, 0.8, 1.5)  # benign enlargement is common
    c.paint("PROSTATE", c.ellipsoid(prostate, (20 * size, 15 * size, 17 * size)))
    c.paint("MUSCLE", c.ellipsoid((0, 34, 0), (13, 11, np.inf)))  # rectum
    c.paint("CSF" if rng.random() < 0.4 else None, c.ellipsoid((0, 34, 0), (8, 6, np.inf)))
    c.bone((0, 62, 45), (40, 12, 40), 2.0, within=c.between(0, 200))  # sacrum
    return np.array([0.0, 5.0, 0.0])


def _phantom(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    c.continues = (False, False)  # an object, whole inside the box
    r = _u(rng, 60, 88)
    if rng.random() < 0.5:
        c.paint("GEL", c.ellipsoid((0, 0, 0), (r, r, r)))
    else:  # a bottle lying along the bore
        c.paint("GEL", c.ellipsoid((0, 0, 0), (r, r * _u(rng, 0.8, 1.0), np.inf)) * c.between(-90, 90))
    for _ in range(int(rng.integers(0, 9))):  # vials and rods of other materials
        tissue = str(rng.choice(["GM", "WM", "FAT", "CSF", "MUSCLE", "LIVER", "CARTILAGE"]))
        a, d = rng.uniform(0, 2 * np.pi), _u(rng, 0, r * 0.6)
        rad = _u(rng, 4, 15)
        c.paint(tissue, c.ellipsoid((d * np.cos(a), d * np.sin(a), 0), (rad, rad, _u(rng, 20, 80))))
    if rng.random() < 0.4:  # a resolution grid: plastic slabs give no signal
        for k in range(-3, 4):
            c.paint(None, c.between(k * 10 - 1.5, k * 10 + 1.5, "x") * c.ellipsoid((0, 0, 30), (35, 35, 10)))
    return np.array([0.0, 0.0, 0.0])


# ---------------------------------------------------------------- texture within tissues


def _sheets(rng: np.random.Generator, spacing: float, half_width: float) -> np.ndarray:
    """Soft random sheets (0…1), about ``spacing`` mm apart and ``2 * half_width`` mm thick.

    The zero set of smooth noise is a network of curved surfaces; |n| / |grad n| is the distance to it, so
    the sheets keep their thickness wherever the noise is flat or steep.
    """
    noise = ndi.gaussian_filter(rng.standard_normal(_GRID_SHAPE).astype(np.float32), spacing / 3 / GRID_SPACING)
    slope = np.sqrt(sum(g * g for g in np.gradient(noise, GRID_SPACING)))
    return np.clip(1.0 - np.abs(noise) / (slope * half_width + 1e-12), 0, 1)


def _tubes(rng: np.random.Generator, spacing: float, radius: float) -> np.ndarray:
    """Soft random tubes (0…1): where two independent sheet networks cross, a branching-looking web of lines."""
    return np.minimum(_sheets(rng, spacing, radius), _sheets(rng, spacing, radius))


def _field(rng: np.random.Generator, scale: float) -> np.ndarray:
    """Smooth noise of unit spread at ``scale`` mm."""
    noise = ndi.gaussian_filter(rng.standard_normal(_GRID_SHAPE).astype(np.float32), scale / GRID_SPACING)
    return noise / (noise.std() + 1e-12)


def _substructure(c: _Canvas, rng: np.random.Generator) -> None:
    """What makes real tissue look like tissue rather than a painted shape (session 20, side by side with
    real knees and spines): muscles in compartments split by fat planes, fibrous septa and small vessels in
    fat, vessels in solid organs, and marrow mottled by trabeculae and by islands of fat among red marrow.
    """
    c.move("MUSCLE", "FAT", 0.9 * _sheets(rng, _u(rng, 18, 35), _u(rng, 1.2, 2.0)))
    c.move("FAT", "TENDON", _u(rng, 0.3, 0.6) * _sheets(rng, _u(rng, 10, 20), _u(rng, 0.5, 0.9)))
    vessels = _tubes(rng, _u(rng, 20, 35), _u(rng, 1.0, 2.0))
    for tissue in ("FAT", "MUSCLE"):
        c.move(tissue, "VEIN", vessels)
    organ_vessels = _tubes(rng, _u(rng, 25, 40), _u(rng, 1.5, 3.0))
    for tissue in ("LIVER", "SPLEEN", "KIDNEY"):
        c.move(tissue, "VEIN", organ_vessels)
    c.move("MARROW", "FAT", np.clip(_u(rng, 0.1, 0.4) + 0.35 * _field(rng, _u(rng, 2.5, 5.0)), 0, 1))
    trabeculae = np.clip(_u(rng, 0.08, 0.18) + 0.08 * _field(rng, GRID_SPACING * 0.7), 0, 0.4)
    for marrow in ("MARROW", _YELLOW_MARROW):
        c.move(marrow, "BONE", trabeculae)


_BUILDERS: dict[str, Callable[[_Canvas, np.random.Generator], np.ndarray]] = {
    "knee": _knee, "spine": _spine, "abdomen": _abdomen, "pelvis": _pelvis, "phantom": _phantom,
}


# ---------------------------------------------------------------- templates and subjects


@cache
def load_part(part: str, variant: int = 0) -> Template:
    """The tissue maps of one shape variant of ``part`` (built once per process, a few seconds)."""
    if part not in _BUILDERS:
        raise ValueError(f"unknown body part {part!r}; known: {', '.join(PARTS)}")
    rng = np.random.default_rng([PARTS.index(part), variant, 7])
    canvas = _Canvas()
    centre = _BUILDERS[part](canvas, rng)
    if part != "phantom":  # a test object is made of uniform materials
        _substructure(canvas, rng)
    canvas.merge(_YELLOW_MARROW, "FAT")
    fractions = {k: np.ascontiguousarray(np.clip(v, 0, 1), np.float32) for k, v in canvas.fractions.items()}
    for v in fractions.values():
        v.setflags(write=False)
    total = sum(fractions.values())
    body = ndi.binary_fill_holes(total > 0.5)
    air_inside = np.clip(body - total, 0, 1).astype(np.float32)
    empty = np.zeros((0, 3))
    return Template(
        fractions=fractions, affine=_grid_affine(), brain=ndi.binary_erosion(body, iterations=6).astype(np.float32),
        icv=body, air=air_inside, head=body, wm_points=empty, periventricular_points=empty, cortex_points=empty,
        surface_center=centre, surface_radius=np.zeros((1, 1)), brain_center=centre, continues=canvas.continues,
    )


@dataclass(frozen=True)
class BodyPhantoms:
    """A ``make_phantom`` for ``generate_studies``: each subject one of ``parts`` (drawn from its seed)."""

    parts: tuple[str, ...] = PARTS

    def __call__(self, rng: np.random.Generator) -> Phantom:
        return make_body_phantom(rng, str(rng.choice(list(self.parts))))


def make_body_phantom(rng: np.random.Generator, part: str) -> Phantom:
    """A randomised subject of ``part``: a shape variant, pose, size, deformation and texture."""
    from scipy.spatial.transform import Rotation

    t = load_part(part, int(rng.integers(VARIANTS)))
    rot = Rotation.from_euler("xyz", rng.normal(0, [5.0, 5.0, 8.0]), degrees=True).as_matrix()
    scale = np.clip(np.exp(rng.normal(0, 0.07, 3)), 0.85, 1.15)
    world_center = np.array([rng.normal(0, 5), rng.normal(0, 8), rng.normal(0, 10)])
    w2t = world_to_template(rot, scale, t.brain_center, world_center)
    disp, disp_aff = _displacement(rng, rng.uniform(1.5, 5.0), 0.0)
    return Phantom(
        fractions=t.fractions, affine=t.affine, overlays=[], world_to_template=w2t, displacement=disp,
        displacement_affine=disp_aff, brain_center=world_center, template=t, params=subject_params(rng),
        seed_info={"part": part}, anatomy=part,
    )
