from __future__ import annotations

import ast
import json
from dataclasses import replace

from SeriesClassifierLib.labels.bids import (
    ECHO_DATATYPES,
    bids_label,
    bids_names,
    dcm2bids_config,
    heudiconv_heuristic,
    subject_labels,
)
from SeriesClassifierLib.labels.store import derive_record
from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction


def rec(uid, sequence, number, patient="P-1", study="S1", image_type=(), description=None):
    p = SeriesPrediction(
        uid, study, patient, number, description or f"desc {number}",
        sequence=TaskPrediction.from_probabilities({sequence: 1.0}), image_type=list(image_type),
    )
    return derive_record(uid, p, "m", [])


def test_names_follow_vocabulary_and_bids_entity_order():
    names = bids_names([rec("1", "T1_3D_POST", 3), rec("2", "SWI_PHASE", 4),
                        rec("3", "FMRI_BOLD", 5, description="ep2d_bold_moco")], anonymise=False)
    assert names["1"].filename == "sub-P1/anat/sub-P1_acq-3D_ce-gadolinium_T1w.nii.gz"
    assert names["2"].stem == "sub-P1_acq-swi_part-phase_T2starw"  # BIDS 1.11 has no swi suffix
    assert names["3"].filename == "sub-P1/func/sub-P1_task-rest_bold.nii.gz"


def test_classes_without_mapping_are_left_out_and_derived_are_flagged():
    names = bids_names([rec("1", "SCOUT", 1), rec("2", "OTHER", 2), rec("3", "ADC", 3), rec("4", "DWI", 4)])
    assert set(names) == {"3", "4"}
    assert names["3"].derived and not names["4"].derived
    config = dcm2bids_config(names)
    assert [d["suffix"] for d in config["descriptions"]] == ["dwi"]
    assert [d["suffix"] for d in dcm2bids_config(names, include_derived=True)["descriptions"]] == ["ADC", "dwi"]


def test_runs_numbered_by_series_number_only_where_names_collide():
    records = [rec("a", "FLAIR_2D", 9), rec("b", "FLAIR_2D", 4), rec("c", "FLAIR_3D", 5), rec("d", "FLAIR_2D", 7)]
    names = bids_names(records, anonymise=False)
    assert names["b"].entities["run"] == "01" and names["d"].entities["run"] == "02"
    assert names["a"].entities["run"] == "03"
    assert "run" not in names["c"].entities
    assert names["d"].stem == "sub-P1_acq-2D_run-02_FLAIR"


def test_runs_are_per_subject_and_sessions_appear_with_several_studies():
    records = [
        rec("a", "T2_2D", 2, patient="X", study="S1"),
        rec("b", "T2_2D", 3, patient="Y", study="S2"),
        rec("c", "T2_2D", 4, patient="Y", study="S3"),
        rec("d", "T2_2D", 5, patient="Y", study="S3"),
    ]
    names = bids_names(records, anonymise=False)
    assert names["a"].filename == "sub-X/anat/sub-X_acq-2D_T2w.nii.gz"
    assert names["b"].filename == "sub-Y/ses-01/anat/sub-Y_ses-01_acq-2D_T2w.nii.gz"
    assert names["c"].stem == "sub-Y_ses-02_acq-2D_run-01_T2w"
    assert names["d"].stem == "sub-Y_ses-02_acq-2D_run-02_T2w"


def test_subject_labels():
    assert bids_label("PAT 1/x_y") == "PAT1xy"
    assert subject_labels(["b", "a", "b"]) == {"a": "01", "b": "02"}  # anonymous unless asked
    labels = subject_labels(["A-1", "A_1", ""], anonymise=False)
    assert labels[""] == "unknown" and sorted([labels["A-1"], labels["A_1"]]) == ["A1", "A12"]


