"""Header reading: turn a ``SeriesRef`` into a ``Series`` while touching as few bytes as possible.

The cost that matters is opening files. A folder source has already read the few
geometry tags of every file while grouping (``SeriesRef.instances``); a database source
has not, so we read them here with a read that stops at (0020,0037). Then only up to
three files (first, middle, last along the slice normal) get a full header read without
pixels: that catches what varies inside a series (b-values of a DWI, the ImageType of
trace vs. b0 images, echo times, time points) without reading 300 headers.

Classic MR, enhanced multi-frame MR (per-frame functional groups), Siemens mosaics and
vendor private tags (b-values of Siemens, GE, Philips) are handled. Objects that are not
MR images (SR, PR, KO, RT, SEG, raw data, spectroscopy, other modalities) are skipped with
the reason; corrupt files become warnings naming the file. Nothing here raises for a bad file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from ..errors import BudgetError
from ..series import Geometry, InstanceInfo, Series, SeriesRef
from .budget import check_pixels, read_dataset
from .geometry import slice_spacing
from .orientation import summarize
from .siemens_protocol import sequence_file
from .sources import read_grouping_tags
from .tags import (
    GE_PULSE_SEQUENCE,
    PHILIPS_SCANNING_TECHNIQUE,
    SIEMENS_MOSAIC_IMAGES,
    b_value,
    mosaic_images,
    private_value,
    to_floats,
)
from .tags import to_float as _to_float

log = logging.getLogger(__name__)

# The standard tags the forest's features come from, as "gggg,eeee" for a DICOM database's tag
# cache (Slicer's tagsToPrecache). Headers are still read from the files; the cache lets a
# browser show them without opening files.
_FOREST_KEYWORDS = (
    "ImageType", "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength", "ScanningSequence",
    "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName", "RepetitionTime", "EchoTime",
    "InversionTime", "FlipAngle", "EchoTrainLength", "ContrastBolusAgent", "SliceThickness",
    "SpacingBetweenSlices", "PixelSpacing", "Rows", "Columns", "ImageOrientationPatient", "DiffusionBValue",
    "NumberOfTemporalPositions", "SeriesNumber", "SeriesDescription", "ProtocolName", "BodyPartExamined",
)
PRECACHE_TAGS = tuple(
    f"{tag >> 16:04X},{tag & 0xFFFF:04X}" for tag in (pydicom.datadict.tag_for_keyword(k) for k in _FOREST_KEYWORDS)
)


MR_IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
}
SKIPPED_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.2": "MR spectroscopy",
    "1.2.840.10008.5.1.4.1.1.66": "raw data",
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation",
    "1.2.840.10008.5.1.4.1.1.88.59": "key object selection",
    "1.2.840.10008.5.1.4.1.1.104.1": "encapsulated PDF",
}
SKIPPED_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.66.": "registration/segmentation/raw object",
}

# Header reads never touch pixels; big values (CSA blobs, icons) stay on disk unless asked for.
_DEFER = "32 KB"


def _uid_name(uid: str) -> str:
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001
        name = ""
    return name if name and name != uid else uid


def skip_reason_for(sop_class: str, modality: str, has_rows: bool) -> str | None:
    """Why a series is not classified, or None when it is an MR image we can classify."""
    if sop_class in SKIPPED_CLASSES:
        return f"{SKIPPED_CLASSES[sop_class]} object ({_uid_name(sop_class)}), not an image series"
    for prefix, what in SKIPPED_PREFIXES.items():
        if sop_class.startswith(prefix):
            return f"{what} ({_uid_name(sop_class)}), not an image series"
    if modality and modality != "MR":
        return f"modality {modality}: only MR series are classified"
    if not modality and sop_class not in MR_IMAGE_CLASSES:
        return f"no modality and not an MR image object ({_uid_name(sop_class) or 'unknown SOP class'})"
    if not has_rows:
        return f"no image pixels ({_uid_name(sop_class) or 'unknown SOP class'})"
    return None


# --- value helpers: tolerant of missing, multi-valued, private (bytes) values ---------------


def _to_strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "ignore").strip("\x00 ").split("\\")
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    try:
        return [str(v).strip() for v in value if str(v).strip()]
    except TypeError:
        return [str(value).strip()]


def _spacing(value: Any) -> list[float] | None:
    floats = to_floats(value, 2)
    return list(floats) if floats else None


def _int(value: Any) -> int | None:
    f = _to_float(value)
    return None if f is None else int(f)


# Numbers whose value in one file may be garbage; named in a warning, then read as absent.
_NUMERIC_KEYWORDS = ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "RepetitionTime", "EchoTime",
                     "InversionTime", "FlipAngle", "EchoTrainLength", "ImageOrientationPatient",
                     "ImagePositionPatient", "MagneticFieldStrength", "NumberOfFrames")


def _unreadable_numbers(ds: Dataset) -> list[str]:
    """'keyword value' for each number of the file that is present but not a (finite) number."""
    bad = []
    for keyword in _NUMERIC_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - pydicom may fail converting a malformed value
            bad.append(f"{keyword} (undecodable)")
            continue
        if value not in (None, "", b"") and to_floats(value) is None:
            shown = "\\".join(map(str, value)) if isinstance(value, (list, tuple, MultiValue)) else str(value)
            bad.append(f"{keyword} '{shown[:40]}'")
    return bad


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return value.decode("ascii", "ignore").strip("\x00 ")
    return "" if value is None else str(value).strip()


def _first_item(ds: Dataset, *path: str) -> Dataset | None:
    """Follow nested sequences, taking the first item of each."""
    node = ds
    for keyword in path:
        seq = node.get(keyword) if node is not None else None
        if not seq:
            return None
        node = seq[0]
    return node


def _functional(ds: Dataset, frame: Dataset | None, seq: str) -> Dataset | None:
    """A functional group macro from the frame's own groups, else the shared groups."""
    if frame is not None and seq in frame:
        return _first_item(frame, seq)
    return _first_item(ds, "SharedFunctionalGroupsSequence", seq)


