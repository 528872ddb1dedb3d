from __future__ import annotations

import ast
import json

from SeriesClassifierLib.labels.bids import bids_label, bids_names, dcm2bids_config, heudiconv_heuristic, subject_labels
from SeriesClassifierLib.labels.store import derive_record
from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction


def rec(uid, sequence, number, patient="P-1", study="S1"):
    p = SeriesPrediction(
        uid, study, patient, number, f"desc {number}", sequence=TaskPrediction.from_probabilities({sequence: 1.0})
    )
    return derive_record(uid, p, "m", [])


def test_names_follow_vocabulary_and_bids_entity_order():
    names = bids_names([rec("1", "T1_3D_POST", 3), rec("2", "SWI_PHASE", 4), rec("3", "FMRI_BOLD", 5)],
                       anonymise=False)
    assert names["1"].filename == "sub-P1/anat/sub-P1_acq-3D_ce-gadolinium_T1w.nii.gz"
    assert names["2"].stem == "sub-P1_part-phase_swi"
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
    names = bids_names([rec("1.2.3", "T1_3D_PRE", 1), rec("1.2.30", "FMRI_BOLD", 2)])
    config = json.loads(json.dumps(dcm2bids_config(names)))
    assert "-ba y" in config["dcm2niixOptions"] and "%j" in config["dcm2niixOptions"]
    first, second = config["descriptions"]
    assert first["criteria"]["SidecarFilename"]["any"] == ["*_1.2.3.json", "*_1.2.3_*.json"]  # not 1.2.30
    assert first["custom_entities"] == "acq-3D" and first["datatype"] == "anat"
    assert second["sidecar_changes"] == {"TaskName": "rest"}


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