def test_dcm2bids_config_matches_uid_in_file_name():
    names = bids_names([rec("1.2.3", "T1_3D_PRE", 1), rec("1.2.30", "FMRI_BOLD", 2, description="rs_fMRI")])
    config = json.loads(json.dumps(dcm2bids_config(names)))
    assert "-ba y" in config["dcm2niixOptions"] and "%j" in config["dcm2niixOptions"]
    first = config["descriptions"][0]
    assert first["criteria"]["SidecarFilename"]["any"] == ["*_1.2.3.json", "*_1.2.3_[!e]*.json"]  # not 1.2.30
    assert first["custom_entities"] == "acq-3D" and first["datatype"] == "anat"
    # each echo of a multi-echo series (dcm2niix's _e1, _e2, …) is its own echo- entity, not another run
    echo2 = config["descriptions"][2]
    assert echo2["criteria"]["SidecarFilename"]["any"] == ["*_1.2.3_e2.json", "*_1.2.3_e2_*.json"]
    assert echo2["custom_entities"] == "acq-3D_echo-2"
    bold = [d for d in config["descriptions"] if d["datatype"] == "func"]
    assert bold and all(d["sidecar_changes"] == {"TaskName": "rest"} for d in bold)


def test_heudiconv_heuristic_is_valid_python_with_the_table():
    names = bids_names([rec("1.2.3", "T1_3D_POST", 1), rec("1.2.4", "ADC", 2)])
    source = heudiconv_heuristic(names, version="9")
    module = {}
    exec(compile(ast.parse(source), "heuristic", "exec"), module)  # noqa: S102 - our own generated code
    assert module["SERIES"] == {"1.2.3": ("anat", "acq-3D_ce-gadolinium_T1w")}

    class Seq:
        def __init__(self, uid, sid):
            self.series_uid, self.series_id = uid, sid

    info = module["infotodict"]([Seq("1.2.3", "1-t1"), Seq("1.2.4", "2-adc"), Seq("9", "3-x")])
    assert info == {
        ("{bids_subject_session_dir}/anat/{bids_subject_session_prefix}_acq-3D_ce-gadolinium_T1w", ("nii.gz",), None):
            ["1-t1"]
    }


def test_field_maps_pair_into_runs_and_split_per_file_in_configs():
    records = [rec("m1", "FIELDMAP", 5), rec("p1", "FIELDMAP", 6), rec("m2", "FIELDMAP", 20), rec("p2", "FIELDMAP", 21)]
    names = bids_names(records, anonymise=False)
    assert [names[u].entities.get("run") for u in ("m1", "p1", "m2", "p2")] == ["01", "01", "02", "02"]
    assert "run" not in bids_names(records[:2])["m1"].entities  # one magnitude + phase pair: no run
    descriptions = dcm2bids_config(bids_names(records[:1]))["descriptions"]
    assert [(d["suffix"], d["criteria"]["SidecarFilename"]["any"]) for d in descriptions] == [
        ("magnitude1", ["*_m1_e1.json"]), ("magnitude2", ["*_m1_e2.json"]),
        ("phasediff", ["*_m1.json", "*_m1_ph.json", "*_m1_e2_ph.json"]),
    ]


