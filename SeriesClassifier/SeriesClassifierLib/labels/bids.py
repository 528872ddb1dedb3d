"""BIDS names for labelled series, and converter configurations that reproduce them.

The per-class mapping (datatype, suffix, fixed entities) comes from the vocabulary;
this module adds what depends on the whole set of series: subject and session
labels, and ``run-`` indices numbered by SeriesNumber among series that would
otherwise get the same file name.

Converter configurations:

- dcm2bids (v3): dcm2niix's BIDS sidecars leave SeriesInstanceUID out when they
  are anonymised (``-ba y``, dcm2bids' default, which we keep so no patient data
  reaches the BIDS tree), and SeriesNumber + SeriesDescription are neither unique
  across subjects nor always within a study. dcm2niix can however put the UID into
  the *file name* (``%j``), and dcm2bids can match on ``SidecarFilename``. So the
  config sets ``dcm2niixOptions`` with ``-f %3s_%j`` and matches each series by its
  UID in the file name: exact, one config for every subject, sidecars still anonymous.
- heudiconv: ``infotodict`` looks each ``seqinfo.series_uid`` up in a table.

Names follow the BIDS schema (1.11; checked with bidsschematools in the tests). Scanner-made
images the schema has (dwi ``ADC``, ``trace``, ``FA``, ``colFA``, ``expADC``) keep raw names but
are flagged ``derived``; classes the schema has no suffix for (SWI processed images and minIPs, MIPs,
DSC perfusion) and reformats (MPR) go under a folder validators skip (the vocabulary's ``location``:
``derivatives/scanner`` or ``sourcedata/nonbids``). Converter configs leave derived and non-BIDS
series out unless asked for.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..vocabulary import Vocabulary, load_vocabulary
from .bids_metadata import ASLCONTEXT, SeriesFacts, missing_fields, override_for
from .store import LabelRecord

# BIDS entity order for file names (BIDS specification, entity table), as dcm2bids reorders them too
ENTITY_ORDER = (
    "sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "recording",
    "chunk",
)  # fmt: skip

DCM2NIIX_OPTIONS = "-b y -ba y -z y -f %3s_%j"
# Field maps: the vocabulary's class maps to phasediff; the converters split it per file, the way
# dcm2niix names them: echoes of the magnitude series (_e1, _e2) -> magnitude1/2, phase (_ph) -> phasediff.
FIELDMAP_SUFFIX = "phasediff"


@dataclass
class BidsName:
    """Where one series goes in a BIDS tree."""

    series_uid: str
    datatype: str
    suffix: str
    subject: str
    session: str | None = None
    entities: dict[str, str] = field(default_factory=dict)  # besides sub/ses, run included when needed
    derived: bool = False
    location: str = ""  # "" for the raw tree; else a folder outside it (see the module docstring)
    sidecar: dict[str, Any] = field(default_factory=dict)  # fields the converter configs add to the sidecar
    volume_types: list[str] | None = None  # aslcontext.tsv: one per volume (repeated to the volumes it has)
    missing: list[str] = field(default_factory=list)  # required sidecar fields nobody could give (kept out)

    @property
    def entity_string(self) -> str:
        """``acq-3D_ce-gadolinium_run-01``: the entities between sub/ses and the suffix, in BIDS order."""
        return "_".join(f"{k}-{v}" for k, v in _ordered(self.entities))

    @property
    def stem(self) -> str:
        parts = [f"sub-{self.subject}"]
        if self.session:
            parts.append(f"ses-{self.session}")
        if self.entities:
            parts.append(self.entity_string)
        parts.append(self.suffix)
        return "_".join(parts)

    @property
    def filename(self) -> str:
        """Path relative to the BIDS root, e.g. ``sub-01/anat/sub-01_acq-3D_T1w.nii.gz``."""
        folder = f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")
        prefix = f"{self.location}/" if self.location else ""
        return f"{prefix}{folder}/{self.datatype}/{self.stem}.nii.gz"

    @property
    def in_raw_tree(self) -> bool:
        return not self.location

    def to_dict(self) -> dict:
        return {
            "datatype": self.datatype,
            "suffix": self.suffix,
            "subject": self.subject,
            "session": self.session,
            "entities": dict(_ordered(self.entities)),
            "filename": self.filename,
            "derived": self.derived,
            "location": self.location,
            **({"sidecar": dict(self.sidecar)} if self.sidecar else {}),
            **({"aslcontext": list(self.volume_types)} if self.volume_types else {}),
            **({"missing": list(self.missing)} if self.missing else {}),
        }


def _ordered(entities: dict[str, str]) -> list[tuple[str, str]]:
    rank = {k: i for i, k in enumerate(ENTITY_ORDER)}
    return sorted(entities.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def bids_label(text: str) -> str:
    """A BIDS label: letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", text or "")


def subject_labels(patient_ids: Sequence[str], anonymise: bool = True) -> dict[str, str]:
    """patient_id -> subject label: 01, 02, … (in patient ID order), or with ``anonymise=False`` the patient
    ID made BIDS-safe. Anonymous by default: a BIDS tree is made to be shared."""
    unique = sorted(set(patient_ids))
    if anonymise:
        width = max(2, len(str(len(unique))))
        return {pid: f"{i:0{width}d}" for i, pid in enumerate(unique, 1)}
    labels: dict[str, str] = {}
    used: set[str] = set()
    for pid in unique:
        base = bids_label(pid) or "unknown"
        label, n = base, 1
        while label in used:  # two IDs that differ only in punctuation
            n += 1
            label = f"{base}{n}"
        used.add(label)
        labels[pid] = label
    return labels


def _unconfirmed_guess(record: LabelRecord) -> bool:
    """A series the models could not tell (outcome unknown) and no person has labelled: no BIDS place."""
    return record.state == "unreviewed" and record.prediction is not None and bool(record.prediction.unknown)


