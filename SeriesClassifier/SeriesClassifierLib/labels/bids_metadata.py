"""BIDS sidecar fields that converters leave out, read from the DICOM headers where scanners carry them.

dcm2niix writes what it finds (see its ``nii_dicom_batch.cpp``: the Siemens protocol text, GE's private ASL
tags, the enhanced-MR ASL attributes); the validator still wants fields dcm2niix does not write or cannot find.
This module reads the same places, independently, and adds what only the study as a whole says:

- ASL (``perf/…_asl``): ``ArterialSpinLabelingType`` (enhanced MR (0018,9250); GE (0043,10A3/10A4); the Siemens
  protocol's sequence file name), ``LabelingDuration`` (GE (0043,10A5) ms; Siemens ``sAsl.ulLabelingDuration``
  µs; enhanced MR ASL Pulse Train Duration), ``PostLabelingDelay`` (GE: InversionTime; Siemens
  ``sAsl.sPostLabelingDelay[0]``), ``RepetitionTimePreparation`` (the RepetitionTime, as dcm2niix sets it for
  pCASL), ``M0Type`` (``Included`` when frames are M0 scans, ``Separate`` when the study has an M0 series,
  ``Absent`` when every volume's context is known and none is M0) and the volume types of ``aslcontext.tsv``
  (enhanced MR per-frame ASL Context (0018,9257)). ``BackgroundSuppression`` is in no header we know of.
- phase difference field maps: ``EchoTime1``/``EchoTime2`` (Siemens ``alTE[0]``/``alTE[1]``, else the two echo
  times of the magnitude series taken with it).
- spin-echo EPI field maps: the phase-encoding direction (InPlanePhaseEncodingDirection with Siemens' CSA
  ``PhaseEncodingDirectionPositive``, else ``AP``/``PA``/``LR``/``RL`` in the description) as the ``dir-`` label
  and the sidecar's ``PhaseEncodingDirection``.

What no header says is the researcher's to give: :func:`load_overrides` reads a JSON file of sidecar fields per
series UID, SeriesDescription or BIDS suffix (docs/EXPORTS.md). A series still missing a field the validator
requires is kept out of the raw tree (see ``labels/bids.py``), with a message naming the fields.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..dicom.siemens_protocol import protocol_text

# what the BIDS validator requires of each suffix beyond what dcm2niix always writes
REQUIRED = {
    "asl": ("ArterialSpinLabelingType", "PostLabelingDelay", "BackgroundSuppression", "M0Type",
            "RepetitionTimePreparation"),
    "m0scan": ("RepetitionTimePreparation",),
    "phasediff": ("EchoTime1", "EchoTime2"),
    "epi": ("PhaseEncodingDirection",),
}
REQUIRED_BY_LABELLING = {"PCASL": ("LabelingDuration",), "CASL": ("LabelingDuration",), "PASL": ("BolusCutOffFlag",)}
ASLCONTEXT = "aslcontext"  # the override key (and the BIDS file) for the volume types
_CONTEXTS = {"CONTROL": "control", "LABEL": "label", "M_ZERO_SCAN": "m0scan"}
_VOLUME_TYPES = {"control", "label", "m0scan", "deltam", "cbf", "noRF"}
_ASL_TYPES = {"PSEUDOCONTINUOUS": "PCASL", "CONTINUOUS": "CASL", "PULSED": "PASL"}
# BIDS direction labels of a phase-encoding vector in LPS (the direction it goes *to*: AP runs towards posterior)
_LPS_LABELS = (("RL", "LR"), ("AP", "PA"), ("IS", "SI"))


@dataclass
class SeriesFacts:
    """What one series' DICOM headers say for BIDS."""

    series_uid: str
    fields: dict[str, Any] = field(default_factory=dict)  # sidecar fields read from the headers
    volume_types: list[str] | None = None  # aslcontext, one per volume, when the headers say
    echo_times: list[float] = field(default_factory=list)  # distinct echo times (s)
    direction: str | None = None  # BIDS dir- label of the phase encoding (AP, PA, …)
    m0_only: bool = False  # an ASL series whose every volume is an M0 scan (or described as one)
    epi: bool = False  # an echo-planar magnitude series (a spin-echo EPI field map, when labelled FIELDMAP)
    description: str = ""


def _read(path: Path) -> Any:
    import pydicom

    return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)


