"""Derived series tied to their source series in the same study, from headers alone.

An ADC, FA or trace map, a MIP of a TOF run, a minIP or phase of an SWI acquisition is computed from
another series of the study. What that source is says what the derived series can be: a map of a
diffusion-weighted run is one of the diffusion family, a projection of a TOF run an angiogram MIP
(``vocabulary.json``: ``source_fact`` and ``derivatives`` per class). The link is made at header time,
beside the study context (``features.add_study_context``), so it works wherever the study context does
(one process, local workers, Dask: a study is never split); only header FACTS of the source are recorded,
never its prediction, which another worker may be making.

How a source is found, most certain first:

1. **References**: the derived series' SourceImageSequence (what DICOM says it was made from) names an
   instance of another series of the study. ReferencedImageSequence counts only when that series also
   passes the geometric test below: scanners write it on ordinary images too, pointing at the localizer.
2. **Voxel-wise maps** (ADC, FA, trace, processed SWI): a series with the same orientation and the same
   slice positions, acquired before it or at the same time.
3. **Projections** (MIP, minIP slabs): the nearest earlier 3-D or thin-slice acquisition whose volume
   covers the projection's centre; of the same kind (angiogram, susceptibility) when the projection's own
   header says which.

Always within one frame of reference when both series name one, never a series acquired later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..series import Series, SeriesRef
from .physics import DIFFUSION_B, b_values

# header["DerivedSource"]: {"series_uid", "series_number", "how", "facts", "evidence"}
LINK_KEY = "DerivedSource"

# A voxel-wise map is written on its source's grid: its ImageOrientationPatient equals the source's up to
# the rounding of a DS value (< 0.01°). One degree leaves room for re-exports that recompute it, while a
# series planned anew (a repeat after motion, another stack) is tilted by more than that.
ORIENTATION_TOLERANCE_DEG = 1.0
# Slice positions likewise agree to rounding; half a millimetre (or a quarter of the slice spacing, for
# thin slices) tells the same slices from a stack shifted by even one slice.
POSITION_TOLERANCE_MM = 0.5
# A projection's source: a 3-D acquisition or 2-D slices at most this thick (2-D TOF, 2-D SWI: 1.5-2 mm); a
# 3 mm diffusion stack is nobody's MIP. Echo-planar runs are never a projection's source.
THIN_SLICE_MM = 2.0
# The projection's centre may lie this far outside the source's volume: a MIP image is centred on the
# reformatting plane, which the console places on the slab, not on a voxel centre.
COVER_MARGIN_MM = 20.0

_PROJECTION_WORDS = ("MIP", "MNIP", "MINIP", "MIN IP", "PROJECTION")
_DERIVED_TERMS = {"ADC", "TRACEW", "FA", "EADC", "EXP", "TRACE"}  # Siemens (and others') map terms
# Maps nothing is computed from: a trace image written at the same time as its ADC must not take the ADC
# for its source.
_END_PRODUCTS = _DERIVED_TERMS - {"TRACEW", "TRACE"}
_ANGIO_NAME = re.compile(r"tof|inflow|fl3d\d*r?_t\d|fl3d\d*_t\d")
_SUSCEPTIBILITY_NAME = re.compile(r"swi|swan|swip|fsbb|\bbsi\b|venbold|ven_bold|susc")
_NAME_FIELDS = ("SequenceName", "PulseSequenceName", "GEPulseSequenceName", "PhilipsScanningTechnique")


def _image_type(header: dict[str, Any]) -> list[str]:
    return [str(v).strip().upper() for v in header.get("ImageType") or []]


def is_projection(header: dict[str, Any]) -> bool:
    return any(word in value for value in _image_type(header) for word in _PROJECTION_WORDS)


def is_derived(header: dict[str, Any]) -> bool:
    """ImageType value 1 DERIVED, a projection, or a map term (Siemens ADC/TRACEW/FA) in any value."""
    image_type = _image_type(header)
    return bool(image_type) and (image_type[0] == "DERIVED" or is_projection(header)
                                 or bool(_DERIVED_TERMS & set(image_type)))


def source_facts(header: dict[str, Any]) -> dict[str, str]:
    """What the header of a possible source says it is: {fact: evidence}; facts are named in vocabulary.json."""
    facts: dict[str, str] = {}
    bs = b_values(header)
    if bs and max(bs) >= DIFFUSION_B:
        facts["diffusion"] = f"diffusion-weighted, b up to {max(bs):g}"
    elif "TRACEW" in _image_type(header):
        facts["diffusion"] = "a trace-weighted diffusion image (ImageType TRACEW)"
    names = " ".join(str(header.get(k) or "") for k in _NAME_FIELDS).lower()
    variant = {str(v).upper() for v in header.get("SequenceVariant") or []}
    options = " ".join(str(v).upper() for v in header.get("ScanOptions") or [])
    if str(header.get("AngioFlag") or "").upper() == "Y":
        facts["angio"] = "an angiogram (AngioFlag Y)"
    elif "TOF" in variant or "TOF" in options or "ANGIO" in _image_type(header) or _ANGIO_NAME.search(names):
        facts["angio"] = "a time-of-flight angiogram"
    if "SWI" in _image_type(header) or _SUSCEPTIBILITY_NAME.search(names):
        facts["susceptibility"] = "susceptibility-weighted"
    return facts


# --------------------------------------------------------------------------------------------- geometry


def _directions(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:6], float)
    return row, col, np.cross(row, col)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def same_orientation(a: Series, b: Series) -> bool:
    """One plane each, with row and column directions within ORIENTATION_TOLERANCE_DEG."""
    ga, gb = a.geometry, b.geometry
    if ga is None or gb is None or len(ga.orientations) != 1 or len(gb.orientations) != 1:
        return False
    ra, ca, _ = _directions(ga.orientations[0])
    rb, cb, _ = _directions(gb.orientations[0])
    return _angle(ra, rb) <= ORIENTATION_TOLERANCE_DEG and _angle(ca, cb) <= ORIENTATION_TOLERANCE_DEG


def same_slices(a: Series, b: Series) -> bool:
    """Same orientation and the same slice positions (each of one within tolerance of one of the other)."""
    if not same_orientation(a, b):
        return False
    pa, pb = np.asarray(a.geometry.positions, float), np.asarray(b.geometry.positions, float)
    if len(pa) != len(pb) or not len(pa):
        return False
    spacing = a.geometry.spacing_between_slices or b.geometry.spacing_between_slices or 0.0
    tolerance = min(POSITION_TOLERANCE_MM, 0.25 * spacing) if spacing > 0 else POSITION_TOLERANCE_MM
    distances = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=2)
    return bool(np.all(distances.min(axis=1) <= tolerance))


def _centre(s: Series) -> np.ndarray | None:
    """The middle of the series' images in patient coordinates.

    Geometry keeps positions and distinct orientations unpaired; a radial MIP set has one orientation per
    image, so the mean first-pixel position plus the mean half-diagonal over its orientations is its centre.
    """
    g = s.geometry
    if g is None or not g.positions or not g.orientations or any(math.isnan(v) for v in g.pixel_spacing):
        return None
    halves = []
    for iop in g.orientations:
        row, col, _ = _directions(iop)
        halves.append(row * (g.columns - 1) * g.pixel_spacing[1] / 2 + col * (g.rows - 1) * g.pixel_spacing[0] / 2)
    return np.mean(np.asarray(g.positions, float), axis=0) + np.mean(halves, axis=0)


def covers(source: Series, derived: Series) -> bool:
    """The derived series' centre lies within the source's volume (± COVER_MARGIN_MM); True when unknown."""
    centre, g = _centre(derived), source.geometry
    if centre is None or g is None or not g.positions or len(g.orientations) != 1:
        return True
    row, col, normal = _directions(g.orientations[0])
    offset = centre - np.asarray(g.positions[0], float)
    extents = ((row, (g.columns - 1) * g.pixel_spacing[1]), (col, (g.rows - 1) * g.pixel_spacing[0]),
               (normal, float(np.dot(np.asarray(g.positions[-1], float) - g.positions[0], normal))))
    for axis, extent in extents:
        along = float(np.dot(offset, axis))
        if math.isnan(extent) or not (min(0.0, extent) - COVER_MARGIN_MM <= along
                                      <= max(0.0, extent) + COVER_MARGIN_MM):
            return False
    return True


def _thin_or_3d(s: Series) -> bool:
    if "EP" in [str(v).upper() for v in s.header.get("ScanningSequence") or []]:
        return False
    if str(s.header.get("MRAcquisitionType") or "").upper() == "3D":
        return True
    thickness = s.header.get("SliceThickness")
    return isinstance(thickness, (int, float)) and 0 < thickness <= THIN_SLICE_MM


# ---------------------------------------------------------------------------------------------- linking


def _time(s: Series) -> float | None:
    text = str(s.header.get("SeriesTime") or "").split(".")[0]
    if len(text) < 4 or not text.isdigit():
        return None
    text = text.ljust(6, "0")
    return int(text[:2]) * 3600 + int(text[2:4]) * 60 + int(text[4:6])


def _number(s: Series) -> float | None:
    value = s.header.get("SeriesNumber")
    return float(value) if isinstance(value, (int, float)) else (float(s.series_number) if s.series_number else None)


def acquired_before(source: Series, derived: Series) -> bool:
    """The source was acquired before the derived series or at the same time (SeriesTime; else SeriesNumber)."""
    ts, td = _time(source), _time(derived)
    if ts is not None and td is not None:
        return ts <= td
    ns, nd = _number(source), _number(derived)
    return ns is None or nd is None or ns <= nd


def _same_frame(a: Series, b: Series) -> bool:
    fa, fb = a.header.get("FrameOfReferenceUID"), b.header.get("FrameOfReferenceUID")
    return not fa or not fb or fa == fb


def can_be_source(s: Series) -> bool:
    """Not a projection or an end-product map: what a scanner computes further things from."""
    return not s.skipped and not is_projection(s.header) and not (_END_PRODUCTS & set(_image_type(s.header)))


def _possible(source: Series, derived: Series) -> bool:
    return (source is not derived and can_be_source(source) and _same_frame(source, derived)
            and acquired_before(source, derived))


def _rank(source: Series) -> tuple:
    """Among equals: an original over a derived series, one with a known fact, the latest acquired."""
    return (not is_derived(source.header), bool(source_facts(source.header)), _time(source) or 0.0,
            _number(source) or 0.0)


def _by_reference(derived: Series, members: Sequence[Series], owners: dict[str, str]) -> tuple[Series, str] | None:
    by_uid = {s.series_uid: s for s in members}
    for key, need_geometry in (("SourceSOPInstanceUIDs", False), ("ReferencedSOPInstanceUIDs", True)):
        for uid in derived.header.get(key) or []:
            source = by_uid.get(owners.get(uid, ""))
            if source is None or not _possible(source, derived):
                continue
            if need_geometry and not same_slices(source, derived):
                continue  # a reference to the localizer, not to a source
            word = "SourceImageSequence" if key.startswith("Source") else "ReferencedImageSequence"
            return source, f"its {word} names an image of it"
    return None


def find_source(derived: Series, members: Sequence[Series], owners: dict[str, str] | None = None
                ) -> tuple[Series, str] | None:
    """(source series, how it was found) for one derived series among its study's series, or None."""
    found = _by_reference(derived, members, owners or {})
    if found is not None:
        return found
    candidates = [s for s in members if _possible(s, derived)]
    maps = [s for s in candidates if same_slices(s, derived)]
    if maps:
        return max(maps, key=_rank), "same orientation and slice positions"
    if not is_projection(derived.header):
        return None
    volumes = [s for s in candidates if _thin_or_3d(s) and covers(s, derived)]
    own = set(source_facts(derived.header))
    if own:  # a GE TOF MIP keeps its run's sequence name: geometry must not tie it to the SWI beside it
        volumes = [s for s in volumes if own & set(source_facts(s.header))]
    aligned = [s for s in volumes if same_orientation(s, derived)] or volumes
    if aligned:
        return max(aligned, key=_rank), "the nearest earlier 3-D/thin-slice acquisition covering it"
    return None


