"""Acquisition plane from image geometry: exact where ImageOrientationPatient exists.

The plane is a property of the geometry, not something to learn: the slice normal is
the cross product of the row and column direction cosines; the plane is the patient
axis it lies closest to, or OBLIQUE when it lies more than the vocabulary's threshold
from every axis. A series whose images lie in several distinct planes (a 3-plane
localizer, radial MIPs) is MIXED. Small differences between stacks of one plane (a
multi-slab acquisition nudged by a few degrees) do not make a series MIXED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..vocabulary import load_vocabulary

# DICOM patient axes (LPS): a normal along x is a sagittal slice, y coronal, z axial.
_AXIS_PLANES = ("SAGITTAL", "CORONAL", "AXIAL")

# Normals closer than this are the same stack (rounding, table drift, AutoAlign jitter).
SAME_PLANE_DEGREES = 5.0


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    """Unit normal of an image plane from its 6 direction cosines; raises ValueError when degenerate."""
    if iop is None or len(iop) != 6:
        raise ValueError(f"ImageOrientationPatient needs 6 values, got {iop!r}")
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:], dtype=float)
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if not np.isfinite(norm) or norm < 1e-3:
        raise ValueError(f"ImageOrientationPatient {list(iop)} has parallel or zero direction cosines")
    return normal / norm


def angle_to_axes(normal: np.ndarray) -> np.ndarray:
    """Angle in degrees between the (sign-free) normal and each patient axis x, y, z."""
    cosines = np.clip(np.abs(np.asarray(normal, dtype=float)), 0.0, 1.0)
    return np.degrees(np.arccos(cosines))


def plane_of(iop: Sequence[float], threshold_degrees: float | None = None) -> str:
    """AXIAL / SAGITTAL / CORONAL, or OBLIQUE beyond the threshold (default: the vocabulary's)."""
    if threshold_degrees is None:
        threshold_degrees = load_vocabulary().oblique_threshold_degrees
    angles = angle_to_axes(slice_normal(iop))
    axis = int(np.argmin(angles))
    return _AXIS_PLANES[axis] if angles[axis] <= threshold_degrees else "OBLIQUE"


def _angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(float(np.dot(a, b))), 0.0, 1.0))))


@dataclass
class PlaneSummary:
    """The planes a series' images lie in."""

    orientation: str  # vocabulary code, MIXED when several planes
    normals: list[np.ndarray]  # one per distinct stack, most images first
    counts: list[int]  # images per stack
    planes: list[str]  # plane code per stack

    @property
    def n_planes(self) -> int:
        return len(self.normals)

    @property
    def main_normal(self) -> np.ndarray:
        return self.normals[0]


def summarize(iops: Sequence[Sequence[float]], threshold_degrees: float | None = None) -> PlaneSummary:
    """Group image orientations into stacks and name the series' plane.

    Raises ValueError when no orientation is usable.
    """
    if threshold_degrees is None:
        threshold_degrees = load_vocabulary().oblique_threshold_degrees
    normals: list[np.ndarray] = []
    counts: list[int] = []
    # A stack repeats one orientation hundreds of times: compute each distinct one once.
    distinct: dict[tuple, int] = {}
    for iop in iops:
        key = tuple(round(float(v), 6) for v in iop) if iop is not None else None
        distinct[key] = distinct.get(key, 0) + 1
    for iop, count in distinct.items():
        try:
            n = slice_normal(iop)
        except (ValueError, TypeError):
            continue
        for i, known in enumerate(normals):
            if _angle_between(n, known) <= SAME_PLANE_DEGREES:
                counts[i] += count
                break
        else:
            normals.append(n)
            counts.append(count)
    if not normals:
        raise ValueError("no usable ImageOrientationPatient")
    order = sorted(range(len(normals)), key=lambda i: -counts[i])
    normals = [normals[i] for i in order]
    counts = [counts[i] for i in order]
    planes = [
        _AXIS_PLANES[int(np.argmin(a))] if float(np.min(a)) <= threshold_degrees else "OBLIQUE"
        for a in (angle_to_axes(n) for n in normals)
    ]
    # Several stacks are one plane only when they agree on it and stay within the threshold of each other.
    spread = max(_angle_between(normals[0], n) for n in normals)
    mixed = len(set(planes)) > 1 or spread > threshold_degrees
    return PlaneSummary("MIXED" if mixed else planes[0], normals, counts, planes)


def series_orientation(iops: Sequence[Sequence[float]], threshold_degrees: float | None = None) -> str | None:
    """The orientation code of a series, or None when no image has a usable orientation."""
    try:
        return summarize(iops, threshold_degrees).orientation
    except ValueError:
        return None