def bids_names(
    records: Sequence[LabelRecord],
    vocabulary: Vocabulary | None = None,
    anonymise: bool = True,
    facts: dict[str, SeriesFacts] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, BidsName]:
    """series_uid -> BidsName for every record whose current label has a BIDS mapping.

    Sessions are added only for subjects with several studies (numbered in StudyInstanceUID order:
    the records carry no study date). ``run-`` is added only where two or more series of one
    subject/session would get the same name, numbered by SeriesNumber. Field maps get a
    ``B0FieldIdentifier`` and the BOLD/diffusion series of their session a ``B0FieldSource``.

    ``facts`` (what the DICOM headers of ASL and field-map series say, ``bids_metadata.read_facts``) and
    ``overrides`` (a researcher's sidecar fields) fill the sidecar fields the validator requires; a series still
    missing one goes to ``sourcedata/nonbids`` with ``missing`` naming them. Without ``facts`` nothing is
    checked (no DICOM at hand): the names are those of the class and description alone.
    """
    vocabulary = vocabulary or load_vocabulary()
    patients = {r.series_uid: (r.prediction.patient_id if r.prediction else "") for r in records}
    studies = {r.series_uid: (r.prediction.study_uid if r.prediction else "") for r in records}
    subjects = subject_labels(list(patients.values()), anonymise)
    studies_of: dict[str, list[str]] = defaultdict(list)
    for uid in patients:
        if studies[uid] not in studies_of[patients[uid]]:
            studies_of[patients[uid]].append(studies[uid])
    names: dict[str, BidsName] = {}
    for r in records:
        if r.sequence is None or _unconfirmed_guess(r):
            continue
        mapping = vocabulary.sequence(r.sequence).bids
        if mapping is None:
            continue
        pid = patients[r.series_uid]
        study_list = sorted(studies_of[pid])
        session = f"{study_list.index(studies[r.series_uid]) + 1:02d}" if len(study_list) > 1 else None
        entities = {k: bids_label(v) for k, v in mapping.entities.items()}
        name = BidsName(r.series_uid, mapping.datatype, mapping.suffix, subjects[pid], session, entities,
                        mapping.derived, mapping.location)
        names[r.series_uid] = _series_variant(name, r, (facts or {}).get(r.series_uid))
    _number_runs(names, {r.series_uid: r for r in records})
    if facts is not None:
        _fill_sidecars(names, {r.series_uid: r for r in records}, facts, overrides or {})
    _link_b0_fields(names)  # after: a field map kept out of the raw tree is nobody's B0FieldSource
    return names


# the sidecar fields each suffix takes from the headers (dcm2niix writes some of them too; the values agree)
_FIELDS_OF = {
    "asl": ("ArterialSpinLabelingType", "PostLabelingDelay", "LabelingDuration", "BackgroundSuppression",
            "RepetitionTimePreparation", "BolusCutOffFlag", "M0Type"),
    "m0scan": ("RepetitionTimePreparation",),
    "phasediff": ("EchoTime1", "EchoTime2"),
    "epi": ("PhaseEncodingDirection",),
}


def _fill_sidecars(names: dict[str, BidsName], records: dict[str, LabelRecord], facts: dict[str, SeriesFacts],
                   overrides: dict[str, dict[str, Any]]) -> None:
    """The required sidecar fields of ASL and field-map series: the headers, the study, then the overrides."""
    by_session: dict[tuple, list[BidsName]] = defaultdict(list)
    for n in names.values():
        by_session[(n.subject, n.session)].append(n)
    for n in names.values():
        if n.suffix not in _FIELDS_OF or not n.in_raw_tree:
            continue
        f = facts.get(n.series_uid) or SeriesFacts(n.series_uid)
        fields = {k: v for k, v in f.fields.items() if k in _FIELDS_OF[n.suffix]}
        volume_types = f.volume_types
        session = by_session[(n.subject, n.session)]
        if n.suffix == "asl":
            if volume_types and "m0scan" in volume_types:
                fields["M0Type"] = "Included"
            elif any(m.suffix == "m0scan" for m in session):
                fields["M0Type"] = "Separate"
            elif volume_types:
                fields["M0Type"] = "Absent"
        if n.suffix == "phasediff" and "EchoTime1" not in fields:
            # the two echo times of the magnitude series taken with this phase difference (the same run)
            tes = sorted({te for m in session if m.filename == n.filename
                          for te in (facts.get(m.series_uid) or SeriesFacts("")).echo_times})
            if len(tes) == 2:
                fields["EchoTime1"], fields["EchoTime2"] = tes
        p = records[n.series_uid].prediction
        extra = override_for(overrides, n.series_uid, (p.series_description if p else "").strip(), n.suffix)
        volume_types = extra.pop(ASLCONTEXT, None) or volume_types
        fields.update(extra)
        n.sidecar.update(fields)
        n.volume_types = volume_types if n.suffix == "asl" else None
        n.missing = missing_fields(n.suffix, n.sidecar, n.volume_types)
    # a phase-difference field map is its magnitude series too: both stay in, or both go
    for n in names.values():
        if n.suffix == "phasediff":
            partner = [m for m in names.values() if m.filename == n.filename and m is not n]
            for m in partner:
                n.missing = sorted(set(n.missing) | set(m.missing))
    for n in names.values():
        if n.missing:
            n.location, n.sidecar = "sourcedata/nonbids", {}
    for session in by_session.values():  # the M0 scan says which ASL series it is for (dcm2bids: by id)
        asl = [m.filename for m in session if m.suffix == "asl" and m.in_raw_tree]
        for m in session:
            if m.suffix == "m0scan" and m.in_raw_tree:
                if asl:
                    m.sidecar["IntendedFor"] = ["bids::" + a for a in asl]
                else:  # an M0 scan is for an ASL series: with none in the raw tree it has nothing to calibrate
                    m.missing = ["IntendedFor (no ASL series of its session in the raw tree)"]
                    m.location, m.sidecar = "sourcedata/nonbids", {}
    for n in names.values():  # values as a sidecar spells them: 4.03218, not 4.032179999999999
        n.sidecar = {k: round(v, 6) if isinstance(v, float) else v for k, v in n.sidecar.items()}