# --- per-file header values ------------------------------------------------------------------


def _classic_values(ds: Dataset) -> dict[str, Any]:
    return {
        "RepetitionTime": _to_float(ds.get("RepetitionTime")),
        "EchoTime": _to_float(ds.get("EchoTime")),
        "InversionTime": _to_float(ds.get("InversionTime")),
        "FlipAngle": _to_float(ds.get("FlipAngle")),
        "EchoTrainLength": _to_float(ds.get("EchoTrainLength")) or _to_float(ds.get("RFEchoTrainLength")),
        "SliceThickness": _to_float(ds.get("SliceThickness")),
        "SpacingBetweenSlices": _to_float(ds.get("SpacingBetweenSlices")),
        "PixelSpacing": _spacing(ds.get("PixelSpacing")),
        "BValue": b_value(ds),
        "TemporalPosition": _to_float(ds.get("TemporalPositionIdentifier")),
        "EchoNumber": _to_float(ds.get("EchoNumbers")),
        "ImageType": _to_strings(ds.get("ImageType")),
    }


def _frame_values(ds: Dataset, frame: Dataset | None) -> dict[str, Any]:
    """Values of one frame of an enhanced MR object (per-frame groups over shared ones)."""
    timing = _functional(ds, frame, "MRTimingAndRelatedParametersSequence")
    echo = _functional(ds, frame, "MREchoSequence")
    modifier = _functional(ds, frame, "MRModifierSequence")
    diffusion = _functional(ds, frame, "MRDiffusionSequence")
    measures = _functional(ds, frame, "PixelMeasuresSequence")
    content = _functional(ds, frame, "FrameContentSequence")
    frame_type = _functional(ds, frame, "MRImageFrameTypeSequence")
    plane = _functional(ds, frame, "PlaneOrientationSequence")
    position = _functional(ds, frame, "PlanePositionSequence")
    ti = _to_float(modifier.get("InversionTimes")) if modifier is not None else None
    return {
        "RepetitionTime": _to_float(timing.get("RepetitionTime")) if timing is not None else None,
        "FlipAngle": _to_float(timing.get("FlipAngle")) if timing is not None else None,
        "EchoTrainLength": _to_float(timing.get("EchoTrainLength")) if timing is not None else None,
        "EchoTime": _to_float(echo.get("EffectiveEchoTime")) if echo is not None else None,
        "InversionTime": ti,
        "BValue": _to_float(diffusion.get("DiffusionBValue")) if diffusion is not None else None,
        "SliceThickness": _to_float(measures.get("SliceThickness")) if measures is not None else None,
        "SpacingBetweenSlices": _to_float(measures.get("SpacingBetweenSlices")) if measures is not None else None,
        "PixelSpacing": _spacing(measures.get("PixelSpacing")) if measures is not None else None,
        "TemporalPosition": _to_float(content.get("TemporalPositionIndex")) if content is not None else None,
        "EchoNumber": None,
        "ImageType": _to_strings(frame_type.get("FrameType")) if frame_type is not None else [],
        "orientation": to_floats(plane.get("ImageOrientationPatient"), 6) if plane is not None else None,
        "position": to_floats(position.get("ImagePositionPatient"), 3) if position is not None else None,
    }


