"""BIDS sidecar fields from the DICOM headers (ASL, field maps), researcher overrides, and where they land."""

from __future__ import annotations

import ast
import gzip
import json
import struct

import pytest
from dicom_factory import AXIAL, siemens_csa, siemens_protocol, write_classic_series, write_enhanced_series

from SeriesClassifierLib.labels.bids import bids_names, dcm2bids_config, heudiconv_heuristic, reusable_dcm2bids_config
from SeriesClassifierLib.labels.bids_metadata import direction_label, load_overrides, read_facts
from SeriesClassifierLib.labels.bids_post import aslcontext_path, main, nifti_volumes
from SeriesClassifierLib.labels.store import derive_record
from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction


def rec(uid, sequence, number, description, image_type=()):
    p = SeriesPrediction(uid, "S1", "P-1", number, description,
                         sequence=TaskPrediction.from_probabilities({sequence: 1.0}), image_type=list(image_type))
    return derive_record(uid, p, "m", [])


def _asl_study(tmp_path, contexts=("CONTROL", "LABEL", "CONTROL", "LABEL"), m0=True):
    study = "1.2.3.4"
    asl = write_enhanced_series(
        tmp_path / "asl.dcm", {"RepetitionTime": 4500.0, "EchoTime": 12.0, "MRAcquisitionType": "3D"},
        frames=3 * len(contexts), study_uid=study, description="pcasl_3d",
        asl_contexts=list(contexts), top={"ArterialSpinLabelingContrast": "PSEUDOCONTINUOUS",
                                          "Manufacturer": "Siemens Healthineers", "SeriesNumber": 7})
    files = {asl: [tmp_path / "asl.dcm"]}
    records = [rec(asl, "PERFUSION_ASL", 7, "pcasl_3d")]
    if m0:
        m0_uid = write_enhanced_series(tmp_path / "m0.dcm", {"RepetitionTime": 4500.0, "EchoTime": 12.0},
                                       frames=3, study_uid=study, description="pcasl_3d_calibration",
                                       # an M0 scan by its frames' context, not its name
                                       asl_contexts=["M_ZERO_SCAN"], top={"SeriesNumber": 8})
        files[m0_uid] = [tmp_path / "m0.dcm"]
        records.append(rec(m0_uid, "PERFUSION_ASL", 8, "pcasl_3d_calibration"))
    facts = {uid: read_facts(uid, f) for uid, f in files.items()}
    return asl, records, facts


def test_asl_fields_from_an_enhanced_header_and_the_missing_ones_keep_it_out(tmp_path, capsys):
    asl, records, facts = _asl_study(tmp_path)
    assert facts[asl].fields["ArterialSpinLabelingType"] == "PCASL"
    assert facts[asl].fields["RepetitionTimePreparation"] == 4.5
    assert facts[asl].volume_types == ["control", "label", "control", "label"]
    names = bids_names(records, facts=facts)
    n = names[asl]
    # PLD, labelling duration and background suppression are in no header here: out of the raw tree, and why
    assert n.location == "sourcedata/nonbids"
    assert set(n.missing) == {"PostLabelingDelay", "BackgroundSuppression", "LabelingDuration"}
    m0 = next(v for k, v in names.items() if k != asl)
    assert m0.suffix == "m0scan" and not m0.in_raw_tree  # nothing left to calibrate in the raw tree
    config = dcm2bids_config(names)
    assert config["descriptions"] == [] and "post_op" not in config


