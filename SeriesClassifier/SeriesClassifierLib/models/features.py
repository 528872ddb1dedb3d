"""Header features for the metadata forest: physics values, geometry and header tokens.

``FeatureExtractor`` is sklearn-like: ``fit`` learns the token vocabulary from the
training series (a token seen in fewer than ``min_token_count`` series is dropped), and
``transform`` turns series into a float matrix. Missing values are normal in real
archives: a numeric feature is NaN when its tag is absent (the forest splits on
missingness) and carries a 0/1 ``missing:`` indicator beside it. The extractor's state is
plain JSON (``to_dict``/``from_dict``) so it is stored beside the model, not pickled.

Description tokens (SeriesDescription/ProtocolName) are an optional feature set: real
descriptions are often wrong, renamed or removed, so the model must stand without them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dicom.orientation import angle_to_axes, summarize
from ..series import Series
from ..vocabulary import load_vocabulary
from .derived import link_derived
from .physics import number as _num
from .physics import physics_features

# Header fields whose values are token lists, with the prefix their tokens carry.
TOKEN_FIELDS = {
    "ScanningSequence": "ss",
    "SequenceVariant": "sv",
    "ScanOptions": "so",
    "ImageType": "it",
    "SequenceName": "sn",
    "PulseSequenceName": "sn",
    "GEPulseSequenceName": "sn",
    "PhilipsScanningTechnique": "pt",
    "SiemensSequenceFile": "sf",
    "AcquisitionContrast": "ac",
    "EchoPulseSequence": "ep",
    "SpectrallySelectedSuppression": "fs",
    "InversionRecovery": "ir",
    "MRAcquisitionType": "mr",
}
DESCRIPTION_FIELDS = ("SeriesDescription", "ProtocolName")

# Placeholders anonymisers and scanners write into ContrastBolusAgent when no agent is known.
_AGENT_NONE = {"NONE", "NO", "N", "NIL", "0", "-", "NA", "N/A", "FALSE"}
_AGENT_PLACEHOLDER = {"", "ANONYMIZED", "ANONYMISED", "REMOVED", "X", "XX", "XXX", "UNKNOWN", "DELETED", "SEQUENCE"}

# Ways sites write "with contrast" in descriptions (VENDOR_NAMING.md): +C, C+, POST, GAD, GD, KM, CE.
_CONTRAST_WORDS = {"post", "gad", "gado", "gd", "km", "ce", "contrast", "kontrast", "mdc"}

_MANUFACTURERS = ("siemens", "ge", "philips", "canon", "other")


def sequence_name_tokens(name: str) -> list[str]:
    """Vendor sequence names as comparable tokens: '*tfl3d1_16ns' → tfl3d1_16ns, tfl3d, tfl, ns.

    The leading '*' (Siemens magnitude) and the numbers that encode protocol details are
    dropped from the stems so one sequence family gives one token across sites.
    """
    s = name.strip().lower().lstrip("*#")
    if not s:
        return []
    tokens = {s}
    tokens.update(re.findall(r"[a-z]+\d+d", s))  # tfl3d, se2d, epfid2d, swi3d
    tokens.update(t for t in re.findall(r"[a-z]+", s) if len(t) >= 2 or t == "b")
    if re.search(r"_b\d|ep_b", s):
        tokens.add("ep_b")  # Siemens diffusion names ep_b0, ep_b1000t
    return sorted(tokens)


def sequence_file_tokens(path: str) -> list[str]:
    """A Siemens sequence program as tokens: '%CustomerSeq%\\ep2d_pcasl_ve11c' → customerseq, ep2d, pcasl, ….

    The folder says who wrote the program (product, customer/research, WIP, service); the file name's
    parts name the technique, whatever version suffix a site's build carries.
    """
    folder, _, name = path.strip().lower().replace("/", "\\").rpartition("\\")
    folder = folder.strip("%")
    return sorted(set(sequence_name_tokens(name)) | ({folder} if folder else set()))


def description_tokens(text: str) -> list[str]:
    """Words of a description: lower case, split at non-letters, contrast markers kept."""
    s = text.lower()
    tokens = set(re.findall(r"[a-z0-9]+", s))
    tokens.update(t for t in re.findall(r"[a-z]+", s) if len(t) >= 2)
    words = set(re.findall(r"[a-z]+", s))
    if words & _CONTRAST_WORDS or re.search(r"\+\s*c(?![a-z])|(?<![a-z])c\s*\+|\+\s*(gd|km)", s):
        tokens.add("<contrast>")
    return sorted(t for t in tokens if t)


def header_tokens(header: dict[str, Any], with_description: bool = False) -> list[str]:
    """All prefixed tokens of one series' header ('sv:SK', 'it:DIFFUSION', 'sn:tfl3d')."""
    out: set[str] = set()
    for key, prefix in TOKEN_FIELDS.items():
        value = header.get(key)
        if not value:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            v = str(v).strip()
            if not v:
                continue
            if prefix == "sn":
                out.update(f"sn:{t}" for t in sequence_name_tokens(v))
            elif prefix == "sf":
                out.update(f"sf:{t}" for t in sequence_file_tokens(v))
            else:
                out.update(f"{prefix}:{t}" for t in re.split(r"[\\/ ]+", v.upper()) if t)
    if with_description:
        for key in DESCRIPTION_FIELDS:
            out.update(f"desc:{t}" for t in description_tokens(str(header.get(key) or "")))
    return sorted(out)