# How many referenced instance UIDs a series keeps: a derived series' first few references name its source
# series as well as all of them would, and an archive's headers stay small (a 300-image map would
# otherwise carry 300 UIDs into every Series and every stored row).
MAX_REFERENCES = 3


def _references(ds: Dataset, keyword: str) -> list[str]:
    """The first few ReferencedSOPInstanceUIDs of a reference sequence: top level, else in the first frame's
    (or the shared) DerivationImageSequence of an enhanced object."""
    items = list(ds.get(keyword) or [])
    if not items and keyword == "SourceImageSequence":
        frames = ds.get("PerFrameFunctionalGroupsSequence") or [None]
        derivation = _functional(ds, frames[0], "DerivationImageSequence")
        items = list(derivation.get("SourceImageSequence") or []) if derivation is not None else []
    out: list[str] = []
    for item in items[:MAX_REFERENCES]:
        uid = _text(item.get("ReferencedSOPInstanceUID")) if isinstance(item, Dataset) else ""
        if uid and uid not in out:
            out.append(uid)
    return out


def _series_values(ds: Dataset) -> dict[str, Any]:
    """Values that are the same for the whole series; read from one representative file."""
    agent = ds.get("ContrastBolusAgent")
    enhanced_tokens = {
        "AcquisitionContrast": _text(ds.get("AcquisitionContrast")),
        "EchoPulseSequence": _text(ds.get("EchoPulseSequence")),
        "SpectrallySelectedSuppression": _text(ds.get("SpectrallySelectedSuppression")),
        "InversionRecovery": _text(ds.get("InversionRecovery")),
        "PulseSequenceName": _text(ds.get("PulseSequenceName")),
    }
    contrast_seq = ds.get("ContrastBolusAgentSequence")
    return {
        "SOPClassUID": _text(ds.get("SOPClassUID")),
        "SeriesNumber": _to_float(ds.get("SeriesNumber")),
        "SeriesTime": _text(ds.get("SeriesTime")) or _text(ds.get("AcquisitionTime")),
        "Modality": _text(ds.get("Modality")),
        "Manufacturer": _text(ds.get("Manufacturer")),
        "BodyPartExamined": _text(ds.get("BodyPartExamined")),
        "ManufacturerModelName": _text(ds.get("ManufacturerModelName")),
        "MagneticFieldStrength": _to_float(ds.get("MagneticFieldStrength")),
        "SeriesDescription": _text(ds.get("SeriesDescription")),
        "ProtocolName": _text(ds.get("ProtocolName")),
        "SequenceName": _text(ds.get("SequenceName")),
        "ScanningSequence": _to_strings(ds.get("ScanningSequence")),
        "SequenceVariant": _to_strings(ds.get("SequenceVariant")),
        "ScanOptions": _to_strings(ds.get("ScanOptions")),
        "MRAcquisitionType": _text(ds.get("MRAcquisitionType")),
        # None: the tag is absent (unknown); "": present but empty. Never read absence as "given".
        "ContrastBolusAgent": None
        if agent is None and not contrast_seq
        else _text(agent) or ("SEQUENCE" if contrast_seq else ""),
        "Rows": _int(ds.get("Rows")),
        "Columns": _int(ds.get("Columns")),
        "PixelRepresentation": _int(ds.get("PixelRepresentation")),
        "PhotometricInterpretation": _text(ds.get("PhotometricInterpretation")),
        "NumberOfFrames": int(_to_float(ds.get("NumberOfFrames")) or 1),
        "NumberOfTemporalPositions": _to_float(ds.get("NumberOfTemporalPositions")),
        "MosaicImages": _to_float(private_value(ds, SIEMENS_MOSAIC_IMAGES)),
        "GEPulseSequenceName": _text(private_value(ds, GE_PULSE_SEQUENCE)),
        "PhilipsScanningTechnique": _text(private_value(ds, PHILIPS_SCANNING_TECHNIQUE)),
        "SiemensSequenceFile": sequence_file(ds),
        # what ties a derived series to its source (models/derived.py); the features never read them
        "FrameOfReferenceUID": _text(ds.get("FrameOfReferenceUID")),
        "AngioFlag": _text(ds.get("AngioFlag")),
        "SourceSOPInstanceUIDs": _references(ds, "SourceImageSequence"),
        "ReferencedSOPInstanceUIDs": _references(ds, "ReferencedImageSequence"),
        **enhanced_tokens,
    }