def test_overrides_complete_asl_and_the_converter_configs_carry_them(tmp_path):
    asl, records, facts = _asl_study(tmp_path)
    sidecar = tmp_path / "sidecar.json"
    sidecar.write_text(json.dumps({"asl": {"BackgroundSuppression": True, "PostLabelingDelay": 1.8,
                                           "LabelingDuration": 1.5}}))
    names = bids_names(records, facts=facts, overrides=load_overrides(sidecar))
    n = names[asl]
    assert n.filename == "sub-01/perf/sub-01_asl.nii.gz" and not n.missing
    assert n.sidecar["M0Type"] == "Separate" and n.sidecar["PostLabelingDelay"] == 1.8
    m0 = next(v for k, v in names.items() if k != asl)
    assert m0.filename == "sub-01/perf/sub-01_m0scan.nii.gz"
    config = dcm2bids_config(names)
    by_suffix = {d["suffix"]: d for d in config["descriptions"]}
    assert by_suffix["asl"]["sidecar_changes"]["BackgroundSuppression"] is True
    assert by_suffix["asl"]["sidecar_changes"]["ArterialSpinLabelingType"] == "PCASL"
    assert by_suffix["m0scan"]["sidecar_changes"]["IntendedFor"] == [by_suffix["asl"]["id"]]
    assert config["post_op"][0]["datatype"] == "perf" and f"{asl}=control,label,control,label" in \
        config["post_op"][0]["cmd"]
    module = heudiconv_heuristic(names)
    tree = ast.parse(module)
    tables = {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body
              if isinstance(t, ast.Assign) and t.targets[0].id in ("SIDECARS", "ASLCONTEXT")}
    assert tables["ASLCONTEXT"][asl] == ["control", "label", "control", "label"]
    assert tables["SIDECARS"][asl]["LabelingDuration"] == 1.5
    assert "def custom_callable" in module
    rules, problems = reusable_dcm2bids_config(records, facts=facts, overrides=load_overrides(sidecar))
    asl_rule = next(d for d in rules["descriptions"] if d["suffix"] == "asl")
    assert asl_rule["sidecar_changes"]["PostLabelingDelay"] == 1.8 and "*=control,label" in rules["post_op"][0]["cmd"]


def test_override_keys_by_uid_win_over_description_and_suffix(tmp_path):
    asl, records, facts = _asl_study(tmp_path, m0=False)
    overrides = {"asl": {"BackgroundSuppression": False, "PostLabelingDelay": 2.0, "LabelingDuration": 1.8},
                 "pcasl_3d": {"PostLabelingDelay": 1.5}, asl: {"PostLabelingDelay": 1.2,
                                                              "aslcontext": ["label", "control"]}}
    n = bids_names(records, facts=facts, overrides=overrides)[asl]
    assert n.sidecar["PostLabelingDelay"] == 1.2 and n.volume_types == ["label", "control"]
    assert n.sidecar["M0Type"] == "Absent"  # every volume's context is known, none is an M0 scan, no M0 series


def test_a_bad_override_file_is_refused_with_the_reason(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"asl": {"aslcontext": ["tag"]}}))
    with pytest.raises(ValueError, match="aslcontext"):
        load_overrides(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="object"):
        load_overrides(bad)


def test_ge_private_asl_tags(tmp_path):
    uid, files = write_classic_series(
        tmp_path / "ge", {"RepetitionTime": 4800.0, "EchoTime": 10.0, "InversionTime": 2025.0,
                          "Manufacturer": "GE MEDICAL SYSTEMS"}, n=2, description="3D ASL",
        private={0x004310A3: ("CS", "PSEUDOCONTINUOUS"), 0x004310A4: ("LO", "3D pulsed continuous ASL technique"),
                 0x004310A5: ("IS", "1450")})
    fields = read_facts(uid, files).fields
    assert fields["ArterialSpinLabelingType"] == "PCASL"
    assert fields["LabelingDuration"] == pytest.approx(1.45) and fields["PostLabelingDelay"] == pytest.approx(2.025)


