"""What an MR physicist reads from a header, in terms every vendor shares.

Vendor tokens (Siemens ``*tfl3d1``, GE ``efgre3d``, Philips ``T1TFE``) name the same few
techniques in different words, and a new scanner brings new words. These features restate
the header as the physics those words stand for — echo-planar or not, diffusion-weighted or
not, inversion-prepared, gradient or spin echo, how many volumes, magnitude or phase, the
T1/PD/T2 weighting that TR and TE imply — so a forest trained on some vendors reads the
others. Each is NaN where the header cannot tell, never a guess.

Real headers carry traps the names below avoid: GE writes its private b-value on every image
and Philips writes b=0 on non-diffusion series, so "a b-value is present" means nothing; only
a b-value of at least ``DIFFUSION_B`` does.
"""

from __future__ import annotations

import math
import re
from typing import Any

DIFFUSION_B = 50.0  # s/mm²: below this a "b-value" is a b=0 image or a vendor's placeholder

_NAME_FIELDS = ("SequenceName", "PulseSequenceName", "GEPulseSequenceName", "PhilipsScanningTechnique",
                "EchoPulseSequence")
_EPI_NAME = re.compile(r"epi|ep2d|epfid|ep_|^\*?ep\d|seepi|feepi|dwi|ep_b")
_GRE_NAME = re.compile(r"fl[23]d|fgre|spgr|ffe|tfe|gre|swi|tof|fisp|flash|vibe|bravo|mprage|tfl")
_SE_NAME = re.compile(r"tse|fse|se[23]d|spc|cube|space|haste|ssfse|tir|vista|^se$")
_SIEMENS_B = re.compile(r"ep_b(\d+)")
# the vendors' names of a diffusion acquisition, which its b = 0 images carry too: Siemens ep_b0/ep_b1000t and
# re_b (RESOLVE), Philips DwiSE/DWI; ImageType DIFFUSION (Siemens, Canon)
_DIFFUSION_NAME = re.compile(r"\b(ep|re)_b\d|dwi")
_ASL_NAME = re.compile(r"asl|pasl|pcasl")
_PHASE = {"P", "PHASE", "PHA"}
_PROJECTION = ("MIP", "MNIP", "PROJECTION")
# A field map in Hz, as each vendor names it: ImageType with both B0 and MAP (Philips, the rule dcm2niix
# uses), FIELDMAP or FIELD + MAP; sequence names b0map, 3db0map and B0rf (GE's psds), fieldmap, Siemens' fm2d/fm3d.
_FIELD_MAP_NAME = re.compile(r"b0_?map|b0rf|field_?map|fmap|\bfm[23]d")


def number(value: Any) -> float:
    """A finite float, or NaN for anything else (absent, text, inf)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _words(value: Any) -> set[str]:
    """'ORIGINAL\\PRIMARY\\M_FFE' or a list → {'ORIGINAL', 'PRIMARY', 'M', 'FFE'}."""
    if not value:
        return set()
    values = value if isinstance(value, (list, tuple)) else [value]
    return {w for v in values for w in re.split(r"[\\/ _]+", str(v).upper()) if w}


def _log(x: float) -> float:
    return math.log(x) if x > 0 else math.nan


def b_values(header: dict[str, Any]) -> list[float]:
    """The series' b-values: the read tags, else the b Siemens encodes in a diffusion name (ep_b1000)."""
    values = [float(b) for b in header.get("BValues") or [] if math.isfinite(float(b))]
    if not values:
        names = " ".join(str(header.get(k) or "") for k in _NAME_FIELDS).lower()
        values = [float(b) for b in _SIEMENS_B.findall(names)]
    return values


def weighting(tr: float, te: float) -> float:
    """0 T1-, 1 PD-, 2 T2-weighted by the classic TR/TE rule; NaN between the ranges or unknown."""
    if not (tr > 0 and te > 0):
        return math.nan
    if tr < 1000 and te < 35:
        return 0.0
    if tr >= 1500 and te < 50:
        return 1.0
    if tr >= 1500 and te >= 60:
        return 2.0
    return math.nan


