"""DICOM writing: a ``SeriesSpec`` and its ``RenderedSeries`` become files.

Three storage forms, as scanners write them:
- ``classic``: MR Image Storage, one file per frame;
- ``mosaic``: Siemens classic files, one per volume, slices tiled in a grid
  (ImageType …\\MOSAIC, (0019,100A) NumberOfImagesInMosaic, a small CSA image
  header with the same and SliceNormalVector, ImagePositionPatient of the whole
  mosaic as Siemens writes it);
- ``enhanced``: Enhanced MR Image Storage, one multi-frame file per series with
  shared and per-frame functional groups (position, orientation, b-value,
  temporal position, echo); top-level TR/TE/flip are absent, as on real
  enhanced objects: they live in the MR Timing / MR Echo functional groups.
Per-spec ``extra["drop_tags"]`` removes tags (the archive mess) after building.
Nothing here reads a clock: every date, time and UID comes from the caller.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..pydicom_compat import save_dataset
from . import siemens_programs
from .profiles import Profile
from .spec import RenderedSeries, SeriesSpec

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
FAST_HEADER_FILES = True  # header-only classic series: shared elements encoded once (byte-identical files)
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root, as used by generate_uid
UID_PREFIX = "1.2.826.0.1.3680043.8.498."


def make_uid(*parts: object) -> str:
    """A UID that depends only on ``parts`` (the generator's determinism rests on this)."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts])


@dataclass
class StudyContext:
    """What every series of one study shares."""

    profile: Profile
    seed_key: str  # e.g. "seed1/study0003": the entropy source of all UIDs of the study
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    patient_age: str
    patient_weight: float
    study_uid: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    study_id: str
    accession: str
    frame_of_reference_uid: str
    device_serial: str
    station_name: str


@dataclass
class SeriesContext:
    series_uid: str
    series_number: int
    series_time: str  # HHMMSS
    coil: str


# --- pixels -------------------------------------------------------------------------------------------------------


@dataclass
class _Pixels:
    stored: np.ndarray  # (n, rows, cols) uint16/int16 or (n, rows, cols, 3) uint8
    slope: float
    intercept: float
    bits_stored: int
    signed: bool
    rgb: bool
    window: tuple[float, float]


def _to_stored(rendered: RenderedSeries, spec: SeriesSpec, profile: Profile, rng: np.random.Generator) -> _Pixels:
    f = np.nan_to_num(np.asarray(rendered.frames, dtype=np.float32))
    if f.ndim == 4 and f.shape[-1] == 3:
        f = np.clip(f, 0, None)
        scale = 255.0 / max(float(f.max()), 1e-6) if f.max() > 255 else 1.0
        stored = np.clip(np.round(f * scale), 0, 255).astype(np.uint8)
        return _Pixels(stored, 1.0, 0.0, 8, False, True, (128.0, 256.0))
    slope, intercept = 1.0, 0.0
    if rendered.signed:
        if profile.vendor == "SIEMENS":  # Siemens phase: 0..4095 stored, slope 2, intercept -4096
            slope, intercept = 2.0, -4096.0
            stored = np.clip(np.round((f - intercept) / slope), 0, 4095).astype(np.uint16)
            signed = False
        elif spec.extra.get("hz_unsigned"):
            slope, intercept = _hz_rescale(f, profile, rng)
            stored = np.clip(np.round((f - intercept) / slope), 0, 65535).astype(np.uint16)
            signed = False
        else:
            stored = np.clip(np.round(f), -32768, 32767).astype(np.int16)
            signed = True
    else:
        f = np.clip(f, 0, None)
        top = float(f.max()) if f.size else 0.0
        if spec.extra.get("adc_si_units"):
            slope = 1e-6  # stored in 1e-6 mm²/s, RescaleSlope gives mm²/s (some GE/Canon/Philips ADC maps)
            stored = np.clip(np.round(f), 0, 65535).astype(np.uint16)
        else:
            if profile.rescale or top > 65535:
                target = float(rng.uniform(2000, 4095)) if profile.rescale else 65535.0
                slope = round(max(top, 1.0) / target, 6)
            stored = np.clip(np.round(f / slope), 0, 65535).astype(np.uint16)
        signed = False
    mx = int(np.abs(stored).max()) if stored.size else 0
    bits = 12 if (mx <= 4095 and not signed) else 16
    sample = stored.ravel()[:: max(1, stored.size // 200_000)]  # a window needs no more pixels than this
    real = sample.astype(np.float32) * slope + intercept
    lo, hi = (np.percentile(real, [1, 99.5]) if real.size else (0.0, 1.0))
    width = max(float(hi - lo), slope)
    window = (float(f"{(lo + hi) / 2:.6g}"), float(f"{width:.6g}"))
    return _Pixels(stored, slope, intercept, bits, signed, False, window)


def _hz_rescale(f: np.ndarray, profile: Profile, rng: np.random.Generator) -> tuple[float, float]:
    """(slope, intercept) of a Philips field map in Hz: stored unsigned, a negative intercept restores the sign
    (dcm2niix issue 455: RescaleIntercept -203, slope 0.099)."""
    span = max(float(np.abs(f).max()) if f.size else 1.0, 1.0)
    slope = round(2 * span / float(rng.uniform(2000, 4095)), 6) if profile.rescale else 1.0
    return slope, -float(np.ceil(span))


# --- common modules -----------------------------------------------------------------------------------------------


def _ds(values: dict) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def _fmt(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _common(spec: SeriesSpec, study: StudyContext, series: SeriesContext, sop_class: str) -> Dataset:
    """Patient, Study, Series, Frame of Reference, Equipment, SOP Common (values shared by all files)."""
    p = study.profile
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.study_date
    ds.StudyTime = study.study_time
    ds.InstanceCreationDate, ds.InstanceCreationTime = study.study_date, series.series_time
    ds.OperatorsName = ""
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series.series_time
    ds.AccessionNumber = study.accession
    ds.Modality = "MR"
    ds.Manufacturer = p.manufacturer
    ds.InstitutionName = p.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = study.station_name
    ds.StudyDescription = {"routine": "MRT Schaedel" if p.language == "de" else "MR BRAIN",
                           }.get(spec.extra.get("study_type", ""), "MR HEAD")
    ds.SeriesDescription = spec.series_description
    ds.ManufacturerModelName = p.model
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.PatientAge = study.patient_age
    ds.PatientWeight = study.patient_weight
    ds.BodyPartExamined = "HEAD" if p.vendor in ("SIEMENS", "CANON") else "BRAIN"
    ds.DeviceSerialNumber = study.device_serial
    ds.SoftwareVersions = p.software_versions
    ds.ProtocolName = spec.protocol_name
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.series_number
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Laterality = ""
    ds.MagneticFieldStrength = spec.field_strength
    ds.ImagingFrequency = round(42.577478 * spec.field_strength, 6)
    ds.ImagedNucleus = "1H"
    ds.MRAcquisitionType = spec.acquisition
    if spec.contrast and "contrast_agent" in spec.extra and spec.extra["contrast_agent"] is not None:
        ds.ContrastBolusAgent = spec.extra["contrast_agent"]
    return ds


def _mr_params(ds: Dataset, spec: SeriesSpec, series: SeriesContext, rng_key: int) -> None:
    """Classic MR Image module acquisition attributes (top level)."""
    ds.ScanningSequence = list(spec.scanning_sequence) or ["RM"]
    ds.SequenceVariant = list(spec.sequence_variant) or ["NONE"]
    ds.ScanOptions = list(spec.scan_options) if spec.scan_options else ""
    ds.SequenceName = spec.sequence_name
    ds.RepetitionTime = _fmt(spec.repetition_time, 2)
    ds.EchoTime = _fmt(spec.echo_time, 3)
    if spec.inversion_time is not None:
        ds.InversionTime = _fmt(spec.inversion_time, 1)
    elif spec.extra.get("ti_zero"):
        ds.InversionTime = 0  # GE, Hitachi: the tag is there with 0 on series without inversion
    ds.FlipAngle = _fmt(spec.flip_angle, 1)
    ds.EchoTrainLength = spec.echo_train_length if spec.echo_train_length is not None else 1
    ds.NumberOfAverages = 1
    ds.SliceThickness = _fmt(spec.slice_thickness, 4)
    ds.SpacingBetweenSlices = _fmt(spec.slice_spacing, 4)
    ds.PercentSampling = 100
    ds.PercentPhaseFieldOfView = round(100.0 * spec.rows / max(spec.columns, 1), 4)
    ds.PixelBandwidth = spec.extra.get("pixel_bandwidth", 1500 if spec.extra.get("technique", "") in _EPI else 200)
    ds.ReceiveCoilName = series.coil
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [0, spec.columns, spec.rows, 0]
    ds.NumberOfPhaseEncodingSteps = spec.rows
    ds.InPlanePhaseEncodingDirection = "ROW" if spec.extra.get("base_plane") == "SAGITTAL" else "COL"
    ds.PatientPosition = "HFS"
    ds.SAR = round(0.3 + (rng_key % 97) / 100.0, 3)
    ds.dBdt = 0


_EPI = ("dwi", "adc", "dti", "fa", "eadc", "dsc", "asl", "bold")


def _private(ds: Dataset, spec: SeriesSpec, profile: Profile, b_value: float | None) -> None:
    """Vendor private tags that real files carry (b-values, pulse sequence names, techniques)."""
    v = profile.vendor
    if v == "SIEMENS":
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        if b_value is not None and not spec.extra.get("no_private_b"):
            block.add_new(0x0C, "IS", int(round(b_value)))
            block.add_new(0x0D, "CS", "DIRECTIONAL" if b_value > 0 else "NONE")
        _siemens_protocol(ds, spec, profile)
    elif v == "GE":
        acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        acq.add_new(0x9C, "LO", spec.extra.get("ge_psd", ""))
        if spec.extra.get("ge_internal_psd"):
            acq.add_new(0x9E, "LO", spec.extra["ge_internal_psd"])
        scale = _ge_b0_velocity_scale(spec)
        if scale is not None:
            acq.add_new(0xE2, "DS", scale)
        if b_value is None and spec.extra.get("ge_b_everywhere"):
            b_value = 0.0  # GE writes (0043,1039) on every image, 0 where nothing is diffusion weighted
        if b_value is not None:
            parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
            # GE writes b in the first value of slop_int_6..9, sometimes offset by 1e9
            first = int(round(b_value)) + (1000000000 if spec.extra.get("ge_b_offset") else 0)
            parm.add_new(0x39, "IS", [first, 8, 0, 0])
    elif v == "PHILIPS":
        block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
        block.add_new(0x20, "LO", spec.extra.get("philips_technique", ""))
        if b_value is None and spec.extra.get("philips_b_everywhere") and "SharedFunctionalGroupsSequence" not in ds:
            b_value = 0.0  # classic Philips files from R3 on carry b = 0 on non-diffusion images
        if b_value is not None:
            block.add_new(0x03, "FL", float(b_value))


def _ge_b0_velocity_scale(spec: SeriesSpec) -> str | None:
    """(0019,10E2) on a GE B0 map: negative, the echo spacing as -1/(2π·ΔTE) with ΔTE in s (dcm2niix reads
    EchoTime2 back from it, nii_dicom_batch.cpp, issue 617); None for every other series."""
    te1, te2 = spec.echo_time, spec.extra.get("echo_time_2")
    if not spec.extra.get("ge_internal_psd") or te1 is None or te2 is None or te2 <= te1:
        return None
    return f"{-1.0 / (2 * math.pi * (float(te2) - float(te1)) / 1000.0):.6f}"


def _siemens_protocol(ds: Dataset, spec: SeriesSpec, profile: Profile) -> None:
    """The protocol text naming the sequence program: CSA series header (syngo), (0021,1019) on XA."""
    program = siemens_programs.program(spec.extra.get("technique", ""), str(ds.get("StudyInstanceUID", "")))
    if not program:
        return
    text = siemens_programs.protocol_block(program)
    if profile.grammar == "xa":
        ds.private_block(0x0021, "SIEMENS MR SDS 01", create=True).add_new(0x19, "OB", text.encode("latin-1"))
    else:
        block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        block.add_new(0x20, "OB", _csa_header({"MrPhoenixProtocol": ("UN", [text])}))


def _b_value_public(profile: Profile) -> bool:
    """syngo VB/VE Siemens write b-values only privately; the others use (0018,9087) too."""
    return not (profile.vendor == "SIEMENS" and profile.grammar == "syngo")


def _pixel_module(ds: Dataset, px: _Pixels, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 3 if px.rgb else 1
    ds.PhotometricInterpretation = "RGB" if px.rgb else "MONOCHROME2"
    if px.rgb:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 8 if px.rgb else 16
    ds.BitsStored = 8 if px.rgb else px.bits_stored
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if px.signed else 0


def _matrix(rendered: RenderedSeries, px: _Pixels) -> tuple[int, int]:
    """(Rows, Columns) the headers declare: the frames' own, or the declared matrix of a header-only series."""
    if rendered.matrix is not None:
        return int(rendered.matrix[0]), int(rendered.matrix[1])
    return int(px.stored.shape[1]), int(px.stored.shape[2])


def _drop(ds: Dataset, spec: SeriesSpec) -> None:
    for keyword in spec.extra.get("drop_tags", ()):
        if keyword in ds:
            delattr(ds, keyword)


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SERIESCLS_SYN"
    return meta


def _save(ds: Dataset, path: Path) -> None:
    ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    save_dataset(ds, path)  # pydicom 2.4 (Slicer 5.6/5.8) and 3


_TEXT_VRS = {"CS", "LO", "SH", "DS", "IS", "ST", "LT", "DA", "TM", "AS"}
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


def _encode_simple(elem) -> bytes | None:
    """Explicit VR little-endian bytes of a short-VR element, as pydicom writes them; None: let pydicom do it."""
    vr, value = elem.VR, elem.value
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    if vr in _TEXT_VRS or vr == "UI":
        if any(v is None for v in values) or not all(isinstance(v, (str, int, float)) for v in values):
            return None
        raw = "\\".join(str(v) for v in values).encode("ascii", errors="strict")
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
    elif vr in _BINARY_VRS:
        raw = struct.pack("<" + _BINARY_VRS[vr] * len(values), *values)
    else:
        return None
    if len(raw) > 0xFFFF:
        return None
    return struct.pack("<HH2sH", elem.tag.group, elem.tag.element, vr.encode(), len(raw)) + raw


def _encode(ds: Dataset) -> dict[int, bytes]:
    """Each top-level element of ``ds`` encoded alone (explicit VR little endian), by tag."""
    out = {}
    for elem in ds:
        try:
            fast = _encode_simple(elem)
        except (UnicodeEncodeError, struct.error, TypeError):
            fast = None
        if fast is not None:
            out[int(elem.tag)] = fast
            continue
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_data_element(fp, elem)
        out[int(elem.tag)] = fp.getvalue()
    return out


def _meta_parts(sop_class: str) -> dict[int, bytes]:
    """The file meta elements that are the same for every file of a series (all but the instance UID)."""
    meta = _file_meta(sop_class, "1.2")
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    parts = _encode(meta)
    parts[0x00020001] = _encode(_ds({"FileMetaInformationVersion": b"\x00\x01"}))[0x00020001]
    parts.pop(0x00020000, None)
    parts.pop(0x00020003, None)
    return parts


def _save_fast(base: dict[int, bytes], meta: dict[int, bytes], ds: Dataset, path: Path) -> None:
    """The bytes ``_save`` would write for ``base`` elements + ``ds``, encoding the shared elements once.

    Used for header-only series (thousands of small files): pydicom's per-file encoding of the ~80
    shared elements and of the file meta group dominated the run time.
    """
    elements = dict(base)
    elements.update(_encode(ds))
    group = dict(meta)
    group.update(_encode(_ds({"MediaStorageSOPInstanceUID": ds.SOPInstanceUID})))
    body = b"".join(group[tag] for tag in sorted(group))
    head = b"\0" * 128 + b"DICM" + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body))
    path.write_bytes(head + body + b"".join(elements[tag] for tag in sorted(elements)))


# --- geometry helpers ---------------------------------------------------------------------------------------------


def _normal(iop) -> np.ndarray:
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    return np.cross(r, c)


def _slice_location(pos, iop) -> float:
    return round(float(np.dot(_normal(iop), np.asarray(pos, float))), 4)


def _geometry_groups(rendered: RenderedSeries) -> tuple[int, int]:
    """(frames per volume, number of volumes): volumes repeat the same slice positions (b-values, time, echoes)."""
    n = len(rendered.frames)
    distinct = len({tuple(round(float(x), 3) for x in p) for p in rendered.positions})
    if 0 < distinct < n and n % distinct == 0:
        return distinct, n // distinct
    return n, 1


# --- classic ------------------------------------------------------------------------------------------------------


def _write_classic(spec, rendered, px, study, series, out_dir: Path) -> list[Path]:
    base = _common(spec, study, series, MR_IMAGE_STORAGE)
    _mr_params(base, spec, series, series.series_number)
    base.ImageType = list(spec.image_type)
    base.PixelSpacing = [_fmt(x, 6) for x in rendered.pixel_spacing]
    base.SliceThickness = _fmt(rendered.slice_thickness, 4)
    _pixel_module(base, px, *_matrix(rendered, px))
    if not px.rgb:
        base.RescaleIntercept = px.intercept
        base.RescaleSlope = px.slope
        base.RescaleType = "US"
        base.WindowCenter, base.WindowWidth = px.window
    n = len(rendered.frames)
    per_volume, n_volumes = _geometry_groups(rendered)
    base.ImagesInAcquisition = n
    if study.profile.vendor == "GE":  # LocationsInAcquisition: with (0020,1002) what splits a B0 map's volumes
        base.private_block(0x0021, "GEMS_RELA_01", create=True).add_new(0x4F, "SS", per_volume)
    parts = _b0_parts(spec, n_volumes)
    if n_volumes > 1 and rendered.temporal_indices is not None:
        base.NumberOfTemporalPositions = n_volumes
        if _trigger_times(spec):
            base.CardiacNumberOfImages = n_volumes
    _drop(base, spec)
    fast = rendered.matrix is not None and FAST_HEADER_FILES  # header-only: encode the shared elements once
    base_bytes = _encode(base) if fast else {}
    meta_bytes = _meta_parts(MR_IMAGE_STORAGE) if fast else {}
    paths = []
    for i in range(n):
        ds = Dataset()
        if not fast:
            ds.update(base)
        ds.SOPInstanceUID = make_uid(series.series_uid, "sop", i)
        ds.InstanceNumber = i + 1
        ds.AcquisitionNumber = 1 + (i // per_volume if n_volumes > 1 else 0)
        ds.ImagePositionPatient = [_fmt(x, 4) for x in rendered.positions[i]]
        ds.ImageOrientationPatient = [_fmt(x, 6) for x in rendered.orientations[i]]
        ds.SliceLocation = _slice_location(rendered.positions[i], rendered.orientations[i])
        if rendered.temporal_indices is not None:
            ds.TemporalPositionIdentifier = int(rendered.temporal_indices[i]) + 1
            if _trigger_times(spec):  # a cine: each cardiac phase at its delay after the R wave
                ds.TriggerTime = _trigger_time(spec, rendered.temporal_indices[i], n_volumes)
        if rendered.echo_numbers is not None:
            ds.EchoNumbers = int(rendered.echo_numbers[i])
            tes = spec.extra.get("echo_times")
            if tes and 0 < ds.EchoNumbers <= len(tes) and "EchoTime" in base:
                ds.EchoTime = _fmt(tes[ds.EchoNumbers - 1], 3)  # multi-echo: each echo its own TE
        else:
            ds.EchoNumbers = 1
        b = None if rendered.b_values is None else float(rendered.b_values[i])
        if b is not None and _b_value_public(study.profile) and not (
                spec.extra.get("public_b_positive_only") and b <= 0):
            ds.DiffusionBValue = b  # Toshiba-era files: only on b > 0 images
        _private(ds, spec, study.profile, b)
        if parts:
            _b0_classic_image(ds, spec, parts[i // per_volume])
        if rendered.matrix is None:
            ds.PixelData = px.stored[i].tobytes()
        path = out_dir / f"IM{i + 1:05d}.dcm"
        if fast:
            _save_fast(base_bytes, meta_bytes, ds, path)
        else:
            _save(ds, path)
        paths.append(path)
    return paths


def _b0_classic_image(ds: Dataset, spec: SeriesSpec, part: str) -> None:
    """One image of a B0 map series: Philips gives the map's images their unit and types the magnitude's as an FFE
    magnitude (habits.py); GE writes both volumes alike (nothing but the image number tells them apart)."""
    if part == "hz" and spec.extra.get("hz_rescale_type"):
        ds.RescaleType = spec.extra["hz_rescale_type"]
    if part == "magnitude" and spec.extra.get("b0_magnitude_image_type"):
        ds.ImageType = list(spec.extra["b0_magnitude_image_type"])


def _trigger_times(spec: SeriesSpec) -> bool:
    """A cardiac-gated cine (phase-contrast flow): its frames carry trigger delays."""
    return bool(spec.extra.get("rr_interval")) and spec.n_temporal > 1


def _trigger_time(spec: SeriesSpec, phase: int, n_phases: int) -> float:
    return round(int(phase) * float(spec.extra["rr_interval"]) / max(n_phases, 1), 2)


# --- Siemens mosaic -----------------------------------------------------------------------------------------------


def _csa_header(tags: dict[str, tuple[str, list]]) -> bytes:
    """A minimal Siemens CSA2 ('SV10') image header: name -> (VR, values)."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(tags), 77)
    for name, (vr, values) in tags.items():
        vr_bytes = vr.encode().ljust(4, b"\0")
        out += struct.pack("<64si4siii", name.encode()[:63], len(values), vr_bytes, 0, len(values), 77)
        for value in values:
            item = (str(value).encode() + b"\0")
            out += struct.pack("<4i", len(item), len(item), 77, len(item))
            out += item + b"\0" * ((4 - len(item) % 4) % 4)
    return bytes(out)


def _write_mosaic(spec, rendered, px, study, series, out_dir: Path) -> list[Path]:
    per_volume, n_volumes = _geometry_groups(rendered)
    grid = math.ceil(math.sqrt(per_volume))
    r, c = _matrix(rendered, px)
    base = _common(spec, study, series, MR_IMAGE_STORAGE)
    _mr_params(base, spec, series, series.series_number)
    it = list(spec.image_type)
    base.ImageType = it if it[-1] == "MOSAIC" else [*it, "MOSAIC"]
    base.PixelSpacing = [_fmt(x, 6) for x in rendered.pixel_spacing]
    base.SliceThickness = _fmt(rendered.slice_thickness, 4)
    _pixel_module(base, px, grid * r, grid * c)
    base.RescaleIntercept, base.RescaleSlope, base.RescaleType = px.intercept, px.slope, "US"
    base.WindowCenter, base.WindowWidth = px.window
    base.AcquisitionMatrix = [0, c, r, 0]
    base.ImagesInAcquisition = n_volumes
    if rendered.temporal_indices is not None and n_volumes > 1:
        base.NumberOfTemporalPositions = n_volumes
    _drop(base, spec)
    iop = np.asarray(rendered.orientations[0], float)
    row_dir, col_dir = iop[:3], iop[3:]
    dr, dc = rendered.pixel_spacing
    normal = _normal(iop)
    paths = []
    for v in range(n_volumes):
        frames = px.stored[v * per_volume:(v + 1) * per_volume]
        tile = np.zeros((grid * r, grid * c), dtype=px.stored.dtype)
        for k, frame in enumerate(frames if rendered.matrix is None else []):
            tile[(k // grid) * r:(k // grid + 1) * r, (k % grid) * c:(k % grid + 1) * c] = frame
        first = np.asarray(rendered.positions[v * per_volume], float)
        # Siemens writes the position of the whole mosaic as if it were one image centred like slice 1
        pos = first - row_dir * dc * (grid * c - c) / 2.0 - col_dir * dr * (grid * r - r) / 2.0
        ds = Dataset()
        ds.update(base)
        ds.SOPInstanceUID = make_uid(series.series_uid, "sop", v)
        ds.InstanceNumber = v + 1
        ds.AcquisitionNumber = v + 1
        ds.ImagePositionPatient = [_fmt(x, 4) for x in pos]
        ds.ImageOrientationPatient = [_fmt(x, 6) for x in iop]
        ds.SliceLocation = _slice_location(first, iop)
        ds.EchoNumbers = 1
        if rendered.temporal_indices is not None:
            ds.TemporalPositionIdentifier = int(rendered.temporal_indices[v * per_volume]) + 1
        b = None if rendered.b_values is None else float(rendered.b_values[v * per_volume])
        _private(ds, spec, study.profile, b)
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0A, "US", len(frames))
        csa = {"NumberOfImagesInMosaic": ("US", [len(frames)]),
               "SliceNormalVector": ("FD", [f"{x:.8f}" for x in normal])}
        if b is not None:
            csa["B_value"] = ("IS", [int(round(b))])
        csa_block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        csa_block.add_new(0x08, "CS", "IMAGE NUM 4")
        csa_block.add_new(0x10, "OB", _csa_header(csa))
        if rendered.matrix is None:
            ds.PixelData = tile.tobytes()
        path = out_dir / f"IM{v + 1:05d}.dcm"
        _save(ds, path)
        paths.append(path)
    return paths


# --- enhanced multi-frame -----------------------------------------------------------------------------------------


def _yn(flag: bool) -> str:
    return "YES" if flag else "NO"


def _pulse_sequence(ds: Dataset, spec: SeriesSpec) -> None:
    """MR Pulse Sequence module (required for ORIGINAL enhanced images)."""
    ss, sv = set(spec.scanning_sequence), set(spec.sequence_variant)
    ds.PulseSequenceName = spec.extra.get("pulse_sequence_name") or "UNKNOWN"
    ds.MRAcquisitionType = spec.acquisition
    ds.EchoPulseSequence = "GRADIENT" if "GR" in ss or "EP" in ss and "SE" not in ss else "SPIN"
    ds.MultipleSpinEcho = _yn("SE" in ss and (spec.echo_train_length or 1) > 1)
    ds.MultiPlanarExcitation = _yn(spec.acquisition == "2D")
    ds.PhaseContrast = _yn(spec.extra.get("other_kind") == "PC")
    ds.TimeOfFlightContrast = _yn(spec.sequence in ("TOF_MRA", "MRA_MIP"))
    ds.ArterialSpinLabelingContrast = "PSEUDOCONTINUOUS" if spec.sequence == "PERFUSION_ASL" else "NONE"
    ds.SteadyStatePulseSequence = "FREE_PRECESSION" if spec.sequence == "CISS" else "NONE"
    ds.EchoPlanarPulseSequence = _yn("EP" in ss)
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT" if spec.fat_suppressed else "NONE"
    mt = spec.sequence == "TOF_MRA" or spec.extra.get("other_kind") == "MT"
    ds.MagnetizationTransfer = "ON_RESONANCE" if mt else "NONE"
    ds.BloodSignalNulling = "NO"
    ds.Tagging = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE" if "SS" in sv or "EP" in ss else "PARTIAL"
    ds.CoverageOfKSpace = "FULL"
    ds.NumberOfKSpaceTrajectories = 1


def _write_enhanced(spec, rendered, px, study, series, out_dir: Path) -> list[Path]:
    """One Enhanced MR object: the whole series as frames, what is common in the shared functional groups."""
    p = study.profile
    original = spec.image_type[0] != "DERIVED"
    acquired = original or bool(spec.extra.get("derived_keeps_acquisition"))  # a map that keeps its scan's groups
    ds = _enhanced_image(spec, rendered, px, study, series, original, acquired)
    per_volume, n_volumes = _geometry_groups(rendered)
    frame_types = _philips_b0_types(ds, spec, _b0_parts(spec, n_volumes))  # per volume, or None: shared
    iops = {tuple(round(x, 5) for x in o) for o in rendered.orientations}
    per_frame = _geometry_per_frame(spec)
    ds.SharedFunctionalGroupsSequence = Sequence([_shared_groups(
        ds, spec, rendered, px, series, p, original, one_orientation=len(iops) == 1 and not per_frame,
        acquired=acquired, frame_type=frame_types is None)])
    if p.vendor == "PHILIPS":
        _private(ds, spec, p, None)  # scanning technique at the top level; b-values live in the frames
    elif p.vendor == "SIEMENS":
        _siemens_image_type_text(ds, spec)
        _siemens_protocol(ds, spec, p)  # XA: the protocol at the top level, as (0021,1019)

    # every multi-volume series (time points, b-values/directions, echoes) numbers its volumes with
    # TemporalPositionIndex: unique dimension index values, and what dcm2niix reads on Siemens files; a Philips
    # B0 map's map and magnitude are not time points: Philips indexes them by its private image type
    temporal = n_volumes > 1 and frame_types is None
    _dimension_organization(ds, series, n_volumes, temporal, image_types=frame_types is not None)
    b_levels = sorted(set(rendered.b_values)) if rendered.b_values is not None else []
    dt0 = study.study_date + series.series_time
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _frame_groups(i, spec, rendered, dt0, per_volume, n_volumes, one_orientation=len(iops) == 1 and not per_frame,
                      b_levels=b_levels, original=original, measures=per_frame,
                      frame_type=frame_types[i // per_volume] if frame_types else None)
        for i in range(len(rendered.frames))])
    if temporal:
        ds.NumberOfTemporalPositions = n_volumes
    _drop(ds, spec)
    if rendered.matrix is None:
        ds.PixelData = px.stored.tobytes()
    path = out_dir / "IM00001.dcm"
    _save(ds, path)
    return [path]


def _enhanced_image(spec, rendered, px, study, series, original: bool, acquired: bool) -> Dataset:
    """The top level of an Enhanced MR object: what holds for the whole image, not per frame."""
    ds = _common(spec, study, series, ENHANCED_MR_IMAGE_STORAGE)
    for kw in ("AcquisitionDate", "AcquisitionTime"):  # the enhanced object has AcquisitionDateTime instead
        delattr(ds, kw)
    ds.ImageType = [spec.image_type[0], spec.image_type[1], _image_flavor(spec), _derived_contrast(spec, original)]
    if spec.extra.get("enhanced_habit") == "philips" and original:
        ds.ImageType = [spec.image_type[0], spec.image_type[1], _philips_contrast(spec), "NONE"]
    if _xa_diffusion_map(spec, original):
        # syngo XA types its diffusion maps in its own words, as its classic files do: DERIVED\PRIMARY\DIFFUSION
        # with ADC, TRACEW, FA or EXP (the words dcm2niix marks derived by, nii_dicom.cpp)
        ds.ImageType = list(spec.image_type[:4])
    ds.SOPInstanceUID = make_uid(series.series_uid, "sop", 0)
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(rendered.frames)
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = study.study_date + series.series_time
    ds.AcquisitionDuration = round(float(spec.repetition_time or 100) * spec.rows / 1000.0, 2)
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = ""
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = {"MRA_MIP": "MAX_IP", "SWI_MINIP": "MIN_IP"}.get(
        spec.sequence, "MPR" if spec.extra.get("mpr") else "NONE")
    ds.ComplexImageComponent = "PHASE" if rendered.signed else "MAGNITUDE"
    ds.AcquisitionContrast = _acquisition_contrast(spec)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()
    if spec.contrast and spec.extra.get("contrast_agent") is not None:
        ds.ContrastBolusAgentSequence = Sequence([_ds({
            "CodeValue": "C-17800", "CodingSchemeDesignator": "SRT", "CodeMeaning": "Gadolinium",
            "ContrastBolusAgentNumber": 1, "ContrastBolusAdministrationRouteSequence": Sequence([_ds({
                "CodeValue": "G-D101", "CodingSchemeDesignator": "SRT", "CodeMeaning": "Intravenous route"})]),
            "ContrastBolusIngredientConcentration": 1.0, "ContrastBolusIngredient": "GADOLINIUM"})])
    if acquired:
        _pulse_sequence(ds, spec)
    if spec.extra.get("enhanced_habit") not in ("philips", "siemens_xa"):
        # Canon and others keep the classic tags at the top level of enhanced objects; Philips and
        # Siemens XA leave ScanningSequence / SequenceVariant / SequenceName out (PulseSequenceName only)
        ds.SequenceName = spec.sequence_name
        ds.ScanningSequence = list(spec.scanning_sequence)
        ds.SequenceVariant = list(spec.sequence_variant)
    if spec.scan_options:
        ds.ScanOptions = list(spec.scan_options)
    _pixel_module(ds, px, *_matrix(rendered, px))
    return ds


def _xa_diffusion_map(spec: SeriesSpec, original: bool) -> bool:
    """A syngo XA enhanced map computed from a diffusion scan (ADC, trace, FA, exponential ADC)."""
    return (not original and spec.extra.get("enhanced_habit") == "siemens_xa"
            and tuple(spec.image_type[2:3]) == ("DIFFUSION",) and len(spec.image_type) >= 4)


def _siemens_image_type_text(ds: Dataset, spec: SeriesSpec) -> None:
    """(0021,1175) ImageTypeText of a syngo XA30+ enhanced object: the classic ImageType with the words (ND, NORM,
    DIS2D, …) its four-valued ImageType leaves out; XA10–XA20 kept them in ImageType (dcm2niix issue 597 and
    Siemens/README.md). The Vida profile is XA50."""
    if spec.extra.get("enhanced_habit") != "siemens_xa":
        return
    ds.add_new((0x0021, 0x0011), "LO", "SIEMENS MR SDI 02")  # its block (0021,11xx); the protocol takes (0021,10xx)
    ds.private_block(0x0021, "SIEMENS MR SDI 02").add_new(0x75, "CS", list(spec.image_type))


def _b0_parts(spec: SeriesSpec, n_volumes: int) -> list[str] | None:
    """What each volume of a GE/Philips B0 map series holds: the map in Hz first, then its magnitude where the
    habit keeps both in one series (habits.py); None for every other series."""
    if spec.extra.get("fieldmap_part") != "b0map":
        return None
    return ["hz", "magnitude"] if spec.extra.get("b0_with_magnitude") and n_volumes == 2 else ["hz"] * n_volumes


_B0_COMPONENT = {"hz": "REAL", "magnitude": "MAGNITUDE"}  # dcm2niix takes the Hz frames for real ones (issue 881)


def _philips_b0_types(ds: Dataset, spec: SeriesSpec, parts: list[str] | None) -> list[Dataset] | None:
    """A Philips enhanced B0 map's frame types: value 4 is the classic image type's fourth word (B0 for the map,
    M for the magnitude), as the development Ingenia file types its frames (T1\\M, T1\\P, T1\\R, T1\\I under
    a MIXED ImageType and ComplexImageComponent). Per-volume items when map and magnitude share the object,
    else None (the shared group, with the map's words set at the top level)."""
    if not parts or spec.extra.get("enhanced_habit") != "philips" or ds.ImageType[0] != "ORIGINAL":
        return None
    magnitude = spec.extra.get("b0_magnitude_image_type") or ("", "", "", "M")
    words = {"hz": spec.image_type[3] if len(spec.image_type) > 3 else "B0", "magnitude": magnitude[3]}
    mixed = len(set(parts)) > 1
    ds.ImageType = [*ds.ImageType[:3], "MIXED" if mixed else words["hz"]]
    ds.ComplexImageComponent = "MIXED" if mixed else _B0_COMPONENT["hz"]
    ds.AcquisitionContrast = ds.ImageType[2]  # T1 beside T1, as in that file
    if not mixed:
        return None
    return [_frame_type_item(ds, [*ds.ImageType[:3], words[part]], _B0_COMPONENT[part]) for part in parts]


def _frame_type_item(ds: Dataset, frame_type: list[str], component: str) -> Dataset:
    return _ds({"FrameType": frame_type, "PixelPresentation": "MONOCHROME", "VolumetricProperties": "VOLUME",
                "VolumeBasedCalculationTechnique": ds.VolumeBasedCalculationTechnique,
                "ComplexImageComponent": component, "AcquisitionContrast": ds.AcquisitionContrast})


def _philips_image_type_group(f: Dataset, word: str) -> None:
    """Philips' per-frame private group (2005,140F) with its image type (2005,1011), the dimension a mixed object's
    frames are indexed by (the development Ingenia file)."""
    f.add_new((0x2005, 0x0014), "LO", "Philips MR Imaging DD 005")
    item = Dataset()
    item.add_new((0x2005, 0x0010), "LO", "Philips MR Imaging DD 001")
    item.add_new((0x2005, 0x1011), "CS", word)
    f.add_new((0x2005, 0x140F), "SQ", Sequence([item]))


def _geometry_per_frame(spec) -> bool:
    """Siemens XA ASL: pixel measures and plane orientation in every frame's groups, not shared.

    dcm2niix (v1.0.20260724) splits a multi-volume file with shared ones into bogus echoes with random echo
    times when another enhanced file came before it in the folder; only ASL is written this way, so the other
    classes' files stay as they were.
    """
    return spec.sequence == "PERFUSION_ASL" and spec.extra.get("enhanced_habit") == "siemens_xa"


def _pixel_measures(spec, rendered) -> Sequence:
    return Sequence([_ds({
        "PixelSpacing": [_fmt(x, 6) for x in rendered.pixel_spacing],
        "SliceThickness": _fmt(rendered.slice_thickness, 4),
        "SpacingBetweenSlices": _fmt(spec.slice_spacing, 4)})])


def _shared_groups(ds: Dataset, spec, rendered, px, series, p, original: bool, one_orientation: bool,
                   acquired: bool, frame_type: bool = True) -> Dataset:
    """The shared functional groups: what every frame has in common (geometry, frame type, pixel values)."""
    shared = Dataset()
    if not _geometry_per_frame(spec):
        shared.PixelMeasuresSequence = _pixel_measures(spec, rendered)
    if one_orientation:  # otherwise (a 3-plane scout, Siemens XA ASL) each frame carries its own
        shared.PlaneOrientationSequence = Sequence([_ds({
            "ImageOrientationPatient": [_fmt(x, 6) for x in rendered.orientations[0]]})])
    if frame_type:
        shared.MRImageFrameTypeSequence = Sequence([_frame_type_item(ds, ds.ImageType, ds.ComplexImageComponent)])
    if acquired:  # the acquisition's parameters: most derived images leave them out
        _acquisition_groups(shared, spec, rendered, series, p)
    if not px.rgb:
        shared.PixelValueTransformationSequence = Sequence([_ds({
            "RescaleIntercept": px.intercept, "RescaleSlope": px.slope, "RescaleType": "US"})])
        shared.FrameVOILUTSequence = Sequence([_ds({"WindowCenter": px.window[0], "WindowWidth": px.window[1]})])
    shared.FrameAnatomySequence = Sequence([_ds({
        "AnatomicRegionSequence": Sequence([_ds({"CodeValue": "T-A0100", "CodingSchemeDesignator": "SRT",
                                                  "CodeMeaning": "Brain"})]),
        "FrameLaterality": "U"})])
    if not original:
        shared.DerivationImageSequence = Sequence([_ds({
            "DerivationDescription": " ".join(spec.image_type[2:]) or "derived",
            "SourceImageSequence": Sequence(),
            "DerivationCodeSequence": Sequence([_ds({"CodeValue": "113076", "CodingSchemeDesignator": "DCM",
                                                     "CodeMeaning": "Segmentation"})])})])
    return shared


def _timing_group(spec) -> Dataset:
    """MR Timing and Related Parameters, less the tags the site's habits drop."""
    timing = {"RepetitionTime": _fmt(spec.repetition_time, 2), "FlipAngle": _fmt(spec.flip_angle, 1),
              "EchoTrainLength": spec.echo_train_length or 1, "RFEchoTrainLength": spec.echo_train_length or 1,
              "GradientEchoTrainLength": 1, "GradientOutputType": "DB_DT", "GradientOutput": 0.5,
              "OperatingModeSequence": Sequence([_ds({"OperatingModeType": "STATIC FIELD",
                                                      "OperatingMode": "IEC_NORMAL"})]),
              "SpecificAbsorptionRateSequence": Sequence([_ds({"SpecificAbsorptionRateDefinition": "IEC_WHOLE_BODY",
                                                               "SpecificAbsorptionRateValue": 0.5})])}
    for keyword in spec.extra.get("drop_tags", ()):
        timing.pop(keyword, None)
    return _ds(timing)


def _acquisition_groups(shared: Dataset, spec, rendered, series, p) -> None:
    """The shared groups only an ORIGINAL image has: timing, modifiers, field of view, coils, averages, echo."""
    shared.MRTimingAndRelatedParametersSequence = Sequence([_timing_group(spec)])
    shared.MRModifierSequence = Sequence([_ds({
        "InversionRecovery": _yn(spec.inversion_time is not None),
        **({"InversionTimes": [_fmt(spec.inversion_time, 1)]} if spec.inversion_time is not None else
           {"InversionTimes": [0.0]} if spec.extra.get("ti_zero") else {}),
        "FlowCompensation": "NONE", "Spoiling": "RF" if "GR" in spec.scanning_sequence else "NONE",
        "T2Preparation": "NO", "SpectrallySelectedExcitation": "NONE", "SpatialPresaturation": "NONE",
        "PartialFourier": "NO", "ParallelAcquisition": "YES", "ParallelAcquisitionTechnique": "SENSE"
        if p.vendor == "PHILIPS" else "GRAPPA", "ParallelReductionFactorInPlane": 2.0,
        "ParallelReductionFactorOutOfPlane": 1.0})])
    shared.MRFOVGeometrySequence = Sequence([_ds({
        "InPlanePhaseEncodingDirection": "ROW" if spec.extra.get("base_plane") == "SAGITTAL" else "COLUMN",
        "MRAcquisitionFrequencyEncodingSteps": spec.columns, "MRAcquisitionPhaseEncodingStepsInPlane": spec.rows,
        **({"MRAcquisitionPhaseEncodingStepsOutOfPlane": spec.n_slices} if spec.acquisition == "3D" else {}),
        "PercentSampling": 100.0, "PercentPhaseFieldOfView": round(100.0 * spec.rows / max(spec.columns, 1), 3)})])
    shared.MRReceiveCoilSequence = Sequence([_ds({
        "ReceiveCoilName": series.coil, "ReceiveCoilManufacturerName": p.manufacturer,
        "ReceiveCoilType": "MULTICOIL", "QuadratureReceiveCoil": "NO",
        "MultiCoilDefinitionSequence": Sequence([_ds({"MultiCoilElementName": "H1",
                                                       "MultiCoilElementUsed": "YES"})]),
        })])
    shared.MRTransmitCoilSequence = Sequence([_ds({
        "TransmitCoilName": "Body", "TransmitCoilManufacturerName": p.manufacturer, "TransmitCoilType": "BODY"})])
    shared.MRAveragesSequence = Sequence([_ds({"NumberOfAverages": 1.0})])
    if rendered.echo_numbers is None:  # multi-echo series give each frame its own echo time
        shared.MREchoSequence = Sequence([_ds({"EffectiveEchoTime": _fmt(spec.echo_time, 3)})])


def _dimension_organization(ds: Dataset, series, n_volumes: int, temporal: bool, image_types: bool = False) -> None:
    """How the frames are indexed: stack and position in it, and the volume (time point) or, on a Philips object
    that mixes them, the private image type where there are several."""
    dim_org = make_uid(series.series_uid, "dimension-organization")
    index_pointers = [("StackID", 0x00209056, 0x00209111), ("InStackPositionNumber", 0x00209057, 0x00209111)]
    if temporal:
        index_pointers.append(("TemporalPositionIndex", 0x00209128, 0x00209111))
    ds.DimensionOrganizationSequence = Sequence([_ds({"DimensionOrganizationUID": dim_org})])
    ds.DimensionOrganizationType = "3D_TEMPORAL" if temporal else "3D"
    items = [_ds({"DimensionOrganizationUID": dim_org, "DimensionIndexPointer": pointer,
                  "FunctionalGroupPointer": group, "DimensionDescriptionLabel": label})
             for label, pointer, group in index_pointers]
    if image_types:
        items.append(_ds({"DimensionOrganizationUID": dim_org, "DimensionIndexPointer": 0x20051011,
                          "FunctionalGroupPointer": 0x2005140F,
                          "DimensionIndexPrivateCreator": "Philips MR Imaging DD 001",
                          "FunctionalGroupPrivateCreator": "Philips MR Imaging DD 005",
                          "DimensionDescriptionLabel": "Private ImageTypeMR"}))
    ds.DimensionIndexSequence = Sequence(items)


def _frame_groups(i: int, spec, rendered, dt0: str, per_volume: int, n_volumes: int, *, one_orientation: bool,
                  b_levels: list, original: bool, measures: bool = False, frame_type: Dataset | None = None) -> Dataset:
    """Frame ``i``'s own functional groups: its place in the stack and volume, position, b-value, echo, time
    (``frame_type``: its own frame type, on an object whose volumes are typed differently, not time points)."""
    temporal = n_volumes > 1 and frame_type is None
    f = Dataset()
    vol = i // per_volume if n_volumes > 1 else 0
    in_stack = (i % per_volume) + 1
    index = [1, in_stack]
    content = {"FrameAcquisitionNumber": vol + 1, "FrameReferenceDateTime": f"{dt0}.{vol:06d}",
               "FrameAcquisitionDateTime": f"{dt0}.{vol:06d}",
               "FrameAcquisitionDuration": round(float(spec.repetition_time or 100), 2),
               "StackID": "1", "InStackPositionNumber": in_stack}
    if temporal:
        content["TemporalPositionIndex"] = vol + 1
        index.append(vol + 1)
    elif frame_type is not None:
        content["TemporalPositionIndex"] = 1
        index.append(vol + 1)
    content["DimensionIndexValues"] = index
    f.FrameContentSequence = Sequence([_ds(content)])
    f.PlanePositionSequence = Sequence([_ds({"ImagePositionPatient": [_fmt(x, 4) for x in rendered.positions[i]]})])
    if not one_orientation:
        f.PlaneOrientationSequence = Sequence([_ds({
            "ImageOrientationPatient": [_fmt(x, 6) for x in rendered.orientations[i]]})])
    if measures:
        f.PixelMeasuresSequence = _pixel_measures(spec, rendered)
    if frame_type is not None:
        f.MRImageFrameTypeSequence = Sequence([frame_type])
        _philips_image_type_group(f, frame_type.FrameType[3])
    if rendered.b_values is not None:
        f.MRDiffusionSequence = Sequence([_diffusion_item(spec, rendered, i, vol, b_levels)])
    elif spec.extra.get("derived_b_value") is not None:  # a map's frames name the b it was computed at (habits.py)
        f.MRDiffusionSequence = Sequence([_ds({"DiffusionBValue": spec.extra["derived_b_value"],
                                               "DiffusionDirectionality": "ISOTROPIC"})])
    if rendered.echo_numbers is not None and original:
        tes = spec.extra.get("echo_times")
        e = int(rendered.echo_numbers[i])
        te = float(tes[e - 1]) if tes and 0 < e <= len(tes) else float(spec.echo_time or 5.0) * e
        f.MREchoSequence = Sequence([_ds({"EffectiveEchoTime": round(te, 3)})])
    if rendered.temporal_indices is not None and temporal:
        f.TemporalPositionSequence = Sequence([_ds({
            "TemporalPositionTimeOffset": round(
                int(rendered.temporal_indices[i]) * float(spec.repetition_time or 1) / 1000.0, 3)})])
        if _trigger_times(spec):
            f.CardiacSynchronizationSequence = Sequence([_ds({
                "NominalCardiacTriggerDelayTime": _trigger_time(spec, rendered.temporal_indices[i], n_volumes)})])
    return f


def gradient_directions(n: int) -> np.ndarray:
    """n unit vectors spread over a half sphere (golden-spiral), standing in for a DTI scheme."""
    k = np.arange(n) + 0.5
    z = 1 - k / n
    phi = np.pi * (1 + 5**0.5) * k
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _diffusion_item(spec: SeriesSpec, rendered: RenderedSeries, i: int, vol: int, b_levels: list) -> Dataset:
    b = float(rendered.b_values[i])
    if b <= 0:
        return _ds({"DiffusionBValue": b, "DiffusionDirectionality": "NONE"})
    n_directional = sum(1 for v in spec.b_values if v > 0)
    if spec.extra.get("technique") == "dti" and n_directional > 1:
        order = [k for k, v in enumerate(spec.b_values) if v > 0].index(vol) if vol < len(spec.b_values) else 0
        g = gradient_directions(n_directional)[order]
        item = _ds({"DiffusionBValue": b, "DiffusionDirectionality": "DIRECTIONAL",
                    "DiffusionGradientDirectionSequence": Sequence([_ds({
                        "DiffusionGradientOrientation": [round(float(x), 6) for x in g]})])})
        if spec.extra.get("xa_b_matrix"):  # syngo XA: BMATRIX, the b-matrix beside the direction (nii_dicom.cpp)
            item.DiffusionDirectionality = "BMATRIX"
            item.DiffusionBMatrixSequence = Sequence([_b_matrix(b, g)])
        return item
    return _ds({"DiffusionBValue": b, "DiffusionDirectionality": "ISOTROPIC"})


def _b_matrix(b: float, g: np.ndarray) -> Dataset:
    """The b-matrix b·g·gᵀ of one direction as (0018,9602)–(0018,9607)."""
    axes = "XYZ"
    return _ds({f"DiffusionBValue{axes[r]}{axes[c]}": round(b * float(g[r]) * float(g[c]), 4)
                for r in range(3) for c in range(r, 3)})


def _philips_contrast(spec: SeriesSpec) -> str:
    """Philips enhanced ImageType value 3: the weighting its scan technique gives (T1 for most FFE/TFE scans)."""
    tech = str(spec.extra.get("philips_technique", "")).upper()
    if spec.extra.get("other_kind") == "PC":
        return "FLOW_ENCODED"
    if tech == "DWISE":
        return "DIFFUSION"
    if "TSE" in tech or tech in ("SE", "SEEPI", "GRASE"):
        return "PROTON_DENSITY" if spec.sequence == "PD" else "T1" if spec.sequence.startswith("T1") else "T2"
    if tech in ("IR", "TIR"):
        return "T1" if spec.sequence.startswith("T1") else "T2"
    if tech == "FEEPI":
        return "T2_STAR" if spec.sequence != "PERFUSION_ASL" else "PERFUSION"
    if tech == "T2FFE":
        return "T2_STAR"
    return "T1"


def _image_flavor(spec: SeriesSpec) -> str:
    """Enhanced MR ImageType value 3 (defined terms of PS3.3 C.8.13.1.1.1)."""
    head = spec.sequence.split("_")[0]
    table = {"DWI": "DIFFUSION", "ADC": "DIFFUSION", "DIFFUSION": "DIFFUSION", "PERFUSION": "PERFUSION",
             "TOF": "ANGIO", "MRA": "ANGIO", "SCOUT": "LOCALIZER", "FMRI": "FMRI"}
    return table.get(head, "VOLUME" if spec.acquisition == "3D" else "NONE")


def _derived_contrast(spec: SeriesSpec, original: bool) -> str:
    """Enhanced MR ImageType value 4: NONE on original images, what was computed on derived ones."""
    if original:
        return "NONE"
    table = {"ADC": "ADC", "DIFFUSION_DERIVED": "FA", "MRA_MIP": "MIP", "SWI_MINIP": "MINIP", "SWI": "SWI",
             "DWI": "TRACEW"}
    if spec.extra.get("diffusion_map") == "EADC":
        return "EADC"
    if spec.extra.get("other_kind") == "PC":
        return "VELOCITY"
    return table.get(spec.sequence, "MPR" if spec.extra.get("mpr") or spec.sequence == "SCOUT" else "OTHER")


def _acquisition_contrast(spec: SeriesSpec) -> str:
    table = {"T1": "T1", "T2": "T2", "FLAIR": "FLUID_ATTENUATED", "PD": "PROTON_DENSITY", "DWI": "DIFFUSION",
             "ADC": "DIFFUSION", "DIFFUSION": "DIFFUSION", "PERFUSION": "PERFUSION", "TOF": "FLOW_ENCODED",
             "MRA": "FLOW_ENCODED", "SWI": "T2_STAR", "T2STAR": "T2_STAR", "FMRI": "T2_STAR", "CISS": "MIXED"}
    head = spec.sequence.split("_")[0]
    if spec.extra.get("other_kind") == "PC":
        return "FLOW_ENCODED"
    return table.get(head, "UNKNOWN")


# --- entry point --------------------------------------------------------------------------------------------------


def write_series(
    spec: SeriesSpec,
    rendered: RenderedSeries,
    study: StudyContext,
    series: SeriesContext,
    out_dir: str | Path,
    rng: np.random.Generator,
) -> list[Path]:
    """Write one series into ``out_dir`` (created) in the spec's storage form; returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(rendered.frames)
    if n == 0 or len(rendered.positions) != n or len(rendered.orientations) != n:
        raise ValueError(f"series {series.series_number} ({spec.sequence}): {n} frames but "
                         f"{len(rendered.positions)} positions / {len(rendered.orientations)} orientations")
    px = _to_stored(rendered, spec, study.profile, rng)
    storage = spec.storage
    if px.rgb and storage == "enhanced":
        storage = "classic"  # colour maps are not Enhanced MR Image objects
    if storage == "mosaic":
        return _write_mosaic(spec, rendered, px, study, series, out_dir)
    if storage == "enhanced":
        return _write_enhanced(spec, rendered, px, study, series, out_dir)
    return _write_classic(spec, rendered, px, study, series, out_dir)