def test_phasediff_echo_times_from_the_protocol_or_the_magnitude_series(tmp_path):
    gre = {"ScanningSequence": "GR", "RepetitionTime": 500.0, "EchoTime": 7.38}
    # Siemens: the protocol of the phase series says both echo times
    phase, phase_files = write_classic_series(
        tmp_path / "ph", {**gre, "ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}, n=2,
        private={0x00291020: ("OB", siemens_protocol({"alTE[0]": 4920, "alTE[1]": 7380}))})
    assert read_facts(phase, phase_files).fields["EchoTime1"] == pytest.approx(0.00492)
    # without it: the magnitude series' two echoes
    mag, mag_files = write_classic_series(tmp_path / "mag", gre, n=4,
                                          per_file=[{"EchoTime": te} for te in (4.92, 4.92, 7.38, 7.38)])
    plain, plain_files = write_classic_series(tmp_path / "ph2", {**gre, "ImageType": ["ORIGINAL", "PRIMARY", "P"]},
                                              n=2)
    records = [rec(mag, "FIELDMAP", 3, "gre_field_mapping"), rec(plain, "FIELDMAP", 4, "gre_field_mapping"),
               rec("bold", "FMRI_BOLD", 5, "ep2d_bold")]
    facts = {mag: read_facts(mag, mag_files), plain: read_facts(plain, plain_files)}
    names = bids_names(records, facts=facts)
    assert names[plain].sidecar["EchoTime1"] == pytest.approx(0.00492)
    assert names[plain].sidecar["EchoTime2"] == pytest.approx(0.00738)
    assert names[plain].sidecar["B0FieldIdentifier"] == names[mag].sidecar["B0FieldIdentifier"] == "phasediff"
    assert names["bold"].sidecar["B0FieldSource"] == "phasediff"
    files = {d["suffix"]: d["sidecar_changes"] for d in dcm2bids_config(names)["descriptions"]
             if d["datatype"] == "fmap" and d["criteria"]["SidecarFilename"]["any"][0].startswith(f"*_{plain}")}
    assert "EchoTime1" in files["phasediff"] and "EchoTime1" not in files["magnitude1"]


def test_direction_of_a_phase_encoding_as_dcm2niix_names_it():
    # axial, along the columns: positive runs P→A in dcm2niix's (row-flipped) j axis; HCP's PA is "j"
    assert direction_label(AXIAL, "COL", True) == ("PA", "j")
    assert direction_label(AXIAL, "COL", False) == ("AP", "j-")
    assert direction_label(AXIAL, "ROW", True) == ("RL", "i")


def test_reverse_phase_encoded_spin_echo_epi_pair_from_the_header(tmp_path):
    epi = {"ScanningSequence": "EP", "SequenceVariant": "SK", "RepetitionTime": 7000.0, "EchoTime": 65.0,
           "InPlanePhaseEncodingDirection": "COL"}
    uids = {}
    for positive in (1, 0):
        uid, files = write_classic_series(
            tmp_path / f"pe{positive}", epi, n=2, description="SpinEchoFieldMap",
            private={0x00291010: ("OB", siemens_csa({"PhaseEncodingDirectionPositive": positive}))})
        uids[positive] = (uid, files)
    records = [rec(uids[1][0], "FIELDMAP", 3, "SpinEchoFieldMap"), rec(uids[0][0], "FIELDMAP", 4, "SpinEchoFieldMap"),
               rec("dwi", "DWI", 5, "ep2d_diff")]
    facts = {uid: read_facts(uid, files) for uid, files in uids.values()}
    names = bids_names(records, facts=facts)
    assert names[uids[1][0]].filename == "sub-01/fmap/sub-01_dir-PA_epi.nii.gz"
    assert names[uids[0][0]].filename == "sub-01/fmap/sub-01_dir-AP_epi.nii.gz"
    assert names[uids[0][0]].sidecar["PhaseEncodingDirection"] == "j-"
    # one field estimate from the pair, the source of the diffusion series' correction
    assert {names[u].sidecar["B0FieldIdentifier"] for u, _ in uids.values()} == {"epi"}
    assert names["dwi"].sidecar["B0FieldSource"] == "epi"
    from bids_tools import names_outside_schema

    assert names_outside_schema([n.filename for n in names.values()]) == []


def test_without_a_header_the_description_gives_the_direction():
    names = bids_names([rec("a", "FIELDMAP", 3, "fmap_topup_AP"), rec("b", "FIELDMAP", 4, "fmap_topup_PA")])
    assert names["a"].stem == "sub-01_dir-AP_epi" and names["b"].stem == "sub-01_dir-PA_epi"


def _nifti(path, volumes):
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 4, 2, 2, 2, volumes, 1, 1, 1)
    with gzip.open(path, "wb") as f:
        f.write(bytes(header) + b"\0" * 4)