def _manufacturer(text: str) -> str:
    t = (text or "").lower()
    if "siemens" in t:
        return "siemens"
    if t.startswith("ge") or "general electric" in t:
        return "ge"
    if "philips" in t:
        return "philips"
    if "canon" in t or "toshiba" in t:
        return "canon"
    return "other"


def contrast_agent(value: Any) -> float:
    """1 named agent, 0 explicitly none, NaN absent or anonymised (unknown, never 'given')."""
    if value is None:
        return math.nan
    v = str(value).strip().upper()
    if v in _AGENT_NONE:
        return 0.0
    if v in _AGENT_PLACEHOLDER:
        return math.nan
    return 1.0


def numeric_features(series: Series) -> dict[str, float]:
    """Physics, geometry and counting features of one series; NaN where unknown."""
    h = series.header
    g = series.geometry
    spacing = h.get("PixelSpacing") or (list(g.pixel_spacing) if g else None)
    ps = [_num(v) for v in (spacing or [])][:2] or [math.nan, math.nan]
    rows, cols = _num(h.get("Rows")), _num(h.get("Columns"))
    f: dict[str, float] = {
        "tr": _num(h.get("RepetitionTime")),
        "te": _num(h.get("EchoTime")),
        "ti": _num(h.get("InversionTime")),
        "flip": _num(h.get("FlipAngle")),
        "etl": _num(h.get("EchoTrainLength")),
        "field_strength": _num(h.get("MagneticFieldStrength")),
        "slice_thickness": _num(h.get("SliceThickness")),
        "slice_spacing": _num(g.spacing_between_slices if g else h.get("SpacingBetweenSlices")),
        "pixel_spacing": float(np.nanmean(ps)) if not all(math.isnan(p) for p in ps) else math.nan,
        "rows": rows,
        "columns": cols,
        "matrix_max": max(rows, cols) if not (math.isnan(rows) or math.isnan(cols)) else math.nan,
        "fov": (max(rows, cols) * float(np.nanmean(ps))) if not (math.isnan(rows) or all(math.isnan(p) for p in ps))
        else math.nan,
        "n_images": float(series.n_images),
        "n_frames": float(series.n_frames),
        "n_positions": _num(h.get("NumberOfPositions")),
        "images_per_position": _num(h.get("ImagesPerPosition")),
        "temporal_positions": _num(h.get("NumberOfTemporalPositions")) if h.get("NumberOfTemporalPositions")
        else _num(h.get("TemporalPositions") or math.nan),
        "n_echo_times": float(len(h.get("EchoTimes") or [])) if h.get("EchoTimes") else math.nan,
        "mosaic": _num(h.get("MosaicImages")),
        "contrast_agent": contrast_agent(h.get("ContrastBolusAgent")),
        "acq_3d": {"3D": 1.0, "2D": 0.0}.get(str(h.get("MRAcquisitionType") or "").upper(), math.nan),
        "signed_pixels": _num(h.get("PixelRepresentation")),
        "enhanced": 1.0 if h.get("Enhanced") else 0.0,
    }
    thickness, step = f["slice_thickness"], f["slice_spacing"]
    f["gap_ratio"] = step / thickness if thickness and not math.isnan(thickness) and not math.isnan(step) else math.nan
    f["coverage"] = step * f["n_positions"] if not math.isnan(step) and not math.isnan(f["n_positions"]) else math.nan
    manufacturer = _manufacturer(str(h.get("Manufacturer") or ""))
    for m in _MANUFACTURERS:
        f[f"vendor:{m}"] = 1.0 if manufacturer == m else 0.0
    f.update(physics_features(h, series.n_images, series.n_frames))
    f.update(_geometry_features(series))
    context = h.get("StudyContext") or {}
    for key in CONTEXT_KEYS:
        f[f"ctx:{key}"] = _num(context.get(key))
    return f


# Study context: what the other series of the same study say about this one. A T1 with the same
# protocol as an earlier one, after a named contrast agent or a dynamic EPI run, is most likely post.
CONTEXT_KEYS = ("rank", "n_series", "same_before", "same_after", "agent_before", "agent_in_study", "dynamic_before")


def _signature(s: Series) -> tuple:
    h = s.header
    ti = _num(h.get("InversionTime"))
    image_type = [str(v).upper() for v in h.get("ImageType") or []]
    return (
        tuple(h.get("ScanningSequence") or []),
        str(h.get("MRAcquisitionType") or ""),
        not math.isnan(ti) and ti > 0,
        image_type[:1],
        re.sub(r"[^a-z]", "", str(h.get("SequenceName") or h.get("PulseSequenceName") or "").lower())[:6],
    )