# --- reading a series --------------------------------------------------------------------------


def _read_header(path: Path) -> Dataset:
    """The header without pixels, within the budgets; a file declaring impossible pixels is refused."""
    ds = read_dataset(path, stop_before_pixels=True, defer_size=_DEFER, force=True)
    if "Rows" in ds and "Columns" in ds:
        check_pixels(path, ds, mosaic_images(ds), stored=False)
    return ds


def _sort_key(normal: np.ndarray | None):
    def key(info: InstanceInfo):
        along = float(np.dot(normal, info.position)) if normal is not None and info.position else 0.0
        return (along, info.instance_number if info.instance_number is not None else 0, str(info.path))

    return key


def _representatives(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1}) if n else []


def _distinct(values: Iterable[float | None], ndigits: int = 3) -> list[float]:
    return sorted({round(v, ndigits) for v in values if v is not None})


def _union_strings(lists: Iterable[list[str]]) -> list[str]:
    out: list[str] = []
    for values in lists:
        for v in values:
            if v not in out:
                out.append(v)
    return out


def _geometry(
    rows: int | None,
    columns: int | None,
    pixel_spacing: list[float] | None,
    thickness: float | None,
    spacing_tag: float | None,
    orientations: list[tuple[float, ...]],
    positions: list[tuple[float, float, float]],
    series: Series,
) -> Geometry | None:
    if not rows or not columns or not orientations:
        return None
    try:
        planes = summarize(orientations)
    except ValueError as exc:
        series.warnings.append(f"series {series.series_uid}: {exc}")
        return None
    series.orientation = planes.orientation
    normal = planes.main_normal
    positions = sorted(set(positions), key=lambda p: float(np.dot(normal, p)))
    spacing = spacing_tag
    if planes.n_planes == 1:
        spacing = slice_spacing(positions, normal) or spacing_tag
    distinct_iops = []
    for iop in orientations:
        rounded = tuple(round(v, 4) for v in iop)
        if rounded not in distinct_iops:
            distinct_iops.append(rounded)
    ps = tuple(pixel_spacing[:2]) if pixel_spacing and len(pixel_spacing) >= 2 else (float("nan"), float("nan"))
    return Geometry(
        rows=int(rows),
        columns=int(columns),
        pixel_spacing=ps,
        orientations=distinct_iops,
        positions=positions,
        slice_thickness=thickness,
        spacing_between_slices=spacing,
    )


def _ensure_instances(ref: SeriesRef, series: Series) -> list[InstanceInfo]:
    if ref.instances and len(ref.instances) == len(ref.files):
        return list(ref.instances)
    infos = []
    for path in ref.files:
        try:
            _, info = read_grouping_tags(path)
        except Exception as exc:  # noqa: BLE001
            series.warnings.append(f"{path}: unreadable, left out ({type(exc).__name__}: {exc})")
            continue
        infos.append(info)
    return infos


def read_series(ref: SeriesRef) -> Series:
    """Header values, geometry and plane of one series. Never raises for bad files."""
    series = Series(
        series_uid=ref.series_uid,
        study_uid=ref.study_uid,
        files=list(ref.files),
        patient_id=ref.patient_id,
        series_description=ref.series_description,
    )
    for path in ref.missing:
        series.warnings.append(f"{path}: listed in {ref.source or 'the source'} but missing, left out")
    series.warnings.extend(ref.notes)
    try:
        _read_into(ref, series)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one series, not the run
        log.exception("series %s", ref.series_uid)
        series.skip_reason = f"could not read headers ({type(exc).__name__}: {exc})"
    return series