def _number(value: Any) -> float | None:
    try:
        x = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _first(ds: Any, keyword: str) -> Any:
    """The first value of ``keyword`` anywhere in the dataset (top level, shared or per-frame groups)."""
    if keyword in ds:
        return ds.get(keyword)
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(group) or []:
            for elem in item.iterall():
                if elem.keyword == keyword:
                    return elem.value
    return None


def _private(ds: Any, tag: int) -> Any:
    elem = ds.get(tag)
    return None if elem is None else elem.value


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", "replace")
    return str(value or "").strip().upper()


def _asl_fields(ds: Any, protocol: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    manufacturer = _text(ds.get("Manufacturer"))
    contrast = _text(_first(ds, "ArterialSpinLabelingContrast"))
    if "GE" in manufacturer.split() or manufacturer.startswith("GE "):
        contrast = contrast or _text(_private(ds, 0x004310A3))
        technique = _text(_private(ds, 0x004310A4))
        if "PULSED CONTINUOUS" in technique:
            contrast = "PSEUDOCONTINUOUS"
        duration = _number(_private(ds, 0x004310A5))  # ms
        if duration:
            fields["LabelingDuration"] = duration / 1000.0
        ti = _number(ds.get("InversionTime"))  # GE ASL: the post-labelling delay, ms
        if ti and contrast:
            fields["PostLabelingDelay"] = ti / 1000.0
    sequence_file = protocol.get("tSequenceFileName", "").lower()
    if not contrast and sequence_file:
        if "pcasl" in sequence_file:
            contrast = "PSEUDOCONTINUOUS"
        elif "pasl" in sequence_file or "fair" in sequence_file:
            contrast = "PULSED"
        elif "casl" in sequence_file:
            contrast = "CONTINUOUS"
    if contrast in _ASL_TYPES:
        fields["ArterialSpinLabelingType"] = _ASL_TYPES[contrast]
    for key, name in (("sAsl.ulLabelingDuration", "LabelingDuration"), ("sAsl.sPostLabelingDelay[0]",
                                                                        "PostLabelingDelay")):
        value = _number(protocol.get(key))
        if value:
            fields.setdefault(name, value / 1e6)  # µs
    train = _number(_first(ds, "ASLPulseTrainDuration"))  # ms: the labelling pulse train
    if train and fields.get("ArterialSpinLabelingType") in ("PCASL", "CASL"):
        fields.setdefault("LabelingDuration", train / 1000.0)
    cutoff = _text(_first(ds, "ASLBolusCutoffFlag"))
    if cutoff in ("YES", "NO"):
        fields["BolusCutOffFlag"] = cutoff == "YES"
    tr = _number(_first(ds, "RepetitionTime"))
    if tr:
        fields["RepetitionTimePreparation"] = tr / 1000.0
    return fields


def _volume_types(ds: Any) -> list[str] | None:
    """Per-volume ASL context from an enhanced file's per-frame ASL Context, frames grouped by temporal position."""
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    by_volume: dict[int, str] = {}
    for k, item in enumerate(frames):
        context = None
        for elem in item.iterall():
            if elem.keyword == "ASLContext":
                context = _CONTEXTS.get(_text(elem.value))
        if context is None:
            return None
        index = None
        for elem in item.iterall():
            if elem.keyword == "TemporalPositionIndex":
                index = int(elem.value)
        by_volume.setdefault(index if index is not None else k, context)
    return [by_volume[k] for k in sorted(by_volume)] if by_volume else None


def _echo_times(datasets: Iterable[Any]) -> list[float]:
    """The distinct echo times (s) of these files, frame by frame for enhanced ones."""
    tes = set()
    for ds in datasets:
        values = [ds.get("EchoTime")]
        for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            for item in ds.get(group) or []:
                values += [e.value for e in item.iterall() if e.keyword in ("EffectiveEchoTime", "EchoTime")]
        for value in values:
            x = _number(value)
            if x:
                tes.add(round(x / 1000.0, 6))
    return sorted(tes)


def csa_value(blob: bytes, name: str) -> str | None:
    """The first value of one element of a Siemens CSA2 ('SV10') header, as text (None if absent)."""
    if not blob.startswith(b"SV10") or len(blob) < 16:
        return None
    n_tags = struct.unpack_from("<I", blob, 8)[0]
    pos = 16
    try:
        for _ in range(min(n_tags, 1000)):
            tag_name = blob[pos:pos + 64].split(b"\0")[0].decode("latin-1")
            n_items = struct.unpack_from("<i", blob, pos + 76)[0]
            pos += 84
            values = []
            for _ in range(max(0, min(n_items, 10000))):
                length = struct.unpack_from("<i", blob, pos + 4)[0]
                pos += 16
                values.append(blob[pos:pos + length].split(b"\0")[0].decode("latin-1").strip())
                pos += length + (4 - length % 4) % 4
            if tag_name == name:
                return next((v for v in values if v), None)
    except struct.error:
        return None
    return None


def _csa_positive(ds: Any) -> bool | None:
    """Siemens CSA image header (0029,1010): PhaseEncodingDirectionPositive (1: positive, 0: negative)."""
    raw = _private(ds, 0x00291010)
    if not isinstance(raw, (bytes, bytearray)):
        return None
    value = _number(csa_value(bytes(raw), "PhaseEncodingDirectionPositive"))
    return None if value is None else bool(int(value))


def direction_label(iop: Sequence[float], in_plane: str, positive: bool) -> tuple[str, str]:
    """(BIDS ``dir-`` label, ``PhaseEncodingDirection``) of a phase encoding along the image's rows ('ROW') or
    columns ('COL'), ``positive`` as Siemens' CSA says: dcm2niix's axes are the DICOM row direction (i) and the
    column direction flipped (j), so a positive column encoding runs against the DICOM column vector."""
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:6], float)
    if in_plane.upper().startswith("ROW"):
        axis, vector = "i", row
    else:
        axis, vector = "j", -col
    vector = vector if positive else -vector
    k = int(np.argmax(np.abs(vector)))
    label = _LPS_LABELS[k][0] if vector[k] > 0 else _LPS_LABELS[k][1]
    return label, axis if positive else f"{axis}-"