def physics_features(header: dict[str, Any], n_images: int, n_frames: int) -> dict[str, float]:
    """Vendor-neutral physics of one series (names start with ``phys:``)."""
    scanning = _words(header.get("ScanningSequence"))
    image_type = _words(header.get("ImageType"))
    raw_image_type = [str(v).upper() for v in header.get("ImageType") or []]
    names = " ".join(str(header.get(k) or "") for k in _NAME_FIELDS).lower()
    tr, te = number(header.get("RepetitionTime")), number(header.get("EchoTime"))
    ti = number(header.get("InversionTime"))
    bs = b_values(header)
    b_max = max(bs) if bs else math.nan
    epi = _echo_planar(scanning, names, image_type)
    inversion = ("IR" in scanning or (ti > 50) or str(header.get("InversionRecovery") or "").upper() == "YES")
    return {
        "phys:epi": float(epi),
        "phys:b_max": b_max,
        "phys:diffusion": (1.0 if b_max >= DIFFUSION_B else 0.0) if bs else math.nan,
        "phys:n_b": float(len(set(bs))) if bs else math.nan,
        "phys:volumes": _volumes(header, n_images, n_frames, "MOSAIC" in image_type),
        "phys:phase": float(bool(image_type & _PHASE)),
        "phys:derived": float(bool(raw_image_type) and raw_image_type[0] == "DERIVED"),
        "phys:projection": float(bool(_projection(header))),
        "phys:subtraction": float("SUB" in image_type),
        "phys:field_map": float(_field_map(image_type, names)),
        "phys:asl": float(bool(image_type & {"ASL", "PERFUSION"}) or bool(_ASL_NAME.search(names))),
        "phys:inversion": float(inversion),
        "phys:gradient_echo": float("GR" in scanning or bool(_GRE_NAME.search(names))),
        "phys:spin_echo": float("SE" in scanning or bool(_SE_NAME.search(names))),
        "phys:3d": float(str(header.get("MRAcquisitionType") or "").upper() == "3D" or "3d" in names),
        "phys:log_tr": _log(tr),
        "phys:log_te": _log(te),
        "phys:ti_over_tr": ti / tr if tr > 0 and ti >= 0 else math.nan,
        "phys:n_echoes": float(len(header.get("EchoTimes") or [])) or math.nan,
        "phys:weighting": math.nan if (epi or inversion) else weighting(tr, te),
    }


def hard_facts(header: dict[str, Any]) -> dict[str, str]:
    """Facts a header states beyond doubt, each with its evidence: what the vocabulary's physics rules read.

    Only positive evidence counts: a readout is "2-D without EPI" when the header names its acquisition,
    scanning sequence and sequence, and none of them is echo-planar; "spin echo without gradient echo" when
    ScanningSequence says SE and neither GR nor EP, and no name is echo-planar. An enhanced object without
    ScanningSequence, or a Philips file without its private technique name, states nothing here.
    """
    facts = {}
    bs = [b for b in b_values(header) if b >= DIFFUSION_B]
    if bs:
        facts["diffusion_weighted"] = f"b = {max(bs):g} s/mm²"
    scanning, image_type = _words(header.get("ScanningSequence")), _words(header.get("ImageType"))
    names = " ".join(str(header.get(k) or "") for k in _NAME_FIELDS).strip()
    diffusion_name = _DIFFUSION_NAME.search(names.lower())
    if diffusion_name or "DIFFUSION" in image_type:
        facts["diffusion_sequence"] = f"sequence {names}" if diffusion_name else "ImageType DIFFUSION"
    two_d = str(header.get("MRAcquisitionType") or "").upper() == "2D"
    epi = _echo_planar(scanning, names.lower(), image_type)
    readout = f"{'/'.join(sorted(scanning))} readout" + (f" ({names})" if names else "")
    if two_d and scanning and names and not epi:
        facts["two_d_without_epi"] = f"2-D {readout}, no echo-planar imaging"
    if "SE" in scanning and "GR" not in scanning and not epi:
        facts["spin_echo_without_gradient_echo"] = f"{readout}, no gradient echo"
    projection = _projection(header)
    if projection:
        facts["projection"] = f"ImageType {', '.join(projection)}"
    service = _service(header)
    if service:
        facts["service_sequence"] = service
    return facts


def _service(header: dict[str, Any]) -> str:
    """The evidence that a Siemens service program made the series (a QA or engineering scan), or ""."""
    program = str(header.get("SiemensSequenceFile") or "")
    if program.upper().startswith("%SERVICESEQ%"):
        return f"sequence program {program}"
    if "SERVICE" in _words(header.get("SequenceVariant")):
        return "SequenceVariant SERVICE"
    return ""


def _projection(header: dict[str, Any]) -> list[str]:
    """The ImageType values that name a projection (MIP, MNIP, PROJECTION IMAGE)."""
    return [str(v) for v in header.get("ImageType") or [] if any(p in str(v).upper() for p in _PROJECTION)]


def _echo_planar(scanning: set[str], names: str, image_type: set[str]) -> bool:
    """EPI: ScanningSequence EP, an echo-planar sequence name (``names`` lower-case), or a Siemens mosaic."""
    return "EP" in scanning or bool(_EPI_NAME.search(names)) or "MOSAIC" in image_type


def _field_map(image_type: set[str], names: str) -> bool:
    return ({"B0", "MAP"} <= image_type or "FIELDMAP" in image_type or {"FIELD", "MAP"} <= image_type
            or bool(_FIELD_MAP_NAME.search(names.replace("*", " "))))


def _volumes(header: dict[str, Any], n_images: int, n_frames: int, mosaic: bool) -> float:
    """Time points (or diffusion directions) in the series: what separates a run from a volume.

    Echoes are not time points: a PD/T2 dual echo has two images per position and one volume.
    """
    if mosaic:
        return float(n_images)
    temporal = number(header.get("NumberOfTemporalPositions"))
    positions = number(header.get("NumberOfPositions"))
    frames = float(n_frames or n_images or 0)
    echoes = len(set(header.get("EchoTimes") or [])) or 1
    per_position = frames / positions / echoes if positions > 0 else math.nan
    candidates = [v for v in (temporal, per_position) if not math.isnan(v)]
    return max(candidates) if candidates else math.nan