def _read_into(ref: SeriesRef, series: Series) -> None:
    infos = _sorted_instances(ref, series)
    if not infos:
        return
    datasets = _read_representatives(infos, series)
    if not datasets:
        why = f": {series.warnings[-1]}" if series.warnings else ""
        series.skip_reason = "no file with a readable header" + why
        return
    values = _identify(series, datasets[0])
    if series.skip_reason:
        series.header = values
        return
    _fill_header(series, infos, datasets, values)


def _sorted_instances(ref: SeriesRef, series: Series) -> list[InstanceInfo]:
    """The series' instances sorted along the slice normal (files and image count set); [] with a skip reason."""
    if not ref.files:
        gone = f" ({len(ref.missing)} listed files missing)" if ref.missing else ""
        series.skip_reason = "no readable files" + gone
        return []
    infos = _ensure_instances(ref, series)
    if not infos:
        series.skip_reason = "no readable files"
        return []
    iops = [i.orientation for i in infos if i.orientation]
    normal = None
    if iops:
        try:
            normal = summarize(iops).main_normal
        except ValueError:
            normal = None
    infos.sort(key=_sort_key(normal))
    without = [i.path.name for i in infos if not i.orientation]
    if iops and without:  # NaN or garbage where the others have a plane
        series.warnings.append(f"{len(without)} file(s) without a usable ImageOrientationPatient "
                               f"(e.g. {without[0]}): left out of the geometry")
    series.files = [i.path for i in infos]
    series.n_images = len(infos)
    series.conflicts.extend(series_conflicts(infos))
    return infos


# What the files of one series share; files that differ here were merged from another series.
_MUST_AGREE = (("StudyInstanceUID", "study_uid"), ("Modality", "modality"),
               ("FrameOfReferenceUID", "frame_of_reference"), ("SeriesNumber", "series_number"),
               ("SeriesDescription", "series_description"))


def series_conflicts(infos: list[InstanceInfo]) -> list[str]:
    """One line per attribute on which the files of one SeriesInstanceUID disagree (empty values aside)."""
    out = []
    for label, attr in _MUST_AGREE:
        groups: dict[str, list[str]] = {}
        for info in infos:
            value = getattr(info, attr, "")
            if value:
                groups.setdefault(value, []).append(info.path.name)
        if len(groups) > 1:
            ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
            parts = "; ".join(f"{len(names)} with '{value[:64]}' (e.g. {names[0]})" for value, names in ranked[:3])
            out.append(f"files of one SeriesInstanceUID disagree on {label}: {parts} (merged from another series?)")
    return out


def _read_representatives(infos: list[InstanceInfo], series: Series) -> list[Dataset]:
    """Full headers of a few files, in acquisition order (instance number): a DWI or time series is written
    volume by volume, so first/middle/last catch b0 and the highest b, the first and last time point."""
    acquisition = sorted(infos, key=lambda i: (i.instance_number is None, i.instance_number or 0))
    datasets: list[Dataset] = []
    for index in _representatives(len(acquisition)):
        path = acquisition[index].path
        try:
            ds = _read_header(path)
        except BudgetError as exc:
            series.warnings.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001
            series.warnings.append(f"{path}: header unreadable ({type(exc).__name__}: {exc})")
            continue
        if "SeriesInstanceUID" not in ds and "SOPClassUID" not in ds:
            series.warnings.append(f"{path}: header incomplete (file truncated?), left out")
            continue
        bad = [f"{k} (undecodable)" for k in getattr(ds, "_undecodable", [])] + _unreadable_numbers(ds)
        if bad:
            series.warnings.append(f"{path.name}: not a number, read as absent: {', '.join(bad)}")
        datasets.append(ds)
    return datasets


def _identify(series: Series, first: Dataset) -> dict[str, Any]:
    """The series-wide values; identity fields the source did not know; the skip reason for non-images."""
    values = _series_values(first)
    series.modality = values["Modality"]
    series.series_description = values["SeriesDescription"] or series.series_description
    series.series_number = int(_to_float(first.get("SeriesNumber")) or 0) or None
    if not series.study_uid:
        series.study_uid = _text(first.get("StudyInstanceUID"))
    if not series.patient_id:
        series.patient_id = _text(first.get("PatientID"))
    series.skip_reason = skip_reason_for(values["SOPClassUID"], values["Modality"], values["Rows"] is not None)
    return values