def _dynamic(s: Series) -> bool:
    h = s.header
    per_position = _num(h.get("ImagesPerPosition"))
    temporal = _num(h.get("NumberOfTemporalPositions"))
    many = (not math.isnan(per_position) and per_position >= 20) or (not math.isnan(temporal) and temporal >= 20)
    return "EP" in (h.get("ScanningSequence") or []) and many


def _order_key(s: Series) -> tuple:
    number = _num(s.header.get("SeriesNumber"))
    if math.isnan(number):
        number = float(s.series_number or 0)
    return (str(s.header.get("SeriesTime") or ""), number)


def add_study_context(series: Sequence[Series], owners: dict[str, str] | None = None) -> None:
    """Set ``header["StudyContext"]`` on each classifiable series from its study's other series.

    Series are ordered by SeriesTime then SeriesNumber. Without it (a series classified on its
    own) the context features are missing, which the forest is trained to expect. Derived series
    are also tied to their source here (``derived.link_derived``; ``owners``: which series holds
    each referenced instance, ``derived.referenced_owners``), as the study is all in hand.
    """
    studies: dict[str, list[Series]] = {}
    for s in series:
        if not s.skipped:
            studies.setdefault(s.study_uid or "", []).append(s)
    for members in studies.values():
        members = sorted(members, key=_order_key)
        signatures = [_signature(s) for s in members]
        agents = [contrast_agent(s.header.get("ContrastBolusAgent")) == 1.0 for s in members]
        dynamic = [_dynamic(s) for s in members]
        link_derived(members, owners)
        n = len(members)
        for i, s in enumerate(members):
            s.header["StudyContext"] = {
                "rank": i / (n - 1) if n > 1 else 0.5,
                "n_series": n,
                "same_before": sum(sig == signatures[i] for sig in signatures[:i]),
                "same_after": sum(sig == signatures[i] for sig in signatures[i + 1 :]),
                "agent_before": float(any(agents[:i])),
                "agent_in_study": float(any(agents)),
                "dynamic_before": float(any(dynamic[:i])),
            }


def _geometry_features(series: Series) -> dict[str, float]:
    codes = load_vocabulary().orientation_codes
    out = {f"plane:{c}": 0.0 for c in codes}
    out.update({"n_planes": math.nan, "normal_x": math.nan, "normal_y": math.nan, "normal_z": math.nan,
                "obliquity": math.nan})
    g = series.geometry
    if g is None or not g.orientations or series.orientation is None:
        return out
    out[f"plane:{series.orientation}"] = 1.0
    planes = summarize(g.orientations)
    n = np.abs(planes.main_normal)
    out.update({"n_planes": float(planes.n_planes), "normal_x": float(n[0]), "normal_y": float(n[1]),
                "normal_z": float(n[2]), "obliquity": float(np.min(angle_to_axes(n)))})
    return out


@dataclass
class FeatureExtractor:
    """Series → feature matrix. Fit learns the token vocabulary; state is JSON."""

    use_description: bool = False
    min_token_count: int = 2
    numeric_names: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def fit(self, series: Sequence[Series]) -> FeatureExtractor:
        counts: Counter[str] = Counter()
        for s in series:
            counts.update(header_tokens(s.header, self.use_description))
        self.tokens = sorted(t for t, c in counts.items() if c >= self.min_token_count)
        self.numeric_names = list(numeric_features(series[0]).keys()) if series else []
        return self

    @property
    def feature_names(self) -> list[str]:
        return self.numeric_names + [f"missing:{n}" for n in self._with_missing] + [f"tok:{t}" for t in self.tokens]

    @property
    def _with_missing(self) -> list[str]:
        return [n for n in self.numeric_names if not n.startswith(("vendor:", "plane:", "ctx:"))]

    def transform(self, series: Iterable[Series]) -> np.ndarray:
        if not self.numeric_names:
            raise RuntimeError("FeatureExtractor is not fitted")
        token_index = {t: i for i, t in enumerate(self.tokens)}
        rows = []
        for s in series:
            num = numeric_features(s)
            values = [num.get(n, math.nan) for n in self.numeric_names]
            missing = [1.0 if math.isnan(num.get(n, math.nan)) else 0.0 for n in self._with_missing]
            tok = np.zeros(len(self.tokens))
            for t in header_tokens(s.header, self.use_description):
                i = token_index.get(t)
                if i is not None:
                    tok[i] = 1.0
            rows.append(np.concatenate([values, missing, tok]))
        return np.asarray(rows, dtype=np.float64).reshape(-1, len(self.feature_names))

    def fit_transform(self, series: Sequence[Series]) -> np.ndarray:
        return self.fit(series).transform(series)

    def to_dict(self) -> dict[str, Any]:
        return {
            "use_description": self.use_description,
            "min_token_count": self.min_token_count,
            "numeric_names": list(self.numeric_names),
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureExtractor:
        return cls(
            use_description=bool(d.get("use_description", False)),
            min_token_count=int(d.get("min_token_count", 2)),
            numeric_names=list(d.get("numeric_names", [])),
            tokens=list(d.get("tokens", [])),
        )