def test_dcm2bids_post_op_moves_the_file_and_writes_aslcontext(tmp_path):
    src, dst = tmp_path / "013_1.2.3_asl.nii.gz", tmp_path / "bids" / "sub-01" / "perf" / "sub-01_asl.nii.gz"
    _nifti(src, 5)
    assert nifti_volumes(src) == 5
    assert main(["aslcontext", str(src), str(dst), "9.9=m0scan;1.2.3=control,label"]) == 0
    assert dst.read_bytes() == src.read_bytes()
    assert aslcontext_path(dst).read_text().split() == ["volume_type", "control", "label", "control", "label",
                                                        "control"]
    assert aslcontext_path(dst).name == "sub-01_aslcontext.tsv"


def test_dcm2bids_and_heudiconv_write_the_asl_fields_and_aslcontext(tmp_path):
    """The real tools with our configs: the fields reach the sidecars, aslcontext.tsv has one row per volume."""
    from bids_tools import run_dcm2bids_with, run_heudiconv_with

    dicom = tmp_path / "dicom"
    dicom.mkdir()
    asl, records, facts = _asl_study(dicom)
    overrides = {"asl": {"BackgroundSuppression": True, "PostLabelingDelay": 1.8, "LabelingDuration": 1.5}}
    names = bids_names(records, facts=facts, overrides=overrides)
    dcm2bids_out, _ = run_dcm2bids_with(dcm2bids_config(names), dicom, tmp_path / "d")
    heuristic = tmp_path / "heuristic.py"
    heuristic.write_text(heudiconv_heuristic(names))
    heudiconv_out, _ = run_heudiconv_with(heuristic, [str(p) for p in dicom.glob("*.dcm")], tmp_path,
                                          tmp_path / "h")
    for out in (dcm2bids_out, heudiconv_out):
        perf = out / "sub-01" / "perf"
        sidecar = json.loads((perf / "sub-01_asl.json").read_text())
        assert sidecar["BackgroundSuppression"] is True and sidecar["M0Type"] == "Separate", out
        assert sidecar["ArterialSpinLabelingType"] == "PCASL" and sidecar["PostLabelingDelay"] == 1.8
        rows = (perf / "sub-01_aslcontext.tsv").read_text().split()
        assert rows == ["volume_type", "control", "label", "control", "label"], out
        m0 = json.loads((perf / "sub-01_m0scan.json").read_text())
        intended = m0["IntendedFor"] if isinstance(m0["IntendedFor"], list) else [m0["IntendedFor"]]  # dcm2bids: one
        assert intended == ["bids::sub-01/perf/sub-01_asl.nii.gz"], out