def test_image_type_picks_the_scanner_derivative_names_of_the_schema():
    names = bids_names([
        rec("t", "DWI", 1, image_type=["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "ND"]),
        rec("d", "DWI", 2, image_type=["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]),
        rec("e", "DIFFUSION_DERIVED", 3, image_type=["DERIVED", "PRIMARY", "DIFFUSION", "EXP", "ND"]),
        rec("c", "DIFFUSION_DERIVED", 4, description="dti_ColFA"),
        rec("f", "DIFFUSION_DERIVED", 5, image_type=["DERIVED", "PRIMARY", "FA"]),
        rec("m", "T1_3D_PRE", 6, image_type=["DERIVED", "PRIMARY", "MPR", "ND", "NORM"]),
        rec("o", "T1_3D_PRE", 7, image_type=["ORIGINAL", "PRIMARY", "M", "ND"]),
    ])
    assert {u: n.suffix for u, n in names.items()} == {"t": "trace", "d": "dwi", "e": "expADC", "c": "colFA",
                                                        "f": "FA", "m": "T1w", "o": "T1w"}
    assert names["t"].derived and not names["d"].derived
    # a reformat is not raw data: outside the raw tree, so the acquired 3D T1 is not renamed run-01
    assert names["m"].filename == "derivatives/scanner/sub-01/anat/sub-01_acq-3D_rec-MPR_T1w.nii.gz"
    assert names["o"].filename == "sub-01/anat/sub-01_acq-3D_T1w.nii.gz"
    assert [d["criteria"]["SidecarFilename"]["any"][0] for d in dcm2bids_config(names)["descriptions"]
            if d.get("custom_entities", "").count("echo") == 0] == ["*_d.json", "*_o.json"]


def test_classes_outside_the_schema_go_to_a_folder_validators_skip():
    names = bids_names([rec("s", "SWI", 1), rec("n", "SWI_MINIP", 2), rec("p", "PERFUSION_DSC", 3),
                        rec("a", "MRA_MIP", 4), rec("g", "SWI_MAG", 5)])
    assert names["s"].filename == "derivatives/scanner/sub-01/anat/sub-01_rec-swi_swi.nii.gz"
    assert names["p"].filename == "sourcedata/nonbids/sub-01/perf/sub-01_dsc.nii.gz"
    assert names["g"].filename == "sub-01/anat/sub-01_acq-swi_part-mag_T2starw.nii.gz"
    assert [d["custom_entities"] for d in dcm2bids_config(names)["descriptions"]][0] == "acq-swi_part-mag"
    assert {d["suffix"] for d in dcm2bids_config(names)["descriptions"]} == {"T2starw"}


def test_every_raw_name_is_in_the_bids_schema():
    """Every class, alone and with the entities the mapping adds (ses, run, echo), checked by bidsschematools."""
    from bids_tools import names_outside_schema

    from SeriesClassifierLib.vocabulary import load_vocabulary

    codes = [s.code for s in load_vocabulary().sequences if s.bids is not None]
    records = [rec(f"{c}.{k}", c, 10 * i + k, study=f"S{k % 2}") for i, c in enumerate(codes) for k in (1, 2)]
    records.append(rec("trace", "DWI", 999, image_type=["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"]))
    records.append(rec("exp", "DIFFUSION_DERIVED", 998, image_type=["DERIVED", "PRIMARY", "DIFFUSION", "EXP"]))
    names = bids_names(records)
    raw = [n.filename for n in names.values() if n.in_raw_tree]
    echoes = [replace(n, entities={**n.entities, "echo": "2"}).filename for n in names.values()
              if n.in_raw_tree and n.datatype in ECHO_DATATYPES and n.suffix != "angio"]
    assert any("ses-02" in f and "run-" not in f for f in raw) and any("_trace." in f for f in raw)
    assert names_outside_schema(raw + echoes) == []
    outside = {n.filename.split("/sub-")[0] for n in names.values() if not n.in_raw_tree}
    assert outside == {"derivatives/scanner", "sourcedata/nonbids"}


def test_a_description_does_not_override_a_known_image_type():
    """Siemens names the raw b-images series of a trace protocol "…_trace" too: the ImageType decides."""
    names = bids_names([rec("b", "DWI", 5, description="ep2d_diff_3scan_trace_p2",
                            image_type=["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]),
                        rec("t", "DWI", 6, description="ep2d_diff_3scan_trace_p2_TRACEW"),
                        rec("e", "DIFFUSION_DERIVED", 7, description="dwi_EXP")])
    assert (names["b"].suffix, names["t"].suffix, names["e"].suffix) == ("dwi", "trace", "expADC")


def test_bold_task_label_comes_from_the_description():
    from SeriesClassifierLib.labels.bids import task_label

    assert task_label("fMRI_task-nback_run1") == "nback"
    assert task_label("ep2d_bold_moco_rest") == "rest"
    assert task_label("bold_fingertap_mb4_2.5mm") == "fingertap"
    assert task_label("ep2d_bold_moco_p2_ax") == "rest"  # nothing but acquisition words: the vocabulary's default
    names = bids_names([rec("1", "FMRI_BOLD", 1, description="BOLD_motor_task")])
    assert names["1"].filename == "sub-01/func/sub-01_task-motor_bold.nii.gz"
    assert dcm2bids_config(names)["descriptions"][0]["sidecar_changes"] == {"TaskName": "motor"}


def test_a_series_the_models_could_not_tell_gets_no_bids_place_until_a_person_labels_it():
    unknown = rec("1", "T1_2D_PRE", 1)
    unknown.prediction.unknown = "not brain MR (BodyPartExamined is 'KNEE')"
    assert set(bids_names([unknown, rec("2", "T2_2D", 2)])) == {"2"}  # the guess is a hint, not an answer
    accepted = replace(unknown, state="accepted", label_source="accepted")
    assert set(bids_names([accepted, rec("2", "T2_2D", 2)])) == {"1", "2"}


# --- reusable dcm2bids rules: made from what each name's labelled series share --------------------------------------

def _acq(sequence_name, te_ms, tr_ms, flip, ti_ms=None, scanning="SE", dims="2D",
         image_type=("ORIGINAL", "PRIMARY", "M", "ND")):
    """One series' sidecar as dcm2niix writes it (seconds), what ``bids_metadata.acquisition_sidecars`` gives."""
    s = {"ImageType": list(image_type), "ScanningSequence": scanning, "MRAcquisitionType": dims,
         "SequenceName": sequence_name, "EchoTime": te_ms / 1000, "RepetitionTime": tr_ms / 1000, "FlipAngle": flip}
    if ti_ms is not None:
        s["InversionTime"] = ti_ms / 1000
    return [s]


def _paired(config: dict, sidecar: dict, description: str) -> set[str]:
    """What dcm2bids itself (its SidecarPairing.isLink) pairs one converted file with: {"<entities>_<suffix>"}."""
    sidecar_pairing = __import__("pytest").importorskip("dcm2bids.sidecar")
    from SeriesClassifierLib.labels.bids import _matches

    data = {**sidecar, "SeriesDescription": description, "SidecarFilename": "004_anything_sc.json"}
    pairing = sidecar_pairing.SidecarPairing([], config["descriptions"], case_sensitive=config["case_sensitive"])
    out = set()
    for d in config["descriptions"]:
        linked = pairing.isLink(data, d["criteria"])
        # our own reading of dcm2bids' rules (the overlap check uses it) must agree with dcm2bids
        assert linked == _matches(d["criteria"], data), d["criteria"]
        if linked:
            out.add("_".join(x for x in (d.get("custom_entities", ""), d["suffix"]) if x))
    return out


def _two_visits():
    """Two studies of one site whose protocols were renamed in between: T2, FLAIR, T1 (pre), a scout."""
    records = [rec("a1", "T2_2D", 3, "P-1", "S1", description="t2 tse tra"),
               rec("a2", "FLAIR_2D", 4, "P-1", "S1", description="t2_tirm_tra_dark-fluid"),
               rec("a3", "T1_2D_PRE", 5, "P-1", "S1", description="t1_se_sag"),
               rec("a4", "SCOUT", 1, "P-1", "S1", description="localizer"),
               rec("b1", "T2_2D", 2, "P-2", "S2", description="AX T2 TSE p2"),
               rec("b2", "FLAIR_2D", 3, "P-2", "S2", description="flair axial"),
               rec("b3", "T1_2D_PRE", 4, "P-2", "S2", description="T1 SE SAG")]
    acquisitions = {"a1": _acq("*tse2d1_13", 95, 4300, 150), "b1": _acq("*tseR2d1_15rr", 102, 5100, 120),
                    "a2": _acq("*tir2d1_16", 88, 9000, 150, ti_ms=2500), "b2": _acq("*tir2d1_14", 95, 8800, 150,
                                                                                   ti_ms=2450),
                    "a3": _acq("*se2d1", 12, 550, 90), "b3": _acq("*se2d1", 11, 600, 90),
                    "a4": _acq("*fl2d1", 4, 8.6, 20, scanning="GR")}
    return records, acquisitions


def test_reusable_rules_match_a_renamed_protocol_by_its_acquisition():
    from SeriesClassifierLib.labels.bids import reusable_dcm2bids_config

    records, acquisitions = _two_visits()
    config, problems = reusable_dcm2bids_config(records, acquisitions=acquisitions)
    assert problems == []
    text = json.dumps(config)
    assert not any(x in text for x in ("a1", "b1", "P-1", "P-2", "S1", "S2", "t2 tse tra", "flair"))
    # a third visit: the T2 has yet another name and other settings of the same protocol
    assert _paired(config, _acq("*tse2d1_17", 108, 5600, 180)[0], "t2_tse_cor_512") == {"acq-2D_T2w"}
    assert _paired(config, _acq("*tir2d1_19", 80, 9400, 180, ti_ms=2430)[0], "DarkFluid") == {"acq-2D_FLAIR"}
    assert _paired(config, _acq("*se2d1", 10, 700, 90)[0], "") == {"acq-2D_T1w"}  # no description at all


def test_reusable_rules_leave_another_class_with_a_similar_description_alone():
    from SeriesClassifierLib.labels.bids import reusable_dcm2bids_config

    records, acquisitions = _two_visits()
    config, _ = reusable_dcm2bids_config(records, acquisitions=acquisitions)
    # a T2* GRE whose protocol was copied from the T2's and kept its name; a FLAIR named like the T2
    assert _paired(config, _acq("*fl2d1", 20, 650, 18, scanning="GR")[0], "t2 tse tra") == set()
    assert _paired(config, _acq("*tir2d1_16", 90, 9000, 150, ti_ms=2500)[0], "AX T2 TSE p2") == {"acq-2D_FLAIR"}
    # an inversion recovery with a T2's sequence and times: no labelled T2 had an inversion time
    assert _paired(config, _acq("*tse2d1_13", 100, 6000, 150, ti_ms=2400)[0], "t2 tse tra") == set()
    # a diffusion trace (derived) with a T2's times
    trace = _acq("*ep_b1000t", 90, 4500, 90, scanning="EP", image_type=("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"))
    assert _paired(config, trace[0], "t2 tse tra") == set()


def test_reusable_rules_use_the_description_only_where_the_acquisition_cannot_tell_names_apart():
    from SeriesClassifierLib.labels.bids import reusable_dcm2bids_config

    records, acquisitions = _two_visits()
    # contrast is in no sidecar: a post-contrast T1 with the pre's acquisition
    records += [rec("c1", "T1_2D_POST", 6, "P-1", "S1", description="t1_se_sag_post_gd")]
    acquisitions["c1"] = _acq("*se2d1", 12, 560, 90)
    config, problems = reusable_dcm2bids_config(records, acquisitions=acquisitions)
    post = [d for d in config["descriptions"] if "ce-gadolinium" in d.get("custom_entities", "")]
    assert post and all(d["criteria"]["SeriesDescription"] == "*t1*se*sag*post*gd*" for d in post)
    assert _paired(config, acquisitions["c1"][0], "T1 SE SAG post GD") == {"acq-2D_ce-gadolinium_T1w"}
    # the pre's descriptions share "t1 se sag", which the post's has too: only its descriptions as labelled
    pre = [d for d in config["descriptions"] if d["suffix"] == "T1w" and d.get("custom_entities") == "acq-2D"]
    assert pre and all(d["criteria"]["SeriesDescription"] == {"any": ["T1 SE SAG", "t1_se_sag"]} for d in pre)
    assert problems == []
    assert _paired(config, acquisitions["a3"][0], "t1_se_sag") == {"acq-2D_T1w"}
    assert _paired(config, acquisitions["a3"][0], "t1_se_sag_2") == set()  # missed, not misnamed


def test_reusable_rules_report_an_overlap_instead_of_guessing():
    from SeriesClassifierLib.labels.bids import reusable_dcm2bids_config

    # the same protocol, the same name, labelled T1_2D_PRE at one visit and T1_2D_POST at the other
    records = [rec("a", "T1_2D_PRE", 3, "P-1", "S1", description="t1_se_tra"),
               rec("b", "T1_2D_POST", 3, "P-2", "S2", description="t1_se_tra")]
    acquisitions = {"a": _acq("*se2d1", 12, 550, 90), "b": _acq("*se2d1", 12, 560, 90)}
    config, problems = reusable_dcm2bids_config(records, acquisitions=acquisitions)
    assert config["descriptions"] == []
    assert len(problems) == 2 and any("T1_2D_POST" in p for p in problems) and any("T1_2D_PRE" in p for p in problems)