def _fill_header(series: Series, infos: list[InstanceInfo], datasets: list[Dataset], values: dict[str, Any]) -> None:
    """Per-frame values merged over the representatives, frame counts, mosaic tiles and geometry."""
    first = datasets[0]
    sizes = {(_int(ds.get("Rows")), _int(ds.get("Columns"))) for ds in datasets} - {(None, None)}
    if len(sizes) > 1:
        shown = ", ".join(f"{r}×{c}" for r, c in sorted(sizes, key=str))
        series.conflicts.append(f"files of one SeriesInstanceUID have different image sizes ({shown})")
    enhanced = any(
        "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds for ds in datasets
    )
    if enhanced:
        per_frame, orientations, positions = _enhanced_frames(datasets)
        frames_read = sum(int(_to_float(ds.get("NumberOfFrames")) or 1) for ds in datasets)
        n_frames = round(frames_read * len(infos) / len(datasets))
    else:
        per_frame = [_classic_values(ds) for ds in datasets]
        orientations = [i.orientation for i in infos if i.orientation]
        positions = [i.position for i in infos if i.position]
        n_frames = len(infos)
    mosaic = values["MosaicImages"]
    rows, columns = values["Rows"], values["Columns"]
    if mosaic and mosaic > 1:
        tiles = math.ceil(math.sqrt(mosaic))
        rows, columns = (rows // tiles if rows else rows), (columns // tiles if columns else columns)
    series.n_frames = n_frames
    header = dict(values)
    header.update(_merge_frames(per_frame, first))
    header["ImageType"] = _union_strings([_to_strings(first.get("ImageType"))] + [v["ImageType"] for v in per_frame])
    header["Rows"], header["Columns"] = rows, columns
    header["Enhanced"] = enhanced
    n_positions = len({tuple(round(c, 1) for c in p) for p in positions}) or 1
    header["NumberOfPositions"] = n_positions
    header["ImagesPerPosition"] = (n_frames / n_positions) if positions else None
    series.header = header
    series.geometry = _geometry(rows, columns, header.get("PixelSpacing"), header.get("SliceThickness"),
                                header.get("SpacingBetweenSlices"), orientations, positions, series)
    if series.geometry is None and not series.warnings:
        series.warnings.append(f"series {series.series_uid}: no image geometry (ImageOrientationPatient missing)")


def _merge_frames(per_frame: list[dict[str, Any]], first: Dataset) -> dict[str, Any]:
    """One value per key for the series, plus the distinct values where a series varies."""

    def first_of(key):
        return next((v[key] for v in per_frame if v.get(key) is not None), None)

    return {
        "RepetitionTime": first_of("RepetitionTime"),
        "EchoTime": first_of("EchoTime"),
        "EchoTimes": _distinct(v.get("EchoTime") for v in per_frame),
        "InversionTime": first_of("InversionTime"),
        "FlipAngle": first_of("FlipAngle"),
        "EchoTrainLength": first_of("EchoTrainLength"),
        "SliceThickness": first_of("SliceThickness"),
        "SpacingBetweenSlices": first_of("SpacingBetweenSlices"),
        "PixelSpacing": first_of("PixelSpacing"),
        "BValues": _distinct((v.get("BValue") for v in per_frame), 0),
        "TemporalPositions": len(_distinct(v.get("TemporalPosition") for v in per_frame)),
        "EchoNumbers": len(_distinct(v.get("EchoNumber") for v in per_frame)),
    }


def _enhanced_frames(datasets: list[Dataset]) -> tuple[list[dict[str, Any]], list, list]:
    """Per-frame values of enhanced objects; all frames for geometry and b-values, cheap since in memory."""
    per_frame: list[dict[str, Any]] = []
    orientations: list[tuple[float, ...]] = []
    positions: list[tuple[float, float, float]] = []
    for ds in datasets:
        frames = ds.get("PerFrameFunctionalGroupsSequence") or [None]
        for frame in frames:
            v = _frame_values(ds, frame)
            if v["orientation"] and len(v["orientation"]) == 6:
                orientations.append(v["orientation"])
            if v["position"] and len(v["position"]) == 3:
                positions.append(v["position"])
            per_frame.append(v)
        # Values only at the top level in some writers (legacy converted, some vendors).
        top = _classic_values(ds)
        for v in per_frame:
            for key, value in top.items():
                if v.get(key) in (None, []) and value not in (None, []):
                    v[key] = value
        top_iop = to_floats(ds.get("ImageOrientationPatient"), 6)
        if not orientations and top_iop:
            orientations.append(top_iop)
    return per_frame, orientations, positions