def _link_b0_fields(names: dict[str, BidsName]) -> None:
    """BIDS ≥ 1.7: each field map (the files of one run) a ``B0FieldIdentifier``, the BOLD and diffusion series of
    its subject/session a ``B0FieldSource`` naming the session's field maps."""
    sources: dict[tuple, list[str]] = defaultdict(list)
    for n in sorted(names.values(), key=lambda n: n.filename):
        if n.datatype == "fmap" and n.in_raw_tree:
            # one estimate per run: magnitude + phase difference, or the two directions of a spin-echo EPI pair
            ident = ("epi" if n.suffix == "epi" else "phasediff") + n.entities.get("run", "")
            n.sidecar["B0FieldIdentifier"] = ident
            if ident not in sources[(n.subject, n.session)]:
                sources[(n.subject, n.session)].append(ident)
    for n in names.values():
        ids = sources.get((n.subject, n.session))
        if n.datatype in FIELDMAP_TARGETS and n.in_raw_tree and ids:
            n.sidecar["B0FieldSource"] = ids[0] if len(ids) == 1 else list(ids)


# ImageType values (upper case) that name what the scanner made
_TRACE = {"TRACEW", "TRACE"}
_EXP_ADC = {"EXP", "EADC", "EXPADC"}
_COLOUR = {"COLFA", "COLOR", "COLOUR", "RGB"}
_REFORMAT = {"MPR", "REFORMATTED", "CURVED", "CPR"}
_DESCRIPTION_TOKENS = re.compile(r"[A-Za-z]+")


# words of BOLD series descriptions that say how it was acquired, not which task it was
_BOLD_WORDS = {
    "bold", "fmri", "ep", "epi", "d", "mb", "sms", "moco", "mosaic", "pace", "p", "ms", "tra", "ax", "axial", "sag",
    "cor", "func", "fe", "ge", "gre", "se", "mux", "ipat", "grappa", "sense", "te", "tr", "x", "s", "run", "fs",
    "iso", "mm", "ap", "pa", "lr", "rl", "sbref", "ref", "scan", "series", "task", "cmrr", "bw", "hz",
}
_REST_WORDS = {"rest", "resting", "rs", "restingstate", "rsfmri"}


def task_label(description: str, default: str = "rest") -> str:
    """BIDS ``task-`` label of a BOLD series from its description: an explicit ``task-X``/``task_X``, resting
    state, else the first word that is not about the acquisition (``bold_fingertap_mb4`` → fingertap)."""
    explicit = re.search(r"task[-_ ]?([A-Za-z0-9]+)", description or "", re.I)
    if explicit:
        return bids_label(explicit.group(1))
    words = [w.lower() for w in _DESCRIPTION_TOKENS.findall(description or "")]
    if any(w in _REST_WORDS for w in words):
        return "rest"
    task = next((w for w in words if w not in _BOLD_WORDS and len(w) > 1), None)
    return bids_label(task) if task else default


_M0_WORDS = re.compile(r"(?:^|[^A-Z0-9])(M0|PD)(?:$|[^A-Z0-9])")
_SPIN_ECHO_EPI_WORDS = re.compile(r"PEPOLAR|TOPUP|REVPE|REV PE|REVERSE|BLIP|SE EPI|SPINECHOFIELDMAP|EPI")


def _series_variant(name: BidsName, record: LabelRecord, facts: SeriesFacts | None = None) -> BidsName:
    """What the class alone cannot say, read from the series' ImageType (else its description).

    A Siemens TRACEW is ``trace``, not ``dwi``; an exponential ADC is ``expADC`` and a colour FA
    ``colFA``, not ``FA``; a reformat (MPR) of another series is not raw data and goes under
    ``derivatives/scanner`` with ``rec-MPR``. An ASL series of M0 scans only is ``m0scan``; a spin-echo EPI field
    map is ``epi`` with ``dir-`` from its phase encoding (``facts``: what its headers say, else its description).
    """
    p = record.prediction
    words = (p.series_description if p else "").upper().replace("_", " ")
    if name.datatype == "perf" and name.suffix == "asl" and (facts.m0_only if facts else _M0_WORDS.search(words)):
        name.suffix = "m0scan"
    if name.datatype == "fmap" and (facts.epi if facts else bool(_SPIN_ECHO_EPI_WORDS.search(words))):
        name.suffix = "epi"
        direction = facts.direction if facts else None
        if direction is None:
            match = re.search(r"(?:^|[^A-Z])(AP|PA|LR|RL|SI|IS)(?:$|[^A-Z])", words)
            direction = match.group(1) if match else None
        if direction:
            name.entities["dir"] = direction
    tokens = {t.strip().upper() for t in (p.image_type if p else [])}
    # the description only when the ImageType is unknown: Siemens names the b-images series "…_trace" too
    evidence = tokens or {w.upper() for w in _DESCRIPTION_TOKENS.findall(p.series_description if p else "")}
    if name.datatype == "dwi" and name.suffix == "dwi" and evidence & _TRACE:
        name.suffix, name.derived = "trace", True
    elif name.datatype == "dwi" and name.suffix == "FA":
        if evidence & _EXP_ADC:
            name.suffix = "expADC"
        elif evidence & _COLOUR:
            name.suffix = "colFA"
    if name.datatype == "func" and "task" in name.entities:
        name.entities["task"] = task_label(p.series_description if p else "", name.entities["task"])
    if "DERIVED" in tokens and tokens & _REFORMAT and name.in_raw_tree:
        name.derived, name.location = True, "derivatives/scanner"
        name.entities["rec"] = "MPR"
    return name


