"""The exported dcm2bids config and heudiconv heuristic, run with the real tools on a small study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bids_tools import niftis, run_dcm2bids, run_heudiconv
from dicom_factory import AXIAL, SAGITTAL, recipe_headers, write_classic_series

from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction

# (series number, predicted, corrected, plane, recipe for the headers)
STUDY = [
    (1, "T1_3D_POST", None, SAGITTAL, "T1_3D_PRE"),
    (2, "FLAIR_2D", None, AXIAL, "FLAIR_2D"),
    (3, "FLAIR_2D", None, AXIAL, "FLAIR_2D"),
    (4, "FLAIR_2D", "T2_2D", AXIAL, "T2_2D"),  # the model was wrong; the correction must win
    (5, "SCOUT", None, AXIAL, "T1_2D_PRE"),  # no BIDS mapping: not converted
    (6, "ADC", None, AXIAL, "T2_2D"),  # derived: left out of raw BIDS by default
    (10, "DWI", None, AXIAL, "DWI"),  # what the field map corrects: listed in its IntendedFor
]
EXPECTED = {
    1: "sub-01/anat/sub-01_acq-3D_ce-gadolinium_T1w.nii.gz",
    2: "sub-01/anat/sub-01_acq-2D_run-01_FLAIR.nii.gz",
    3: "sub-01/anat/sub-01_acq-2D_run-02_FLAIR.nii.gz",
    4: "sub-01/anat/sub-01_acq-2D_T2w.nii.gz",
    # a Siemens-style field map: a magnitude series with two echoes (7) and a phase series (8)
    7: "sub-01/fmap/sub-01_magnitude1.nii.gz",
    77: "sub-01/fmap/sub-01_magnitude2.nii.gz",
    8: "sub-01/fmap/sub-01_phasediff.nii.gz",
    # a PD/T2 dual-echo series (9): one series, two echoes -> echo-1 and echo-2, not two runs
    9: "sub-01/anat/sub-01_echo-1_PDw.nii.gz",
    99: "sub-01/anat/sub-01_echo-2_PDw.nii.gz",
    10: "sub-01/dwi/sub-01_dwi.nii.gz",
}
FIELDMAP = dict(ScanningSequence=["GR"], SequenceVariant=["SP"], RepetitionTime=488.0, FlipAngle=60.0,
                MRAcquisitionType="2D", SequenceName="*fm2d2r")


def _write_fieldmap(dicom: Path) -> list[tuple[str, int]]:
    magnitude = None
    for echo, te in ((1, 4.92), (2, 7.38)):  # one series, two echoes at the same positions
        headers = dict(FIELDMAP, SeriesNumber=7, EchoNumbers=echo, EchoTime=te,
                       ImageType=["ORIGINAL", "PRIMARY", "M", "ND"])
        magnitude, _ = write_classic_series(dicom / "s7", headers, n=4, iop=AXIAL, study_uid="1.2.3.4",
                                            series_uid=magnitude, description="gre_field_mapping",
                                            name_files=f"e{echo}_" + "{i:03d}.dcm")
    headers = dict(FIELDMAP, SeriesNumber=8, EchoNumbers=2, EchoTime=7.38, ImageType=["ORIGINAL", "PRIMARY", "P", "ND"])
    phase, _ = write_classic_series(dicom / "s8", headers, n=4, iop=AXIAL, study_uid="1.2.3.4",
                                    description="gre_field_mapping")
    return [(magnitude, 7), (phase, 8)]


def _write_dual_echo(dicom: Path) -> str:
    uid = None
    for echo, te in ((1, 12.0), (2, 90.0)):
        headers = dict(ScanningSequence=["SE"], SequenceVariant=["SK"], RepetitionTime=3000.0, FlipAngle=90.0,
                       MRAcquisitionType="2D", SeriesNumber=9, EchoNumbers=echo, EchoTime=te, EchoTrainLength=7,
                       ImageType=["ORIGINAL", "PRIMARY", "M", "ND"])
        uid, _ = write_classic_series(dicom / "s9", headers, n=4, iop=AXIAL, study_uid="1.2.3.4", series_uid=uid,
                                      description="pd_t2_tse_dual", name_files=f"e{echo}_" + "{i:03d}.dcm")
    return uid


# heudiconv's usage telemetry would try the network: off, so an offline CI never waits on it
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids_tools")
    dicom = root / "dicom"
    store = LabelStore(root / "labels.sqlite")
    rng = __import__("numpy").random.default_rng(3)
    predictions, corrections = [], {}
    for number, predicted, corrected, plane, recipe in STUDY:
        headers = recipe_headers(recipe, rng)
        headers["SeriesNumber"] = number
        uid, _ = write_classic_series(
            dicom / f"s{number}", headers, n=4, iop=plane, study_uid="1.2.3.4", description=f"series {number}"
        )
        probabilities = {predicted: 0.8, "OTHER": 0.2}
        predictions.append(
            SeriesPrediction(uid, "1.2.3.4", "P1", number, f"series {number}",
                             sequence=TaskPrediction.from_probabilities(probabilities))
        )
        if corrected:
            corrections[uid] = corrected
    for uid, number in _write_fieldmap(dicom):
        predictions.append(SeriesPrediction(uid, "1.2.3.4", "P1", number, "gre_field_mapping",
                                            sequence=TaskPrediction.from_probabilities({"FIELDMAP": 0.9})))
    predictions.append(SeriesPrediction(_write_dual_echo(dicom), "1.2.3.4", "P1", 9, "pd_t2_tse_dual",
                                        sequence=TaskPrediction.from_probabilities({"PD": 0.9})))
    store.record_predictions(predictions)
    for uid, code in corrections.items():
        store.correct(uid, sequence=code, user="tester", source="cli")
    records = store.records()
    store.close()
    return root, dicom, records


@pytest.mark.slow
def test_dcm2bids_reproduces_the_labels(study):
    root, dicom, records = study
    out, result = run_dcm2bids(records, dicom, root)
    assert niftis(out) == set(EXPECTED.values()), result.stdout[-3000:]
    for name in EXPECTED.values():
        assert (out / name.replace(".nii.gz", ".json")).exists()
    # the field map says what it corrects (dcm2bids writes BIDS URIs from the config's ids)
    intended = json.loads((out / EXPECTED[8].replace(".nii.gz", ".json")).read_text())["IntendedFor"]
    assert intended in ("bids::" + EXPECTED[10], ["bids::" + EXPECTED[10]])  # BIDS allows a string or a list
    # the sidecars stay anonymous (dcm2niix -ba y)
    sidecar = (out / EXPECTED[1].replace(".nii.gz", ".json")).read_text()
    assert "PatientName" not in sidecar and "P1" not in sidecar


@pytest.mark.slow
def test_heudiconv_reproduces_the_labels(study):
    root, dicom, records = study
    out, result = run_heudiconv(records, sorted(str(p) for p in dicom.rglob("*.dcm")), root)
    assert niftis(out) == set(EXPECTED.values()), result.stderr[-3000:]
    intended = json.loads((out / EXPECTED[8].replace(".nii.gz", ".json")).read_text())["IntendedFor"]
    intended = [intended] if isinstance(intended, str) else intended
    # heudiconv lists every image of the session it finds closest to the field map; the DWI among them
    assert EXPECTED[10].split("sub-01/", 1)[1] in [p.split("sub-01/", 1)[-1] for p in intended]


@pytest.mark.slow
def test_reusable_dcm2bids_rules_reproduce_the_labels_without_uids(study):
    """Rules from what each name's series share (the acquisition; the description where another name's series
    share that): no UID inside, and on this study they give the same tree as the exact config."""
    import json

    from bids_tools import acquisitions_of, run_dcm2bids_with

    from SeriesClassifierLib.labels.bids import reusable_dcm2bids_config

    root, dicom, records = study
    config, problems = reusable_dcm2bids_config(records, acquisitions=acquisitions_of(dicom))
    text = json.dumps(config)
    assert problems == [] and not any(r.series_uid in text for r in records)
    out, result = run_dcm2bids_with(config, dicom, root / "reusable")
    assert niftis(out) == set(EXPECTED.values()), result.stdout[-3000:]
