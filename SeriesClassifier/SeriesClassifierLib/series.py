"""What passes from a source to the models: one series, its files and headers.

A source yields ``SeriesRef`` (grouping only, nothing read but what grouping
needs); header reading turns each into a ``Series``. Models read ``Series``;
they never go back to the source.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class InstanceInfo:
    """What a source learnt about one file while grouping (cheap tags only).

    A folder source has to open every file to find its series anyway, so it keeps
    the few geometry tags it read on the way; header reading then needs no second
    pass over the files. A database source leaves these empty.
    """

    path: Path
    sop_instance_uid: str = ""
    instance_number: int | None = None
    position: tuple[float, float, float] | None = None  # ImagePositionPatient
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6)
    # What one series' files must agree on; a file that differs came from elsewhere (``series_conflicts``).
    study_uid: str = ""
    modality: str = ""
    frame_of_reference: str = ""  # FrameOfReferenceUID
    series_number: str = ""
    series_description: str = ""


@dataclass
class SeriesRef:
    """The files of one series as a source lists them."""

    series_uid: str
    files: list[Path]
    study_uid: str = ""
    patient_id: str = ""
    source: str = ""  # the folder or database this came from, for messages
    series_description: str = ""  # when the source knows it without reading files
    instances: list[InstanceInfo] = field(default_factory=list)  # per file, when the source read them
    missing: list[Path] = field(default_factory=list)  # files the source lists but that are gone
    notes: list[str] = field(default_factory=list)  # what grouping noticed (duplicate instances), for the user

    def content_key(self) -> str:
        """A fingerprint of the series' files: name (relative to the source), size and modification time.

        Only ``stat`` calls, no reads: a stored prediction is reused while this stays the same. Paths are
        taken relative to the source so a study moved with its folder keeps its key; a copy that resets
        modification times gets a new key and is classified again, which costs time but is never wrong.
        """
        entries = []
        for path in self.files:
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "gone"
            entries.append(f"{_relative(path, self.source)}|{stamp}")
        entries += [f"{_relative(path, self.source)}|missing" for path in self.missing]
        return hashlib.sha256("\n".join(sorted(entries)).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _relative(path: Path, root: str) -> str:
    try:
        return Path(path).relative_to(root).as_posix() if root else Path(path).name
    except ValueError:  # outside the source (a database linking files in place): the path itself
        return Path(path).as_posix()


@dataclass
class Geometry:
    """Image plane geometry of a series, in DICOM patient coordinates (LPS, mm)."""

    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    orientations: list[tuple[float, ...]]  # distinct ImageOrientationPatient (6 values each)
    positions: list[tuple[float, float, float]]  # ImagePositionPatient per slice, sorted along the normal
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None


@dataclass
class Series:
    """One series after header reading: what the models and the exports need."""

    series_uid: str
    study_uid: str
    files: list[Path]
    patient_id: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    n_images: int = 0  # files
    n_frames: int = 0  # image frames over all files (multi-frame, mosaic tiles counted once per file)
    header: dict[str, Any] = field(default_factory=dict)  # normalised header values by keyword
    geometry: Geometry | None = None
    orientation: str | None = None  # from geometry, a vocabulary code
    skip_reason: str | None = None  # set when this is not something we classify (SR, PR, …)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # files that contradict each other: always reviewed

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings); lets training cache read headers instead of re-reading files."""
        d = asdict(self)
        d["files"] = [str(f) for f in self.files]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Series:
        d = dict(d)
        d["files"] = [Path(f) for f in d.get("files", [])]
        g = d.get("geometry")
        if g is not None:
            d["geometry"] = Geometry(
                rows=g["rows"],
                columns=g["columns"],
                pixel_spacing=tuple(g["pixel_spacing"]),
                orientations=[tuple(o) for o in g["orientations"]],
                positions=[tuple(p) for p in g["positions"]],
                slice_thickness=g.get("slice_thickness"),
                spacing_between_slices=g.get("spacing_between_slices"),
            )
        return cls(**d)
