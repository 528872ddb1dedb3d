"""A study from the generator (vendor headers, multi-file outputs such as SWI phase, DWI with b-values):
predictions in the store, the generator's labels.csv imported as corrections, the configs exported,
and dcm2bids and heudiconv run on the DICOM. The BIDS trees must hold exactly the labelled series."""

from __future__ import annotations

import csv

import pytest
from bids_tools import niftis, run_dcm2bids, run_heudiconv

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import iter_series_refs
from SeriesClassifierLib.labels.bids import bids_names
from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from SeriesClassifierLib.synth.generate import generate_studies

    root = tmp_path_factory.mktemp("generated")
    generate_studies(root / "dicom", n_studies=1, seed=5)
    truth = {r["series_uid"]: r for r in csv.DictReader((root / "dicom" / "labels.csv").open())}
    store_path = root / "labels.sqlite"
    predictions = []
    for ref in iter_series_refs(root / "dicom"):
        s = read_series(ref)
        # a model that calls everything T2_2D: the imported labels must win
        predictions.append(SeriesPrediction(
            s.series_uid, s.study_uid, s.patient_id, s.series_number, s.series_description, n_images=s.n_images,
            image_type=list(s.header.get("ImageType") or []),
            sequence=TaskPrediction.from_probabilities({"T2_2D": 0.6, "OTHER": 0.4})))
    with LabelStore(store_path) as store:
        store.record_predictions(predictions)
    assert main(["label", "--import", str(root / "dicom" / "labels.csv"), "--store", str(store_path)]) == 0
    with LabelStore(store_path) as store:
        records = store.records()
    assert {r.series_uid for r in records} == set(truth)
    assert all(r.sequence == truth[r.series_uid]["sequence"] for r in records)
    names = bids_names(records, anonymise=True)
    expected = set()
    for n in names.values():
        if n.derived or not n.in_raw_tree:
            continue
        if n.suffix == "phasediff":  # the configs split a field map per file (magnitude echoes, phase)
            expected |= {n.filename.replace("_phasediff.", f"_{s}.") for s in ("magnitude1", "magnitude2")}
            expected.add(n.filename)
        else:
            expected.add(n.filename)
    assert expected, "the generated study has no series with a raw BIDS mapping"
    return root, records, expected


@pytest.mark.slow
def test_dcm2bids_on_a_generated_study(generated):
    root, records, expected = generated
    out, result = run_dcm2bids(records, root / "dicom", root, timeout=300)
    assert niftis(out) == expected, result.stdout[-4000:]
    dwi = [name for name in expected if "/dwi/" in name and name.endswith("_dwi.nii.gz")]
    for name in dwi:  # diffusion gradients travel with the image
        assert (out / name.replace(".nii.gz", ".bval")).exists()


@pytest.mark.slow
def test_heudiconv_on_a_generated_study(generated):
    root, records, expected = generated
    files = sorted(str(p) for p in (root / "dicom").rglob("*") if p.is_file() and p.suffix != ".csv")
    out, result = run_heudiconv(records, files, root, timeout=300)
    assert niftis(out) == expected, result.stderr[-4000:]


@pytest.mark.slow
def test_reusable_heudiconv_heuristic_classifies_a_study_it_was_not_made_from(generated, tmp_path):
    """The reusable heuristic carries no series UIDs: heudiconv runs the classifier on each series of a study
    it has never seen and places it where ``export`` would (each series on its own, like the heuristic)."""
    import shutil

    from bids_tools import names_outside_schema, run_heudiconv_with

    from SeriesClassifierLib.labels.store import derive_record
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.run.pipeline import predict_series

    root, _, _ = generated
    # the forest alone, so this process (which may have no torch) and heudiconv's Python agree on the models
    models = tmp_path / "models"
    shutil.copytree(default_models_dir(), models, ignore=shutil.ignore_patterns("cnn.*"))
    heuristic = tmp_path / "heuristic.py"
    assert main(["export", "--format", "heudiconv", "--reusable", "--models", str(models),
                 "--out", str(heuristic)]) == 0
    text = heuristic.read_text()
    refs = list(iter_series_refs(root / "dicom"))
    assert not any(ref.series_uid in text for ref in refs) and f"MODELS = {str(models)!r}" in text
    bundle = load_bundle(models)
    records = [derive_record(r.series_uid, predict_series(read_series(r), bundle), "", []) for r in refs]
    expected = set()
    names = bids_names(records)
    for n in names.values():
        if n.derived or not n.in_raw_tree:
            continue
        if n.suffix == "phasediff":
            expected |= {n.filename.replace("_phasediff.", f"_{s}.") for s in ("magnitude1", "magnitude2")}
        expected.add(n.filename)
    assert len(expected) >= 3
    files = sorted(str(p) for p in (root / "dicom").rglob("*") if p.is_file() and p.suffix != ".csv")
    out, result = run_heudiconv_with(heuristic, files, tmp_path, tmp_path / "bids", timeout=600)
    assert niftis(out) == expected, result.stderr[-4000:]
    assert names_outside_schema(sorted(expected)) == []


def _truth_records(dicom) -> list:
    """Records of a generated study labelled by the generator itself (ImageType from the headers)."""
    from SeriesClassifierLib.labels.store import derive_record

    truth = {r["series_uid"]: r for r in csv.DictReader((dicom / "labels.csv").open())}
    records = []
    for ref in iter_series_refs(dicom):
        s = read_series(ref)
        p = SeriesPrediction(s.series_uid, s.study_uid, s.patient_id, s.series_number, s.series_description,
                             image_type=list(s.header.get("ImageType") or []),
                             sequence=TaskPrediction.from_probabilities({truth[s.series_uid]["sequence"]: 1.0}))
        records.append(derive_record(s.series_uid, p, "", []))
    return records


@pytest.mark.slow
def test_reusable_dcm2bids_rules_convert_a_study_they_were_not_made_from(generated, tmp_path):
    """Rules made from three generated studies of a site profile, run on a fourth of the same profile: what they
    convert lands where that study's own labels say; nothing is placed under a wrong name."""
    from bids_tools import acquisitions_of, run_dcm2bids_with

    from SeriesClassifierLib.labels.bids import reusable_dcm2bids_config
    from SeriesClassifierLib.synth.generate import generate_studies

    root, _, _ = generated
    profile = next(csv.DictReader((root / "dicom" / "labels.csv").open()))["profile"]
    generate_studies(tmp_path / "site", n_studies=3, seed=7, profiles=[profile])
    config, _problems = reusable_dcm2bids_config(_truth_records(tmp_path / "site"),
                                                 acquisitions=acquisitions_of(tmp_path / "site"))
    other = tmp_path / "other"
    generate_studies(other, n_studies=1, seed=6, profiles=[profile])
    names = bids_names(_truth_records(other))
    wanted = {n.filename for n in names.values() if not n.derived and n.in_raw_tree}
    wanted |= {f.replace("_phasediff.", f"_magnitude{k}.") for f in wanted if "_phasediff." in f for k in (1, 2)}
    out, result = run_dcm2bids_with(config, other / "study_0000", tmp_path / "work", timeout=300)
    converted = niftis(out)
    assert converted and converted <= wanted, result.stdout[-3000:]
    print(f"reusable dcm2bids rules: {len(converted)} of {len(wanted)} files converted, none misplaced")
