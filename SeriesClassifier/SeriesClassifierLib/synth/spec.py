"""The two records that pass between the generator's steps.

``SeriesSpec``: what the scanner was asked to do (from protocols + vendor profile).
``RenderedSeries``: what came out (pixels and geometry), for the writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SeriesSpec:
    # ground truth (vocabulary codes; labels.csv columns)
    sequence: str
    orientation: str
    contrast: bool = False  # post-contrast
    acquisition: str = "2D"  # "2D" or "3D"
    fat_suppressed: bool = False
    derived: bool = False
    # scanner
    vendor: str = "SIEMENS"  # SIEMENS, GE, PHILIPS, CANON
    field_strength: float = 3.0
    # physics
    repetition_time: float | None = None  # ms
    echo_time: float | None = None  # ms
    inversion_time: float | None = None  # ms
    flip_angle: float | None = None  # degrees
    echo_train_length: int | None = None
    b_values: tuple[float, ...] = ()  # diffusion: one volume per b-value
    n_temporal: int = 1  # time points (BOLD, DSC, ASL pairs)
    # geometry
    rows: int = 256
    columns: int = 256
    pixel_spacing: tuple[float, float] = (0.9, 0.9)  # mm (row, column)
    slice_thickness: float = 5.0  # mm
    slice_spacing: float = 6.0  # mm between slice centres
    n_slices: int = 24
    tilt_degrees: tuple[float, float] = (0.0, 0.0)  # rotations of the plane about two in-plane axes
    # naming and header style
    series_description: str = ""
    protocol_name: str = ""
    sequence_name: str = ""
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    scan_options: tuple[str, ...] = ()
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "NONE")
    storage: str = "classic"  # classic | enhanced | mosaic
    extra: dict = field(default_factory=dict)  # vendor-specific values for the writer


@dataclass
class RenderedSeries:
    """Pixels and geometry of one series, ready to be written.

    ``frames[i]`` is one 2-D image (rows × columns); positions/orientations are
    DICOM ImagePositionPatient / ImageOrientationPatient (LPS, mm) per frame.
    Per-frame b-value / temporal index / echo number are given when they vary.
    """

    frames: np.ndarray  # (n_frames, rows, columns), float32, non-negative unless signed
    positions: list[tuple[float, float, float]]
    orientations: list[tuple[float, float, float, float, float, float]]
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    signed: bool = False  # phase images
    b_values: list[float] | None = None  # per frame
    temporal_indices: list[int] | None = None  # per frame
    echo_numbers: list[int] | None = None  # per frame
    # header-only corpora: frames are tiny placeholders, ``matrix`` is the (rows, columns) the headers
    # declare, and the writer leaves PixelData out (header readers stop before pixels anyway)
    matrix: tuple[int, int] | None = None