def _number_runs(names: dict[str, BidsName], records: dict[str, LabelRecord]) -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for uid, name in names.items():
        groups[name.filename].append(uid)
    for filename, uids in groups.items():
        # a phase-difference field map is two series (magnitude echoes + phase), taken one after the other
        per_run = 2 if filename.endswith(f"_{FIELDMAP_SUFFIX}.nii.gz") else 1
        if len(uids) <= per_run:
            continue

        def order(uid: str) -> tuple:
            p = records[uid].prediction
            number = p.series_number if p and p.series_number is not None else 1 << 30
            return (number, uid)

        for k, uid in enumerate(sorted(uids, key=order)):
            names[uid].entities["run"] = f"{k // per_run + 1:02d}"


def selected_for_conversion(names: dict[str, BidsName], include_derived: bool) -> list[BidsName]:
    """What a converter config converts: raw series; with ``include_derived`` also derived and non-BIDS ones."""
    return [n for n in names.values() if include_derived or not (n.derived or n.location)]


def dcm2bids_config(names: dict[str, BidsName], include_derived: bool = False) -> dict:
    """A dcm2bids (v3) configuration that puts each series where ``names`` says.

    Run it per subject/session: ``dcm2bids -d DICOM_DIR -p <subject> [-s <session>] -c config.json``.
    """
    descriptions = []
    for n in selected_for_conversion(names, include_derived):  # in the records' order: patient, study, series number
        stem = f"*_{glob.escape(n.series_uid)}"  # a UID of "*" must not match every sidecar
        for suffix, patterns, extra in _dcm2bids_files(n, stem):
            description = {"datatype": n.datatype, "suffix": suffix, "criteria": {"SidecarFilename": {"any": patterns}}}
            entities = "_".join(x for x in (n.entity_string, extra) if x)
            if entities:
                description["custom_entities"] = entities
            if n.datatype == "func" and "task" in n.entities:
                description["sidecar_changes"] = {"TaskName": n.entities["task"]}
            changes = _sidecar_for(n, suffix)
            if changes:
                description.setdefault("sidecar_changes", {}).update(changes)
            descriptions.append((n, description))
    _link_fieldmaps(descriptions)
    config = {"dcm2niixOptions": DCM2NIIX_OPTIONS, "descriptions": [d for _, d in descriptions]}
    table = ";".join(f"{n.series_uid}={','.join(n.volume_types)}" for n, d in descriptions
                     if n.volume_types and d["suffix"] == "asl")
    if table:
        config["post_op"] = [aslcontext_post_op(table)]
    return config


def aslcontext_post_op(table: str) -> dict:
    """The dcm2bids post_op that writes each ASL file's aslcontext.tsv (``labels/bids_post.py``)."""
    import sys

    return {"cmd": f"{sys.executable} -m SeriesClassifierLib.labels.bids_post aslcontext src_file dst_file {table}",
            "datatype": "perf", "suffix": ["asl"]}


# fields that belong to one file of a field map's files only
_PHASEDIFF_ONLY = ("EchoTime1", "EchoTime2")


def _sidecar_for(n: BidsName, suffix: str) -> dict[str, Any]:
    """The sidecar fields of one converted file of ``n`` (the magnitudes of a field map take no echo times;
    IntendedFor, given as BIDS URIs here, is the heudiconv heuristic's: dcm2bids links by description ids)."""
    return {k: v for k, v in n.sidecar.items()
            if k != "IntendedFor" and not (k in _PHASEDIFF_ONLY and suffix != FIELDMAP_SUFFIX)}


# what a field map corrects: BIDS wants the field map to say so (IntendedFor), as dcm2bids writes it from ids
FIELDMAP_TARGETS = ("func", "dwi")


def _link_fieldmaps(descriptions: list[tuple[BidsName, dict]]) -> None:
    """Give the BOLD and diffusion descriptions ids and list them in the IntendedFor of their session's field maps;
    the same for ASL series and their M0 scans."""
    targets: dict[tuple, list[str]] = defaultdict(list)
    asl: dict[tuple, list[str]] = defaultdict(list)
    for k, (n, description) in enumerate(descriptions):
        if n.datatype in FIELDMAP_TARGETS:
            description["id"] = f"sc{k:03d}"
            targets[(n.subject, n.session)].append(description["id"])
        elif n.suffix == "asl":
            description["id"] = f"sc{k:03d}"
            asl[(n.subject, n.session)].append(description["id"])
    for n, description in descriptions:
        ids = targets.get((n.subject, n.session)) if n.datatype == "fmap" else (
            asl.get((n.subject, n.session)) if n.suffix == "m0scan" else None)
        if ids:
            description.setdefault("sidecar_changes", {})["IntendedFor"] = list(ids)


