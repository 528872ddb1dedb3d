"""What a header's own physics rules out: a ruled-out answer is restricted, and a person confirms it."""

from __future__ import annotations

import json

import pytest

from SeriesClassifierLib.models.bundle import ModelBundle
from SeriesClassifierLib.models.ensemble import EnsembleParams
from SeriesClassifierLib.models.physics import hard_facts
from SeriesClassifierLib.models.plausibility import apply_physics_rules
from SeriesClassifierLib.prediction import ModelOutput, TaskPrediction
from SeriesClassifierLib.resources import resource_path
from SeriesClassifierLib.run.pipeline import decide
from SeriesClassifierLib.series import Series
from SeriesClassifierLib.vocabulary import load_vocabulary

# a Siemens PD/T2 dual-echo turbo spin echo at a 64-pixel matrix (dcm_qa_pdt2), which the forest read as ASL
TSE = {"Manufacturer": "SIEMENS", "MRAcquisitionType": "2D", "ScanningSequence": ["SE"],
       "SequenceVariant": ["SK", "SP", "OSP"], "SequenceName": "*tse2d2_5", "RepetitionTime": 4320.0,
       "EchoTime": 11.0, "EchoTimes": [11.0, 92.0], "FlipAngle": 160.0, "Rows": 64, "Columns": 64}
# a Philips single-shot diffusion image (DwiSE, b = 1500), which the forest read as FLAIR for its TR and TE
PHILIPS_DWI = {"Manufacturer": "Philips", "MRAcquisitionType": "2D", "ScanningSequence": ["SE"],
               "PhilipsScanningTechnique": "DwiSE", "BValues": [1500.0], "RepetitionTime": 10000.0,
               "EchoTime": 117.0}


def _series(header: dict) -> Series:
    return Series(series_uid="1.2.3", study_uid="1.2", files=[], header=dict(header))


def test_facts_need_positive_evidence():
    assert set(hard_facts(TSE)) == {"two_d_without_epi", "spin_echo_without_gradient_echo"}
    assert set(hard_facts(PHILIPS_DWI)) == {"diffusion_weighted", "diffusion_sequence"}  # DwiSE is echo-planar
    # a Siemens b = 0 image of a diffusion run is still part of a diffusion series
    assert set(hard_facts({"SequenceName": "*ep_b0", "ScanningSequence": ["EP"]})) == {"diffusion_sequence"}
    # an EPI readout, a b = 0 placeholder, or an enhanced object without ScanningSequence states nothing
    assert hard_facts({**TSE, "ScanningSequence": ["EP"], "SequenceName": "*epfid2d1_64"}) == {}
    assert hard_facts({"BValues": [0.0], "MRAcquisitionType": "3D"}) == {}
    assert hard_facts({"MRAcquisitionType": "2D", "EchoPulseSequence": "SPIN"}) == {}


def test_a_2d_tse_answered_asl_is_restricted_to_what_remains():
    answer = TaskPrediction.from_probabilities({"PERFUSION_ASL": 0.6, "FIELDMAP": 0.2, "PD": 0.12, "FMRI_BOLD": 0.05,
                                                "T2_2D": 0.03})
    restricted, why, confirm = apply_physics_rules(answer, _series(TSE))
    assert restricted.label == "PD" and confirm  # neither an EPI run nor a gradient-echo field map
    assert restricted.probabilities["PD"] == pytest.approx(0.12 / 0.15)
    assert not {"PERFUSION_ASL", "FMRI_BOLD", "FIELDMAP"} & set(restricted.probabilities)
    assert "rules out PERFUSION_ASL" in why and "tse2d2_5" in why


def test_a_projection_can_only_be_a_mip_or_a_minip():
    # a subtraction MIP of a dynamic series, which the forest read as the T1 it was made from
    mip = {"MRAcquisitionType": "3D", "ScanningSequence": ["GR"], "ImageType": ["DERIVED", "PRIMARY", "MIP_COR"]}
    answer = TaskPrediction.from_probabilities({"T1_3D_POST": 0.7, "MRA_MIP": 0.2, "TOF_MRA": 0.1})
    restricted, why, confirm = apply_physics_rules(answer, _series(mip))
    assert restricted.label == "MRA_MIP" and restricted.probability == pytest.approx(1.0) and confirm
    assert "ImageType MIP_COR" in why


def test_a_service_program_can_only_be_other():
    # a Siemens service sequence on a sphere phantom (SequenceVariant SERVICE), which the forest read as T1 SE
    service = {"Manufacturer": "SIEMENS", "SiemensSequenceFile": "%ServiceSeq%\\sn", "SequenceVariant": ["SP"]}
    answer = TaskPrediction.from_probabilities({"T1_2D_PRE": 0.75, "OTHER": 0.05, "PD": 0.2})
    restricted, why, confirm = apply_physics_rules(answer, _series(service))
    assert restricted.label == "OTHER" and confirm and "%ServiceSeq%" in why
    assert "service_sequence" in hard_facts({"SequenceVariant": ["SERVICE", "SP"]})
    assert "service_sequence" not in hard_facts({"SiemensSequenceFile": "%SiemensSeq%\\tse"})


def test_an_answer_the_facts_allow_is_left_alone():
    answer = TaskPrediction.from_probabilities({"PD": 0.6, "PERFUSION_ASL": 0.4})
    assert apply_physics_rules(answer, _series(TSE)) == (answer, None, False)


def test_the_decision_sends_a_ruled_out_answer_to_review_with_the_evidence():
    forest = ModelOutput(model="forest", sequence=TaskPrediction.from_probabilities(
        {"FLAIR_2D": 0.55, "DWI": 0.3, "T2_2D": 0.15}))
    bundle = ModelBundle(ensemble=EnsembleParams(method="log_linear", weights={"forest": 1.0}, review_threshold=0.5),
                         version="test")
    p = decide(_series(PHILIPS_DWI), {"forest": forest}, bundle)
    assert p.sequence.label == "DWI" and p.needs_review
    assert any("b = 1500 s/mm²" in r for r in p.reasons)


def test_every_labelled_class_of_the_rules_exists(tmp_path):
    assert [r.fact for r in load_vocabulary().physics_rules] == [
        "diffusion_weighted", "diffusion_sequence", "two_d_without_epi", "spin_echo_without_gradient_echo",
        "projection", "service_sequence", "steady_run", "label_control_pairs"]
    data = json.loads(resource_path("vocabulary.json").read_text())
    data["physics_rules"][2]["never"].append("PERFUSION_DCE")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="PERFUSION_DCE"):
        load_vocabulary(path)