def link_derived(members: Sequence[Series], owners: dict[str, str] | None = None) -> None:
    """Set ``header[LINK_KEY]`` on each derived series of one study whose source is found (else leave it out)."""
    for derived in members:
        derived.header.pop(LINK_KEY, None)
        if derived.skipped or not is_derived(derived.header):
            continue
        found = find_source(derived, members, owners)
        if found is None:
            continue
        source, how = found
        facts = source_facts(source.header)
        derived.header[LINK_KEY] = {
            "series_uid": source.series_uid,
            "series_number": source.series_number,
            "how": how,
            "facts": sorted(facts),
            "evidence": "; ".join(facts[f] for f in sorted(facts)),
        }


def referenced_owners(refs: Iterable[SeriesRef], series: Iterable[Series]) -> dict[str, str]:
    """{referenced SOPInstanceUID: series UID} for the few instances the derived series' headers reference.

    Only the wanted UIDs are kept (a few per derived series), not every instance UID of an archive: grouping
    already holds each file's SOPInstanceUID in ``SeriesRef.instances`` (folder sources), so one pass
    over them answers. Refs without instances (database sources) resolve nothing; geometry still links.
    """
    wanted = {uid for s in series if is_derived(s.header)  # an original's references are never used
              for key in ("SourceSOPInstanceUIDs", "ReferencedSOPInstanceUIDs") for uid in s.header.get(key) or []}
    if not wanted:
        return {}
    owners: dict[str, str] = {}
    for ref in refs:
        for info in ref.instances:
            if info.sop_instance_uid in wanted:
                owners[info.sop_instance_uid] = ref.series_uid
    return owners