def _glob_literal(text: str) -> str:
    """``text`` as an fnmatch pattern matching only itself (dcm2bids compares criteria with fnmatch)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


# reusable configs have no UID in the file name: dcm2niix ends it with this marker, after which come its own
# suffixes (_e1, _ph, …), so the same per-file patterns apply
REUSABLE_MARK = "sc"
REUSABLE_DCM2NIIX_OPTIONS = f"-b y -ba y -z y -f %3s_%p_{REUSABLE_MARK}"


def reusable_dcm2bids_config(
    records: Sequence[LabelRecord], vocabulary: Vocabulary | None = None, include_derived: bool = False,
    facts: dict[str, SeriesFacts] | None = None, overrides: dict[str, dict[str, Any]] | None = None,
    acquisitions: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[dict, list[str]]:
    """A dcm2bids (v3) config for the next subjects of the same site: (config, what could not become a rule).

    One set of rules per BIDS name, made from what the labelled series of that name share (``acquisitions``:
    series UID -> what dcm2niix writes into its sidecars, ``bids_metadata.acquisition_sidecars``; without them
    only the ImageType and the description are known). Each name gets the most general criteria that match
    none of the other labelled series (those of other names, derived, scouts, …), trying in turn
    (``RULE_LEVELS``): the acquisition (2D/3D, scanning sequence and variant, the sequence family, echo,
    repetition and inversion times and flip angle as ranges widened by ``TIMING_MARGIN``) with the ImageType's
    first two values; then the ImageType as labelled; then the words every labelled description has; then the
    labelled descriptions themselves. A name
    whose criteria still match another name's series gets no rule and is reported in the problems: its series
    cannot be told apart from the other's by what a sidecar says. No UID, nothing subject-specific; dcm2bids
    numbers runs itself; echoes and field-map files are told apart by dcm2niix's file suffixes as in the exact
    config.
    """
    names = bids_names(records, vocabulary, facts=facts, overrides=overrides)
    kept = {n.series_uid for n in selected_for_conversion(names, include_derived)}
    groups: dict[tuple, list[BidsName]] = defaultdict(list)
    examples: dict[str, list[dict[str, Any]]] = {}  # series UID -> the sidecars a rule is checked against
    descriptions = {r.series_uid: (r.prediction.series_description if r.prediction else "").strip() for r in records}
    key_of: dict[str, tuple | None] = {}  # series UID -> its name's key; None: labelled, but not converted
    for r in records:
        if r.sequence is None or _unconfirmed_guess(r):
            continue  # nobody knows what it is: neither a rule's source nor a series a rule must leave alone
        examples[r.series_uid] = _example_sidecars(r, (acquisitions or {}).get(r.series_uid))
        n = names.get(r.series_uid)
        if n is None or r.series_uid not in kept:
            key_of[r.series_uid] = None
            continue
        n = replace(n, entities={k: v for k, v in n.entities.items() if k != "run"})
        key = (n.datatype, n.suffix, n.entity_string)
        key_of[r.series_uid] = key
        groups[key].append(n)
    problems = []
    if acquisitions is None and groups:
        problems.append("no DICOM headers given: rules from ImageType and descriptions only (give the DICOM folder "
                        "so rules can use the acquisition)")
    rules = []
    for key, group in sorted(groups.items()):
        own = [uid for uid, k in key_of.items() if k == key]
        # its labelled series had one echo each: no rules for dcm2niix's echo files (_e1, _e2, …), so a multi-echo
        # series, all of whose files are echo files, cannot meet them and is no counter-example
        single_echo = key[0] in ECHO_DATATYPES and all(len((acquisitions or {}).get(uid) or ()) == 1 for uid in own)
        others = [uid for uid, k in key_of.items() if k != key and not (single_echo and len(examples[uid]) > 1)]
        label = "_".join(x for x in (key[2], key[1]) if x)
        criteria, hits = None, []
        for level in RULE_LEVELS:
            candidate = _shared_criteria([examples[uid] for uid in own], [descriptions[uid] for uid in own], level,
                                         acquired=all(uid in (acquisitions or {}) for uid in own))
            hits = [uid for uid in others if any(_matches(candidate, s) for s in examples[uid])]
            if not hits:
                criteria = candidate
                break
        if criteria is None:
            problems.append(f"{key[0]}/{label}: what its {len(own)} labelled series share also matches "
                            f"{_describe_hits(hits, key_of, records)}; no rule (label more series, or use the "
                            f"exact config)")
            continue
        unmatched = [uid for uid in own if not all(_matches(criteria, s) for s in examples[uid])]
        if unmatched:  # by construction every own series matches; say so if not rather than write a wrong rule
            problems.append(f"{key[0]}/{label}: its rule misses labelled series {', '.join(unmatched)}; no rule")
            continue
        n, differing = _shared_sidecar(group)
        if differing:
            problems.append(f"{key[0]}/{label}: {', '.join(differing)} differ between its labelled series; the "
                            f"rules leave them to dcm2niix")
        rules += _rules(n, criteria, single_echo)
    # descriptions are matched word by word whatever their case ("T2_TSE" and "t2 tse"); dcm2bids applies this to
    # every criterion, which changes nothing for the others (they are written from what dcm2niix writes)
    config = {"dcm2niixOptions": REUSABLE_DCM2NIIX_OPTIONS, "case_sensitive": False, "descriptions": rules}
    # aslcontext.tsv: the file names carry no UID here, so one set of volume types for every ASL file
    patterns = {tuple(n.volume_types) for n in names.values() if n.suffix == "asl" and n.volume_types
                and n.series_uid in kept}
    if len(patterns) == 1:
        config["post_op"] = [aslcontext_post_op("*=" + ",".join(next(iter(patterns))))]
    elif len(patterns) > 1:
        problems.append("ASL series with different volume types (aslcontext): no aslcontext.tsv from the rules; "
                        "use the exact config or write them by hand")
    return config, problems


# How general a name's rule is, most general first: each level adds to the one before. The acquisition alone
# carries a protocol to the next visits, whose descriptions are renamed; the ImageType's vendor values and the
# description only come in where the labelled series of another name share that acquisition: first the words
# its descriptions share, last the descriptions as labelled (``pcasl_3d`` against ``pcasl_3d_calibration``,
# whose words include all of the other's).
RULE_LEVELS = ("acquisition", "image_type", "description", "exact_description")
# Timing ranges: what the labelled series had, widened to [lowest / margin, highest × margin]. The echo and
# inversion times and the flip angle set the contrast, which holds over about ×/÷ 1.5 (a T2 TSE is one at TE
# 80–120 ms; T1 SE TE ≤ 20 ms, T2 ≥ 60 ms stay apart; a GRE's flip angle ≤ 30° against a spin echo's ≥ 90°). The
# repetition time of a 2-D multi-slice series also grows with the slices it must fit in (coverage, head size), so
# the same protocol runs at TR 3.5 s one visit and 6 s the next: ×/÷ 2. Where ranges of two names would meet, the
# overlap check below finds it on the labelled series.
TIMING_MARGIN = {"EchoTime": 1.5, "InversionTime": 1.5, "FlipAngle": 1.5, "RepetitionTime": 2.0}
RULE_TEXT_FIELDS = ("MRAcquisitionType", "ScanningSequence", "SequenceVariant")
RULE_NUMERIC_FIELDS = ("EchoTime", "RepetitionTime", "InversionTime", "FlipAngle")
# dcm2niix's ImageType has the DICOM values and, for some, MAGNITUDE/PHASE/… appended; the first two values are
# the standard's (ORIGINAL/DERIVED, PRIMARY/SECONDARY), the rest the vendor's: any number of them up to this
MAX_IMAGE_TYPE_VALUES = 10
_WORDS = re.compile(r"[a-z0-9]+")


def _example_sidecars(r: LabelRecord, acquisition: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The sidecars dcm2niix makes of one labelled series, as far as the rules use them."""
    p = r.prediction
    files = [dict(s) for s in acquisition] if acquisition else [{}]
    for s in files:
        if p and p.image_type:  # what the models were given; the headers' when the store has none
            s["ImageType"] = list(p.image_type)
        if p and p.series_description.strip():
            s["SeriesDescription"] = p.series_description.strip()
    return files


