"""Headers without images: the generator's slice geometry and per-frame values over flat 16×16 frames.

For what needs realistic DICOM headers and no anatomy or physics (metadata benchmarks, the forest's
tests): ``generate_studies(out, n, seed, make_phantom=lambda rng: FlatPhantom(), render=flat_render)``.
"""

from __future__ import annotations

import numpy as np

from .render import slice_geometry
from .spec import RenderedSeries, SeriesSpec


class FlatPhantom:
    """Just enough of a phantom for the generator's slice geometry (tests that need headers, not images)."""

    brain_center = np.zeros(3)

    def template_to_world(self, points):
        return np.asarray(points, dtype=float)


def flat_render(spec: SeriesSpec, phantom, rng: np.random.Generator) -> RenderedSeries:
    """The generator's geometry and per-frame values with 16×16 flat images: realistic headers, fast."""
    planes = slice_geometry(spec, phantom, rng)
    volumes = len(spec.b_values) if spec.b_values else max(int(spec.n_temporal or 1), 1)
    per_frame = {}
    if spec.b_values:
        per_frame["b_values"] = [float(b) for b in spec.b_values for _ in planes]
    elif volumes > 1:
        per_frame["temporal_indices"] = [v for v in range(volumes) for _ in planes]
    return RenderedSeries(
        frames=np.full((len(planes) * volumes, 16, 16), 100.0, dtype=np.float32),
        positions=[tuple(float(x) for x in p.origin) for p in planes] * volumes,
        orientations=[tuple(float(x) for x in (*p.row, *p.col)) for p in planes] * volumes,
        pixel_spacing=(float(spec.pixel_spacing[0]), float(spec.pixel_spacing[1])),
        slice_thickness=float(spec.slice_thickness),
        signed="PHASE" in spec.sequence or spec.sequence == "FIELDMAP",
        **per_frame,
    )