def test_spin_echo_epi_pair_converts_with_direction_and_b0_links(tmp_path):
    """dcm2bids with our config on a factory EPI pair + BOLD: dir-PA/dir-AP, PhaseEncodingDirection j/j-,
    one B0FieldIdentifier, the BOLD's B0FieldSource; and the BIDS validator's errors where it is installed."""
    import shutil
    import subprocess

    from bids_tools import run_dcm2bids_with

    dicom, study = tmp_path / "dicom", "1.2.3"
    epi = {"ScanningSequence": "EP", "SequenceVariant": "SK", "RepetitionTime": 7000.0, "EchoTime": 65.0,
           "InPlanePhaseEncodingDirection": "COL", "Manufacturer": "SIEMENS", "MagneticFieldStrength": 3.0}
    records, facts = [], {}
    for number, (folder, positive, description) in enumerate(
            (("pe1", 1, "SpinEchoFieldMap"), ("pe0", 0, "SpinEchoFieldMap"), ("bold", 1, "bold_rest")), 3):
        headers = {**epi, "SeriesNumber": number}
        if folder == "bold":
            headers.update(RepetitionTime=2000.0, EchoTime=30.0)
        uid, files = write_classic_series(
            dicom / folder, headers, n=4, study_uid=study, description=description,
            private={0x00291010: ("OB", siemens_csa({"PhaseEncodingDirectionPositive": positive}))})
        records.append(rec(uid, "FMRI_BOLD" if folder == "bold" else "FIELDMAP", number, description))
        facts[uid] = read_facts(uid, files)
    out, _ = run_dcm2bids_with(dcm2bids_config(bids_names(records, facts=facts)), dicom, tmp_path / "d")
    fmap = out / "sub-01" / "fmap"
    pa = json.loads((fmap / "sub-01_dir-PA_epi.json").read_text())
    ap = json.loads((fmap / "sub-01_dir-AP_epi.json").read_text())
    assert (pa["PhaseEncodingDirection"], ap["PhaseEncodingDirection"]) == ("j", "j-")
    assert pa["B0FieldIdentifier"] == ap["B0FieldIdentifier"] == "epi"
    assert ap["IntendedFor"] == "bids::sub-01/func/sub-01_task-rest_bold.nii.gz"
    bold = json.loads((out / "sub-01" / "func" / "sub-01_task-rest_bold.json").read_text())
    assert bold["B0FieldSource"] == "epi"
    validator = shutil.which("bids-validator")
    if validator:  # npm bids-validator: not a Python requirement, checked where it is installed
        (out / "dataset_description.json").write_text(json.dumps({"Name": "epi pair", "BIDSVersion": "1.11.0"}))
        (out / ".bidsignore").write_text("tmp_dcm2bids/\n")
        report = json.loads(subprocess.run([validator, str(out), "--json"], capture_output=True, text=True).stdout)
        # the factory's 8×8 images gzip to fewer bytes than a NIfTI header, which the validator checks by size
        errors = {e["key"] for e in report["issues"]["errors"]} - {"NIFTI_TOO_SMALL"}
        assert errors == set()


def _reusable_module(overrides: dict) -> dict:
    from SeriesClassifierLib.labels.bids import reusable_heudiconv_heuristic

    namespace: dict = {}
    exec(compile(reusable_heudiconv_heuristic(), "heuristic.py", "exec"), namespace)  # noqa: S102 - our own source
    namespace["SIDECAR_OVERRIDES"] = overrides
    namespace["_bundle"] = lambda: None
    return namespace