def _shared_criteria(series: list[list[dict[str, Any]]], descriptions: list[str], level: str,
                     acquired: bool = True) -> dict:
    """dcm2bids criteria that every file of ``series`` (one name's labelled series) meets, at ``level``;
    ``acquired``: their headers were read (else a field they lack says nothing)."""
    files = [s for one in series for s in one]
    criteria: dict[str, Any] = {}
    image_types = [tuple(s["ImageType"]) for s in files if s.get("ImageType")]
    if image_types and len(image_types) == len(files):
        criteria["ImageType"] = (_image_type_patterns(image_types) if level != "acquisition"
                                 else _image_type_head(image_types))
    for key in RULE_TEXT_FIELDS:  # a field only some series have is not shared: no criterion
        values = {s.get(key) for s in files}
        if len(values) == 1 and None not in values:
            criteria[key] = _glob_literal(str(values.pop()))
    family = _shared_prefix([_sequence_family(s.get("SequenceName") or "") for s in files])
    if family.strip("*"):
        criteria["SequenceName"] = _glob_literal(family) + "*"
    for key in RULE_NUMERIC_FIELDS:
        values = [s.get(key) for s in files]
        if all(v is not None for v in values) and values:
            lo, hi = min(values), max(values)
            margin = TIMING_MARGIN[key]
            criteria[key] = {"btwe": [_round(lo / margin, math.floor), _round(hi * margin, math.ceil)]}
        elif key == "InversionTime" and acquired and all(v is None for v in values):
            # no labelled series had an inversion: the rule says so (dcm2bids: an empty pattern matches only a
            # sidecar without the field), or a FLAIR would pass a T2's times
            criteria[key] = ""
    if level == "description":
        pattern = _shared_words(descriptions)
        if pattern:
            criteria["SeriesDescription"] = pattern
    elif level == "exact_description" and all(descriptions):
        criteria["SeriesDescription"] = {"any": sorted({_glob_literal(d) for d in descriptions})}
    return criteria


def _round(value: float, direction: Any) -> float:
    """Six decimals (microseconds), rounded outwards so the range keeps what it was made from."""
    return direction(value * 1e6) / 1e6


def _image_type_head(image_types: list[tuple]) -> dict:
    """The ImageType's standard values (ORIGINAL/DERIVED, PRIMARY/SECONDARY) as shared, any vendor values after."""
    head = [_glob_literal(str(next(iter(values)))) if len(values) == 1 else "*"
            for values in ({t[k] if len(t) > k else "" for t in image_types} for k in range(2))]
    return {"any": [head + ["*"] * extra for extra in range(MAX_IMAGE_TYPE_VALUES - 1)]}


# what dcm2niix appends to a sidecar's ImageType (Siemens magnitude/phase images): a DICOM ImageType matches
# with or without it
_DCM2NIIX_IMAGE_TYPE_TAILS = ([], ["MAGNITUDE"], ["PHASE"], ["REAL"], ["IMAGINARY"])


def _image_type_patterns(image_types: list[tuple]) -> dict:
    """Each ImageType length the labelled series had, with the values they share there (``*`` where they
    differ), with or without what dcm2niix appends."""
    by_length: dict[int, list[tuple]] = defaultdict(list)
    for t in image_types:
        by_length[len(t)].append(t)
    patterns = []
    for length, same_length in sorted(by_length.items()):
        values = [_glob_literal(str(same_length[0][k])) if len({t[k] for t in same_length}) == 1 else "*"
                  for k in range(length)]
        patterns += [values + tail for tail in _DCM2NIIX_IMAGE_TYPE_TAILS]
    return {"any": patterns}


def _sequence_family(name: str) -> str:
    """``*tseR2d1_13rr`` -> ``*tse``: Siemens names a sequence by its family in lower case (tse, tir, tfl, fl, ep,
    spc), then options in upper case (R: RESTORE, B: BLADE), the dimension and counts (echo train, b-value)
    that change with the protocol's settings. Other vendors: the letters before the first digit."""
    match = re.match(r"\*?[a-z]+", name) or re.match(r"\*?[A-Za-z]+", name)
    return match.group(0) if match else ""


def _shared_prefix(values: list[str]) -> str:
    if not values or not all(values):
        return ""
    prefix = values[0]
    for v in values[1:]:
        while not v.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def _shared_words(descriptions: list[str]) -> str:
    """``*t2*tse*``: the words every description has, in the order they have them (any case: the config
    matches case-insensitively); "" when a description is empty or they share no word."""
    words = [_WORDS.findall(d.lower()) for d in descriptions]
    if not words or not all(words):
        return ""
    shared = [w for w in words[0] if all(w in other for other in words[1:])]
    while shared:
        pattern = "*" + "*".join(shared) + "*"
        if all(fnmatch.fnmatchcase(d.lower(), pattern) for d in descriptions):
            return pattern
        shared.pop()  # a word the others have in another order
    return ""


