"""Geometry from slice positions, written once for the forest's headers, the CNN's slices, Grad-CAM files
and Slicer's overlay volumes.

DICOM gives positions in LPS millimetres (ImagePositionPatient of each slice, the row and column direction
cosines of ImageOrientationPatient, PixelSpacing as (row spacing, column spacing)). A volume indexed
``[slice, row, column]`` is the ``[k, j, i]`` order of a VTK/NRRD image: voxel (i, j, k) is column i, row j
of slice k.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from ..series import Geometry

log = logging.getLogger(__name__)

# Two image planes whose normals differ by less than this are the same plane (header rounding).
_SAME_PLANE_RADIANS = math.radians(0.5)
# Positions closer than this along the normal are one location (several images at one place: b-values,
# time points, echoes).
_SAME_LOCATION_MM = 1e-3


def slice_spacing(positions: Sequence[Sequence[float]], normal: Sequence[float]) -> float | None:
    """Median distance between neighbouring slice locations along ``normal`` (repeated locations count once).

    None with fewer than two distinct locations.
    """
    if len(positions) < 2:
        return None
    along = np.unique(np.round(np.asarray(positions, dtype=float).reshape(-1, 3) @ np.asarray(normal, float), 3))
    steps = np.diff(along)
    steps = steps[steps > _SAME_LOCATION_MM]
    return float(np.median(steps)) if steps.size else None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise ValueError("ImageOrientationPatient has a zero-length direction")
    return v / n


def ijk_to_lps(geometry: Geometry) -> np.ndarray:
    """4×4 matrix taking voxel (i=column, j=row, k=slice, 1) to DICOM patient coordinates (LPS, mm).

    Slices are taken in ``geometry.positions`` order; the slice step is the mean step between the
    first and last positions, so a stack acquired with a gantry tilt (positions not along the normal)
    keeps its real, sheared geometry instead of being squared off.
    """
    if not geometry.orientations:
        raise ValueError("series has no ImageOrientationPatient: cannot place an overlay")
    if not geometry.positions:
        raise ValueError("series has no ImagePositionPatient: cannot place an overlay")
    iop = np.asarray(geometry.orientations[0], dtype=float)
    if iop.shape != (6,):
        raise ValueError(f"ImageOrientationPatient must have 6 values, got {iop.size}")
    row_dir, col_dir = _unit(iop[:3]), _unit(iop[3:])
    normal = _unit(np.cross(row_dir, col_dir))
    for other in geometry.orientations[1:]:
        o = np.asarray(other, dtype=float)
        other_normal = _unit(np.cross(_unit(o[:3]), _unit(o[3:])))
        if math.acos(min(1.0, abs(float(normal @ other_normal)))) > _SAME_PLANE_RADIANS:
            raise ValueError(
                f"series has {len(geometry.orientations)} image planes (MIXED): one overlay volume cannot cover them"
            )
    row_spacing, col_spacing = (float(s) for s in geometry.pixel_spacing)
    positions = np.asarray(geometry.positions, dtype=float).reshape(-1, 3)
    if len(positions) > 1:
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
        _warn_if_uneven(positions, step)
    else:
        thickness = geometry.spacing_between_slices or geometry.slice_thickness or 1.0
        step = normal * float(thickness)
    m = np.eye(4)
    m[:3, 0] = row_dir * col_spacing  # i runs along a row: next column
    m[:3, 1] = col_dir * row_spacing  # j runs down a column: next row
    m[:3, 2] = step
    m[:3, 3] = positions[0]
    return m


def _warn_if_uneven(positions: np.ndarray, step: np.ndarray) -> None:
    expected = positions[0] + np.outer(np.arange(len(positions)), step)
    worst = float(np.max(np.linalg.norm(positions - expected, axis=1)))
    if worst > 0.01 * max(float(np.linalg.norm(step)), 1e-6):
        log.warning("slices lie up to %.2f mm off a regular grid; the overlay uses the mean step", worst)