def test_reusable_heuristic_converts_asl_only_with_its_required_fields(tmp_path, monkeypatch):
    """The reusable heuristic sees one series at a time: an ASL series goes in when its headers and the overrides
    give every required field, else it is not converted (and the log says which); an M0 scan is left to the exact
    heuristic (it must name its ASL series)."""
    import SeriesClassifierLib.run.pipeline as pipeline

    asl, records, _ = _asl_study(tmp_path)
    predictions = {r.series_uid: r.prediction for r in records}
    monkeypatch.setattr(pipeline, "predict_series", lambda series, bundle: predictions[series.series_uid])
    files = {asl: [str(tmp_path / "asl.dcm")], next(u for u in predictions if u != asl): [str(tmp_path / "m0.dcm")]}

    class Wrapper:
        def __init__(self, uid):
            self.dcm_data = type("D", (), {"SeriesInstanceUID": uid})()

    bare = _reusable_module({})
    assert bare["custom_seqinfo"](Wrapper(asl), files[asl]) is None
    fields = {"BackgroundSuppression": True, "PostLabelingDelay": 1.8, "LabelingDuration": 1.5}
    # control/label frames only: whether an M0 series exists is the study's, which this heuristic does not see
    assert _reusable_module({"asl": fields})["custom_seqinfo"](Wrapper(asl), files[asl]) is None
    given = _reusable_module({"asl": {**fields, "M0Type": "Separate"}})
    assert given["custom_seqinfo"](Wrapper(asl), files[asl]) == ("perf", "asl", ())
    m0 = next(u for u in files if u != asl)
    assert given["custom_seqinfo"](Wrapper(m0), files[m0]) is None
    # after heudiconv converted it: the fields merged into the (read-only) sidecar, aslcontext.tsv beside it
    prefix = tmp_path / "out" / "sub-01" / "perf" / "sub-01_asl"
    prefix.parent.mkdir(parents=True)
    _nifti(str(prefix) + ".nii.gz", 4)
    sidecar = prefix.with_name("sub-01_asl.json")
    sidecar.write_text(json.dumps({"EchoTime": 0.012}))
    sidecar.chmod(0o444)
    given["custom_callable"](str(prefix), ("nii.gz",), files[asl])
    data = json.loads(sidecar.read_text())
    assert data["EchoTime"] == 0.012 and data["M0Type"] == "Separate" and data["BackgroundSuppression"] is True
    assert (prefix.parent / "sub-01_aslcontext.tsv").read_text().split()[1:] == ["control", "label"] * 2
    assert sidecar.stat().st_mode & 0o222 == 0  # left read-only, as heudiconv made it


def test_acquisition_sidecars_say_what_dcm2niix_writes(tmp_path):
    """The reusable dcm2bids rules are made from these and matched by dcm2bids against dcm2niix's sidecars: the
    same names, units and values (each echo its own file), for a classic dual-echo and an enhanced IR series."""
    import subprocess

    from bids_tools import tool

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.labels.bids_metadata import acquisition_sidecars

    uid = None
    for echo, te in ((1, 12.0), (2, 90.0)):
        headers = dict(ScanningSequence=["SE"], SequenceVariant=["SK", "SP"], RepetitionTime=3000.0, FlipAngle=150.0,
                       MRAcquisitionType="2D", SequenceName="*tse2d1_7", EchoNumbers=echo, EchoTime=te,
                       ImageType=["ORIGINAL", "PRIMARY", "M", "ND"])
        uid, _ = write_classic_series(tmp_path / "dicom" / "dual", headers, n=4, iop=AXIAL, series_uid=uid,
                                      description="pd_t2", name_files=f"e{echo}_" + "{i:03d}.dcm")
    write_enhanced_series(tmp_path / "dicom" / "flair.dcm", {
        "RepetitionTime": 9000.0, "EchoTime": 85.0, "InversionTime": 2500.0, "FlipAngle": 150.0,
        "MRAcquisitionType": "2D", "SequenceName": "*tir2d1_16"}, frames=4, description="flair")
    ours = {}
    for ref in iter_series_refs(tmp_path / "dicom"):
        for s in acquisition_sidecars(read_series(ref).header):
            ours[(ref.series_description, s["EchoTime"])] = s
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([tool("dcm2niix"), "-b", "o", "-ba", "y", "-f", "%d_%e", "-o", str(out), str(tmp_path / "dicom")],
                   check=True, capture_output=True, timeout=120)
    theirs = {}
    for path in sorted(out.glob("*.json")):
        s = json.loads(path.read_text())
        theirs[(s["SeriesDescription"], round(s["EchoTime"], 6))] = s
    assert set(ours) == set(theirs) == {("pd_t2", 0.012), ("pd_t2", 0.09), ("flair", 0.085)}
    for key, s in ours.items():
        for field in ("ScanningSequence", "SequenceVariant", "MRAcquisitionType", "RepetitionTime",
                      "InversionTime", "FlipAngle"):
            assert s.get(field) == theirs[key].get(field), (key, field)
        # dcm2niix takes an enhanced file's PulseSequenceName as its SequenceName (the factory writes it
        # without the leading *)
        assert s["SequenceName"].lstrip("*") == theirs[key]["SequenceName"].lstrip("*")