def _matches(criteria: dict, sidecar: dict[str, Any]) -> bool:
    """Whether dcm2bids (3.3, fnmatch, case-insensitive) pairs a sidecar with these criteria (its
    ``SidecarPairing.isLink``): lists element by element and of the same length, ``any`` of several patterns,
    ``btwe`` an inclusive range, an empty pattern only a missing or empty field."""

    def text(value: Any, pattern: Any) -> bool:
        return fnmatch.fnmatchcase(str(value).lower(), str(pattern).lower())

    def sequence(value: Any, pattern: Any) -> bool:
        return (isinstance(value, list) and isinstance(pattern, list) and len(value) == len(pattern)
                and all(text(v, p) for v, p in zip(value, pattern)))

    for key, pattern in criteria.items():
        value = sidecar.get(key, "")
        if isinstance(pattern, dict) and "any" in pattern:
            ok = any(sequence(value, p) if isinstance(value, list) else text(value, p) for p in pattern["any"])
        elif isinstance(pattern, dict) and "btwe" in pattern:
            try:
                ok = float(pattern["btwe"][0]) <= float(value) <= float(pattern["btwe"][1])
            except (TypeError, ValueError):
                ok = False
        elif isinstance(value, list):
            ok = sequence(value, pattern)
        else:
            ok = (not value and not pattern) or bool(value and pattern and text(value, pattern))
        if not ok:
            return False
    return True


def _describe_hits(uids: list[str], key_of: dict[str, tuple | None], records: Sequence[LabelRecord]) -> str:
    """``2 series labelled FLAIR_2D (acq-2D_FLAIR), …`` for a problem message."""
    sequences = {r.series_uid: r.sequence for r in records}
    counts: dict[str, int] = defaultdict(int)
    for uid in uids:
        key = key_of.get(uid)
        what = f"{sequences.get(uid)}" + (f" ({'_'.join(x for x in (key[2], key[1]) if x)})" if key else
                                          " (not converted)")
        counts[what] += 1
    return ", ".join(f"{n} series labelled {what}" for what, n in sorted(counts.items()))


def _shared_sidecar(group: list[BidsName]) -> tuple[BidsName, list[str]]:
    """One name's series as one BidsName: the sidecar fields they all have with the same value (an ASL series'
    timing, a field map's echo times), and the fields left out because they differ."""
    first = group[0]
    keys = set().union(*(n.sidecar for n in group))
    same = {k: first.sidecar[k] for k in sorted(keys)
            if all(k in n.sidecar and n.sidecar[k] == first.sidecar.get(k) for n in group)}
    differing = sorted(k for k in keys - set(same) if k not in ("B0FieldIdentifier", "B0FieldSource", "IntendedFor"))
    return replace(first, sidecar=same), differing


def _rules(n: BidsName, match: dict, single_echo: bool = False) -> list[dict]:
    """The descriptions of one name's files; ``single_echo``: its labelled series had one echo each, so no rule
    for dcm2niix's echo files (``_e2`` of a PD/T2 dual echo would otherwise become a T2w's ``echo-2``)."""
    out = []
    for suffix, patterns, extra in _dcm2bids_files(n, stem=f"*_{REUSABLE_MARK}"):
        if single_echo and extra.startswith("echo-"):
            continue
        description = {"datatype": n.datatype, "suffix": suffix,
                       "criteria": {**match, "SidecarFilename": {"any": patterns}}}
        entities = "_".join(x for x in (n.entity_string, extra) if x)
        if entities:
            description["custom_entities"] = entities
        if n.datatype == "func" and "task" in n.entities:
            description["sidecar_changes"] = {"TaskName": n.entities["task"]}
        # what the protocol fixes (ASL timing, echo times), not what links this dataset's files
        changes = {k: v for k, v in _sidecar_for(n, suffix).items() if k not in ("B0FieldIdentifier", "B0FieldSource")}
        if changes:
            description.setdefault("sidecar_changes", {}).update(changes)
        out.append(description)
    return out


# dcm2niix names the echoes of a multi-echo series _e1, _e2, …: each its own echo- entity (BIDS), never two runs
MAX_ECHOES = 5  # multi-echo BOLD and T2* rarely have more; later echoes stay unconverted (dcm2bids says so)
# where the schema has the echo entity and the validators agree (npm bids-validator 1.15 refuses echo- on asl)
ECHO_DATATYPES = ("anat", "func")


def _dcm2bids_files(n: BidsName, stem: str = "") -> list[tuple[str, list[str], str]]:
    """(suffix, sidecar file name patterns, extra entity) for each file dcm2niix makes of one series.

    ``stem``: the glob of the file name before dcm2niix's own suffixes (``*_<uid>`` by default). The
    patterns of one series never overlap (dcm2bids skips a sidecar that two descriptions match).
    """
    stem = stem or f"*_{n.series_uid}"
    if n.suffix == FIELDMAP_SUFFIX:
        return [("magnitude1", [f"{stem}_e1.json"], ""), ("magnitude2", [f"{stem}_e2.json"], ""),
                (n.suffix, [f"{stem}.json", f"{stem}_ph.json", f"{stem}_e2_ph.json"], "")]
    if n.datatype not in ECHO_DATATYPES:
        return [(n.suffix, [f"{stem}.json", f"{stem}_*.json"], "")]
    files = [(n.suffix, [f"{stem}.json", f"{stem}_[!e]*.json"], "")]
    files += [(n.suffix, [f"{stem}_e{k}.json", f"{stem}_e{k}_*.json"], f"echo-{k}") for k in range(1, MAX_ECHOES + 1)]
    return files