_DIR_WORDS = re.compile(r"(?:^|[^A-Za-z])(AP|PA|LR|RL|SI|IS)(?:$|[^A-Za-z])")


def read_facts(series_uid: str, files: Sequence[Path], description: str = "") -> SeriesFacts:
    """What the headers of one series say for its BIDS sidecar (one file read, a few more for echo times)."""
    facts = SeriesFacts(series_uid, description=description)
    if not files:
        return facts
    try:
        ds = _read(files[0])
    except Exception:  # noqa: BLE001 - an unreadable file says nothing; the series is reported as incomplete
        return facts
    facts.description = description or str(ds.get("SeriesDescription", ""))
    protocol = protocol_text(ds)
    facts.fields.update(_asl_fields(ds, protocol))
    facts.volume_types = _volume_types(ds)
    te0, te1 = _number(protocol.get("alTE[0]")), _number(protocol.get("alTE[1]"))
    if te0 and te1:
        facts.fields["EchoTime1"], facts.fields["EchoTime2"] = te0 / 1e6, te1 / 1e6
    others = []
    for path in list(files[1:])[:: max(1, len(files) // 8)][:8]:  # the echoes of a classic series, sampled
        try:
            others.append(_read(path))
        except Exception:  # noqa: BLE001
            continue
    facts.echo_times = _echo_times([ds, *others])
    words = facts.description.upper()
    facts.m0_only = (facts.volume_types is not None and set(facts.volume_types) == {"m0scan"}) or bool(
        re.search(r"(?:^|[^A-Z0-9])(M0|PD)(?:$|[^A-Z0-9])", words.replace("_", " ")))
    scanning = _text(_first(ds, "ScanningSequence"))
    image_type = {_text(v) for v in (ds.get("ImageType") or [])}
    facts.epi = ("EP" in scanning.replace("\\", " ").split() or _text(_first(ds, "EchoPlanarPulseSequence")) == "YES"
                 ) and not image_type & {"P", "PHASE"} and len(facts.echo_times) <= 1
    iop = _first(ds, "ImageOrientationPatient")
    in_plane = _text(_first(ds, "InPlanePhaseEncodingDirection"))
    positive = _csa_positive(ds)
    if iop is not None and len(iop) == 6 and in_plane and positive is not None:
        facts.direction, facts.fields["PhaseEncodingDirection"] = direction_label(iop, in_plane, positive)
    else:
        match = _DIR_WORDS.search(facts.description.upper().replace("_", " "))
        if match and iop is not None and len(iop) == 6 and in_plane:
            facts.direction = match.group(1)
            facts.fields["PhaseEncodingDirection"] = _encoding_from_label(iop, in_plane, facts.direction)
    return facts


def _encoding_from_label(iop: Sequence[float], in_plane: str, label: str) -> str | None:
    """``PhaseEncodingDirection`` of a ``dir-`` label taken from the description (None if it is not along the
    encoding axis the header gives)."""
    for positive in (True, False):
        found, encoding = direction_label(iop, in_plane, positive)
        if found == label:
            return encoding
    return None


def load_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """A researcher's sidecar fields: ``{key: {field: value, …, "aslcontext": [volume types]}}``, keys being a
    SeriesInstanceUID, a SeriesDescription or a BIDS suffix (``asl``, ``m0scan``, ``phasediff``, ``epi``).
    Raises ValueError with the reason when the file is not such an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{\"asl\": {{\"BackgroundSuppression\": true, …}}, …}}: an object of "
                         "objects keyed by series UID, SeriesDescription or BIDS suffix")
    for key, fields in data.items():
        types = fields.get(ASLCONTEXT)
        if types is not None and (not isinstance(types, list) or not set(types) <= _VOLUME_TYPES or not types):
            raise ValueError(f"{path}: {key}.{ASLCONTEXT} must be a list of {', '.join(sorted(_VOLUME_TYPES))} "
                             "(repeated to the number of volumes)")
    return data


def override_for(overrides: dict[str, dict[str, Any]], series_uid: str, description: str,
                 suffix: str) -> dict[str, Any]:
    """The override fields of one series: by suffix, then description, then UID (the most specific wins)."""
    out: dict[str, Any] = {}
    for key in (suffix, description, series_uid):
        if key and key in overrides:
            out.update(overrides[key])
    return out


def missing_fields(suffix: str, fields: dict[str, Any], volume_types: list[str] | None) -> list[str]:
    """What the validator requires of this suffix and the fields do not hold (``aslcontext`` for the volumes)."""
    missing = [k for k in REQUIRED.get(suffix, ()) if fields.get(k) is None]
    if suffix == "asl":
        missing += [k for k in REQUIRED_BY_LABELLING.get(str(fields.get("ArterialSpinLabelingType")), ())
                    if fields.get(k) is None]
        if not volume_types:
            missing.append(ASLCONTEXT)
    return missing


def acquisition_sidecars(header: dict[str, Any]) -> list[dict[str, Any]]:
    """What dcm2niix will write into the sidecars of one series that a reusable dcm2bids rule can match on, from
    ``dicom.headers.read_series``'s header: one dict per echo (dcm2niix makes one file per echo), in dcm2niix's
    names and units (times in seconds, multi-valued text joined with backslashes, the enhanced-MR
    PulseSequenceName as SequenceName). A field the header lacks is left out, as dcm2niix leaves it out."""

    def seconds(value: Any) -> float | None:
        number = _number(value)
        return round(number / 1000.0, 6) if number else None  # 0 is "none" (GE and Hitachi write TI 0)

    base: dict[str, Any] = {}
    image_type = [str(v) for v in header.get("ImageType") or [] if str(v)]
    if image_type:
        base["ImageType"] = image_type
    for key in ("ScanningSequence", "SequenceVariant"):
        values = header.get(key)
        values = [str(v) for v in ([values] if isinstance(values, str) else values or []) if str(v)]
        if values:
            base[key] = "\\".join(values)
    name = str(header.get("SequenceName") or header.get("PulseSequenceName") or "").strip()
    if name:
        base["SequenceName"] = name
    if header.get("MRAcquisitionType"):
        base["MRAcquisitionType"] = str(header["MRAcquisitionType"])
    for key in ("RepetitionTime", "InversionTime"):
        if (value := seconds(header.get(key))) is not None:
            base[key] = value
    if (flip := _number(header.get("FlipAngle"))) is not None:
        base["FlipAngle"] = flip
    echoes = [t for t in (seconds(v) for v in header.get("EchoTimes") or []) if t is not None]
    if not echoes and (te := seconds(header.get("EchoTime"))) is not None:
        echoes = [te]
    return [{**base, "EchoTime": te} for te in sorted(set(echoes))] or [base]
