"""heudiconv heuristic from SeriesClassifier: it classifies the series of any subject; nothing subject-specific inside.

When heudiconv reads a series it asks ``custom_seqinfo``, which classifies it with SeriesClassifier (its headers
and pixels, with the models named below) and keeps the series' BIDS placement; ``infotodict`` then places every
series, numbering ``run-`` where two would get one name. Series without a BIDS place (scouts, OTHER) are not
converted, nor derived images (ADC, trace, MIP, reformats) unless INCLUDE_DERIVED.

    heudiconv --files DICOM_DIR -s <subject> [-ss <session>] -f this_file.py -c dcm2niix -b -o BIDS_DIR

heudiconv's Python must be able to import SeriesClassifier (``pip install seriesclassifier``). Each series is
classified on its own (no study context), so answers can differ slightly from ``seriesclassifier classify``;
for a dataset whose labels a person checked, export the exact heuristic instead (``--format heudiconv``
without ``--reusable``).
"""

import logging
from functools import lru_cache

_PLACED = {}  # series UID -> its BidsName, for custom_callable
lgr = logging.getLogger("heudiconv.SeriesClassifier")

MODELS = None  # a models folder; None: the models bundled with SeriesClassifier
INCLUDE_DERIVED = False
# sidecar fields no DICOM header holds (export --bids-sidecar FILE; docs/EXPORTS.md), by BIDS suffix, description
# or UID. An ASL series still missing a required field is not converted (heudiconv's log says which).
SIDECAR_OVERRIDES = {}
WRITTEN_BY = "SeriesClassifier"
FIELDMAP_SUFFIX = "phasediff"
# heudiconv writes each field map's IntendedFor: the BOLD/DWI runs it is closest to in time
POPULATE_INTENDED_FOR_OPTS = {"matching_parameters": ["Force"], "criterion": "Closest"}


@lru_cache(maxsize=1)
def _bundle():
    from SeriesClassifierLib.models.bundle import load_bundle

    return load_bundle(MODELS)


def custom_seqinfo(wrapper, series_files):
    """(datatype, suffix, entities) of one series, or None when it is not to be converted."""
    from pathlib import Path

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.labels.bids import bids_names
    from SeriesClassifierLib.labels.store import derive_record
    from SeriesClassifierLib.run.pipeline import predict_series
    from SeriesClassifierLib.series import SeriesRef

    files = [Path(f) for f in series_files]
    uid = str(getattr(getattr(wrapper, "dcm_data", None), "SeriesInstanceUID", "") or files[0])
    series = read_series(SeriesRef(uid, files, source=str(files[0].parent)))
    record = derive_record(uid, predict_series(series, _bundle()), "", [])
    name = bids_names([record]).get(uid)
    if name is not None and name.datatype == "perf" and not name.location:
        # ASL: the sidecar fields the validator requires, from the headers and SIDECAR_OVERRIDES; this series is
        # seen alone, so an M0 scan (which names its ASL series) and an ASL series needing M0Type from the study
        # are left to the exact heuristic unless the overrides say it
        from SeriesClassifierLib.labels.bids_metadata import override_for, read_facts

        facts = {uid: read_facts(uid, files, series.series_description)}
        name = bids_names([record], facts=facts, overrides=SIDECAR_OVERRIDES).get(uid)
        given = override_for(SIDECAR_OVERRIDES, uid, series.series_description.strip(), "asl")
        if name is not None and name.sidecar.get("M0Type") == "Absent" and "M0Type" not in given:
            # no M0 in the frames says nothing about a separate M0 series: that is the study's, unseen here
            name.missing.append("M0Type")
        if name is not None and name.missing:
            lgr.warning("SeriesClassifier: series %s (%s) not converted: %s needs %s (give them in SIDECAR_OVERRIDES)",
                        series.series_number, uid, name.suffix, ", ".join(name.missing))
            return None
    if name is None or name.location or (name.derived and not INCLUDE_DERIVED):
        return None
    _PLACED[uid] = name
    return (name.datatype, name.suffix, tuple(sorted(name.entities.items())))


def custom_callable(prefix, outtypes, dicoms):
    """After heudiconv converted one series: the ASL sidecar fields and aslcontext.tsv."""
    import pydicom

    from SeriesClassifierLib.labels.bids_post import complete_sidecars

    try:
        uid = str(pydicom.dcmread(dicoms[0], stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
                  .SeriesInstanceUID)
    except Exception:  # noqa: BLE001 - nothing to add to a series we cannot name
        return
    name = _PLACED.get(uid)
    if name is not None and name.datatype == "perf":
        complete_sidecars(prefix, name.sidecar, name.volume_types)


def create_key(template, outtype=("nii.gz",), annotation_classes=None):
    if not template:
        raise ValueError("Template must be a valid format string")
    return template, outtype, annotation_classes


def _tail(suffix, entities):
    from SeriesClassifierLib.labels.bids import BidsName

    return "_".join(p for p in (BidsName("", "", suffix, "", None, dict(entities)).entity_string, suffix) if p)


def infotodict(seqinfo):
    groups = {}
    for s in seqinfo:
        if s.custom:
            groups.setdefault(s.custom, []).append(s)
    info = {}
    for (datatype, suffix, entities), members in groups.items():
        # a phase-difference field map is two series (magnitude, phase): runs count pairs
        per_run = 2 if suffix == FIELDMAP_SUFFIX else 1
        for k, s in enumerate(members):
            extra = {"run": f"{k // per_run + 1:02d}"} if len(members) > per_run else {}
            name_suffix = suffix
            if suffix == FIELDMAP_SUFFIX and "P" not in (s.image_type or ()):
                name_suffix = "magnitude"  # heudiconv numbers the magnitude echoes itself
            name = _tail(name_suffix, {**dict(entities), **extra})
            key = create_key("{bids_subject_session_dir}/" + datatype + "/{bids_subject_session_prefix}_" + name)
            info.setdefault(key, []).append(s.series_id)
    return info