HEUDICONV_TEMPLATE = '''"""heudiconv heuristic written by SeriesClassifier{version_note}.

Every series is placed by its SeriesInstanceUID, as labelled (predicted, accepted
or corrected) in the SeriesClassifier label store. Series not listed are not converted.
Run: heudiconv --files DICOM_DIR -s <subject> [-ss <session>] -f this_file.py -c dcm2niix -b -o BIDS_DIR
"""

# SeriesInstanceUID -> (datatype, name after the subject/session prefix)
SERIES = {series}

# SeriesInstanceUID -> sidecar fields dcm2niix does not write (ASL timing, field-map echo times, B0FieldIdentifier
# / B0FieldSource, an M0 scan's IntendedFor), merged into the sidecar after conversion by custom_callable
SIDECARS = {sidecars}

# SeriesInstanceUID -> ASL volume types, repeated to the volumes of the NIfTI, written as *_aslcontext.tsv
ASLCONTEXT = {aslcontext}

# heudiconv writes each field map's IntendedFor: the BOLD/DWI runs it is closest to in time
POPULATE_INTENDED_FOR_OPTS = {{"matching_parameters": ["Force"], "criterion": "Closest"}}


def create_key(template, outtype=("nii.gz",), annotation_classes=None):
    if not template:
        raise ValueError("Template must be a valid format string")
    return template, outtype, annotation_classes


def infotodict(seqinfo):
    info = {{}}
    for s in seqinfo:
        entry = SERIES.get(s.series_uid)
        if entry is None:
            continue
        datatype, name = entry
        if name.endswith("_{fieldmap}") or name == "{fieldmap}":
            # field map: the phase series is the phase difference; heudiconv numbers magnitude echoes itself
            if "P" not in (s.image_type or ()):
                name = name[: -len("{fieldmap}")] + "magnitude"
        key = create_key("{{bids_subject_session_dir}}/" + datatype + "/{{bids_subject_session_prefix}}_" + name)
        info.setdefault(key, []).append(s.series_id)
    return info


def _series_uid(dicoms):
    import pydicom

    for path in dicoms:
        try:
            return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
                       .SeriesInstanceUID)
        except Exception:
            continue
    return None


def _volumes(path):
    import gzip
    import struct

    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        header = f.read(348)
    dims = struct.unpack_from("<8h", header, 40)
    return max(1, dims[4]) if dims[0] >= 4 else 1


def custom_callable(prefix, outtypes, dicoms):
    """After heudiconv converted one series: its extra sidecar fields, and an ASL series' aslcontext.tsv."""
    import glob
    import json
    import os
    import stat

    uid = _series_uid(dicoms)
    fields = dict(SIDECARS.get(uid) or {{}})
    for sidecar in sorted(glob.glob(glob.escape(prefix) + "*.json")):
        name = os.path.basename(sidecar)
        if not fields or name.endswith("_scans.json"):
            continue
        mode = os.stat(sidecar).st_mode
        os.chmod(sidecar, mode | stat.S_IWUSR)  # heudiconv leaves sidecars read-only
        with open(sidecar) as f:
            data = json.load(f)
        magnitude = "_magnitude" in name
        for key, value in fields.items():
            if magnitude and key in ("EchoTime1", "EchoTime2"):
                continue
            if key == "IntendedFor":  # the M0 scan: the ASL files beside it, as BIDS URIs
                here = root = os.path.dirname(os.path.abspath(prefix))
                while not os.path.basename(root).startswith("sub-") and os.path.dirname(root) != root:
                    root = os.path.dirname(root)
                asl = sorted(glob.glob(os.path.join(here, "*_asl.nii.gz")))
                value = ["bids::" + os.path.relpath(p, os.path.dirname(root)) for p in asl]
            data[key] = value
        with open(sidecar, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(sidecar, mode)
    types = ASLCONTEXT.get(uid)
    if types and os.path.exists(prefix + ".nii.gz"):
        n = _volumes(prefix + ".nii.gz")
        with open(prefix[: -len("_asl")] + "_aslcontext.tsv", "w") as f:
            f.write("volume_type\\n" + "".join(types[k % len(types)] + "\\n" for k in range(n)))
'''


def reusable_heudiconv_heuristic(models: str | None = None, include_derived: bool = False, version: str = "",
                                 overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """Source of the heudiconv heuristic that classifies each series of any subject (no UIDs inside).

    The module is ``Resources/heudiconv_heuristic.py`` with its settings filled in; ``overrides``: the
    researcher's sidecar fields (``export --bids-sidecar``), which an ASL series needs to be converted.
    """
    from ..resources import resource_path

    source = resource_path("heudiconv_heuristic.py").read_text(encoding="utf-8")
    settings = {
        "MODELS = None": f"MODELS = {models!r}",
        "INCLUDE_DERIVED = False": f"INCLUDE_DERIVED = {bool(include_derived)!r}",
        'WRITTEN_BY = "SeriesClassifier"': f"WRITTEN_BY = {('SeriesClassifier ' + version).strip()!r}",
        "SIDECAR_OVERRIDES = {}": f"SIDECAR_OVERRIDES = {_python_literal(overrides or {})}",
    }
    for default, value in settings.items():
        source = source.replace(default, value, 1)
    return source


def heudiconv_heuristic(names: dict[str, BidsName], include_derived: bool = False, version: str = "") -> str:
    """Source of a heudiconv heuristic module that reproduces ``names``."""
    entries = []
    for n in selected_for_conversion(names, include_derived):
        tail = "_".join(p for p in (n.entity_string, n.suffix) if p)
        entries.append(f"    {json.dumps(n.series_uid)}: ({json.dumps(n.datatype)}, {json.dumps(tail)}),")
    series = "{\n" + "\n".join(entries) + "\n}" if entries else "{}"
    kept = selected_for_conversion(names, include_derived)
    sidecars = {n.series_uid: n.sidecar for n in kept if n.sidecar}
    aslcontext = {n.series_uid: n.volume_types for n in kept if n.volume_types and n.suffix == "asl"}
    return HEUDICONV_TEMPLATE.format(
        series=series, version_note=f" {version}" if version else "", fieldmap=FIELDMAP_SUFFIX,
        sidecars=_python_literal(sidecars), aslcontext=_python_literal(aslcontext),
    )


def _python_literal(value: dict) -> str:
    """A dict as Python source (JSON's true/false/null spelled the Python way), one entry a line."""
    if not value:
        return "{}"
    lines = [f"    {json.dumps(k)}: {_py(v)}," for k, v in value.items()]
    return "{\n" + "\n".join(lines) + "\n}"


def _py(value: Any) -> str:
    return repr(json.loads(json.dumps(value)))
