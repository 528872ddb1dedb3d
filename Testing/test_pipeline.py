from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from dicom_factory import SAGITTAL, read_toy_corpus, recipe_headers, write_classic_series, write_sr

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import iter_series_refs
from SeriesClassifierLib.models.bundle import ModelBundle, load_bundle
from SeriesClassifierLib.models.ensemble import EnsembleParams, combine
from SeriesClassifierLib.models.forest import ForestModel
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.run.pipeline import classify
from SeriesClassifierLib.training.model_card import write_model_card


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    series, y = read_toy_corpus(root / "train", n_per_class=6, seed=1)
    contrast = ["PRE"] * (len(y) - 3) + ["POST"] * 3
    forest = ForestModel(n_estimators=30).fit(series, {"sequence": y, "contrast": contrast})
    forest.save(root / "models", extra={"version": "test"})
    params = EnsembleParams(review_threshold=0.6)
    params.save(root / "models")
    write_model_card(root / "models", forest, params, None, {"data": "toy", "n_series": len(y)}, "test")
    return root / "models"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(5)
    truth = {}
    for cls in ("T2_2D", "FLAIR_2D", "DWI", "T1_3D_PRE"):
        uid, _ = write_classic_series(root / cls, recipe_headers(cls, rng), n=5, iop=SAGITTAL,
                                      description=f"series {cls}")
        truth[uid] = cls
    truth[write_sr(root / "sr.dcm")] = None
    (root / "notes.txt").write_text("x")
    broken = root / "FLAIR_2D" / "000.dcm"
    broken.write_bytes(broken.read_bytes()[:600])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series_uid", "sequence", "orientation", "profile"])
        for uid, cls in truth.items():
            if cls:
                w.writerow([uid, cls, "SAGITTAL", "toy"])
    return root, truth


def test_load_bundle_finds_the_forest(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.model_names == ["forest"] and bundle.cnn is None
    assert bundle.ensemble.review_threshold == 0.6
    assert "forest-test" in bundle.version and "# SeriesClassifier models" in bundle.card


def test_load_bundle_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_bundle(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no models here"):
        load_bundle(tmp_path)


def test_classify_yields_one_prediction_per_series(bundle_dir, study, caplog):
    root, truth = study
    seen = []
    predictions = list(classify(root, load_bundle(bundle_dir), progress=lambda d, t, uid: seen.append((d, t))))
    assert {p.series_uid for p in predictions} == set(truth)
    assert seen[-1] == (len(truth), len(truth))
    for p in predictions:
        if truth[p.series_uid] is None:
            assert p.error.startswith("skipped: structured report")
            continue
        assert p.error is None
        assert p.sequence.label == truth[p.series_uid]
        assert p.orientation.label == "SAGITTAL"
        assert "forest" in p.models and p.model_version
        assert any("→" in r for r in p.reasons)
        assert len(p.sequence.top(3)) == 3
    flair = next(p for p in predictions if truth[p.series_uid] == "FLAIR_2D")
    assert flair.n_images == 4  # the cut file is left out of its series…
    assert any("000.dcm" in r.getMessage() for r in caplog.records)  # …and named


def test_predictions_survive_json(bundle_dir, study):
    p = next(iter(classify(study[0], load_bundle(bundle_dir))))
    again = SeriesPrediction.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def tp(label, p, other="T2_2D"):
    return TaskPrediction.from_probabilities({label: p, other: 1 - p})


def test_ensemble_forest_only_cnn_only_and_both():
    forest = ModelOutput("forest", sequence=tp("FLAIR_2D", 0.9), orientation=TaskPrediction("AXIAL", 1.0, {"AXIAL": 1}))
    cnn = ModelOutput("cnn", sequence=tp("FLAIR_2D", 0.7), orientation=tp("SAGITTAL", 0.8, "AXIAL"))
    params = EnsembleParams(review_threshold=0.6)
    both = combine({"forest": forest, "cnn": cnn}, params)
    assert both.sequence.label == "FLAIR_2D" and both.sequence.probability == pytest.approx(0.8)
    assert both.orientation.label == "AXIAL"  # geometry wins
    assert not both.needs_review
    assert any("cnn sees SAGITTAL" in r for r in both.reasons)
    alone = combine({"cnn": cnn}, params)
    assert alone.orientation.label == "SAGITTAL" and alone.sequence.probability == pytest.approx(0.7)
    seq, ori, attrs, review, reasons = combine({"forest": forest}, params)  # unpacks like a tuple
    assert seq.label == "FLAIR_2D" and not review


def test_ensemble_flags_disagreement_and_low_confidence():
    params = EnsembleParams(review_threshold=0.6)
    a = ModelOutput("forest", sequence=tp("FLAIR_2D", 0.95))
    b = ModelOutput("cnn", sequence=tp("T2_2D", 0.9, "FLAIR_2D"))
    out = combine({"forest": a, "cnn": b}, params)
    assert out.needs_review and any("disagree" in r for r in out.reasons)
    spread = TaskPrediction.from_probabilities({"PD": 0.4, "T2_2D": 0.35, "FLAIR_2D": 0.25})
    low = combine({"forest": ModelOutput("forest", sequence=spread)}, params)
    assert low.needs_review and any("low confidence" in r for r in low.reasons)
    nothing = combine({}, params)
    assert nothing.needs_review and nothing.sequence is None


def test_pipeline_uses_a_cnn_when_the_bundle_has_one(bundle_dir, study):
    class FakeCnn:
        def predict(self, series):
            return ModelOutput("cnn", sequence=tp("PD", 0.99, "T2_2D"), slice_profile=[{"PD": 0.99}])

    bundle = load_bundle(bundle_dir)
    bundle.cnn = FakeCnn()
    p = next(p for p in classify(study[0], bundle) if p.error is None)
    assert set(p.models) == {"forest", "cnn"} and p.needs_review and p.slice_profile == [{"PD": 0.99}]
    q = next(p for p in classify(study[0], bundle, use_cnn=False) if p.error is None)
    assert set(q.models) == {"forest"}


def test_headers_stripped_leaves_the_cnn_to_answer_alone(bundle_dir, tmp_path):
    class FakeCnn:
        def predict(self, series):
            return ModelOutput("cnn", sequence=tp("FLAIR_2D", 0.9, "T2_2D"))

    rng = np.random.default_rng(3)
    stripped = ("RepetitionTime", "EchoTime", "ImageType", "ScanningSequence", "SequenceName", "b_values")
    headers = {k: v for k, v in recipe_headers("DWI", rng).items() if k not in stripped}
    write_classic_series(tmp_path / "s", headers, n=4, iop=SAGITTAL)
    bundle = load_bundle(bundle_dir)
    bundle.cnn = FakeCnn()
    (p,) = classify(tmp_path, bundle)
    assert set(p.models) == {"forest", "cnn"}  # the forest's guess is kept for the record ...
    assert p.sequence.label == "FLAIR_2D" and p.sequence.probability == pytest.approx(0.9)  # ... but not pooled
    assert any("forest left out" in r for r in p.reasons)
    bundle.cnn = None
    (q,) = classify(tmp_path, bundle)
    assert q.needs_review and any("the forest's answer is a guess" in r for r in q.reasons)


def test_pixels_alone_go_to_review_when_the_bundle_says_so(bundle_dir, study):
    class SureCnn:
        def predict(self, series):
            return ModelOutput("cnn", sequence=tp("FLAIR_2D", 0.99, "T2_2D"))

    bundle = load_bundle(bundle_dir)
    bundle.cnn = SureCnn()
    bundle.ensemble.review_threshold = 0.5
    assert any(not p.needs_review for p in classify(study[0], bundle, use_forest=False) if p.sequence)
    bundle.ensemble.review_alone = ["cnn"]  # as the shipped bundle: pixels alone are right too rarely
    predictions = [p for p in classify(study[0], bundle, use_forest=False) if p.sequence]
    assert predictions and all(p.needs_review and "only cnn answered: its answers alone always go to review"
                               in p.reasons for p in predictions)


def test_a_failing_model_does_not_stop_the_run(bundle_dir, study):
    class BrokenCnn:
        def predict(self, series):
            raise RuntimeError("boom")

    bundle = load_bundle(bundle_dir)
    bundle.cnn = BrokenCnn()
    predictions = [p for p in classify(study[0], bundle) if p.error is None]
    assert predictions and all(p.needs_review and any("cnn failed" in r for r in p.reasons) for p in predictions)
    assert all(p.sequence is not None for p in predictions)


def test_no_model_is_an_error_per_series(study):
    p = next(p for p in classify(study[0], ModelBundle()) if not (p.error or "").startswith("skipped"))
    assert "no model" in p.error


def test_cli_classify_csv_and_json(bundle_dir, study, tmp_path):
    root, truth = study
    assert main(["classify", str(root), "--out", str(tmp_path / "r.csv"), "--models", str(bundle_dir),
                 "--no-cnn", "--quiet"]) == 0
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(truth)
    for col in ("series_uid", "study_uid", "series_description", "n_images", "predicted_sequence",
                "predicted_sequence_probability", "predicted_top3", "predicted_orientation",
                "predicted_orientation_probability", "needs_review", "attribute_contrast", "attribute_acquisition",
                "attribute_fat_suppressed", "attribute_derived"):
        assert col in rows[0]
    assert {r["predicted_sequence"] for r in rows if r["predicted_sequence"]} == {c for c in truth.values() if c}
    one = next(r for r in rows if r["predicted_sequence"])
    assert re.fullmatch(r"([A-Z0-9_]+:[01]\.\d{4};){0,2}[A-Z0-9_]+:[01]\.\d{4}", one["predicted_top3"])
    assert one["predicted_top3"].startswith(one["predicted_sequence"] + ":")
    assert one["needs_review"] in ("true", "false")
    assert main(["classify", str(root), "--out", str(tmp_path / "r.json"), "--models", str(bundle_dir),
                 "--quiet"]) == 0
    data = json.loads((tmp_path / "r.json").read_text())["series"]
    one = next(d for d in data if d["sequence"])
    assert one["predicted_top3"] and one["reasons"] and "forest" in one["models"]


def test_cli_refuses_bad_arguments(bundle_dir, study, tmp_path, capsys):
    assert main(["classify", str(study[0]), "--out", str(tmp_path / "r.txt"), "--models", str(bundle_dir)]) == 2
    assert main(["classify", str(study[0]), "--out", str(tmp_path / "r.csv"), "--no-cnn", "--no-forest"]) == 2
    assert main(["classify", str(tmp_path / "missing"), "--out", str(tmp_path / "r.csv"), "--models",
                 str(bundle_dir)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_evaluate_writes_metrics_and_pictures(bundle_dir, study, tmp_path):
    root, truth = study
    assert main(["classify", str(root), "--out", str(tmp_path / "r.json"), "--models", str(bundle_dir),
                 "--quiet"]) == 0
    for source in (str(tmp_path / "r.json"), str(root)):
        out = tmp_path / ("eval_json" if source.endswith(".json") else "eval_folder")
        assert main(["evaluate", source, "--labels", str(root / "labels.csv"), "--out", str(out),
                     "--models", str(bundle_dir)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["tasks"]["sequence"]["accuracy"] == 1.0
        assert metrics["tasks"]["orientation"]["accuracy"] == 1.0
        assert "ece" in metrics["tasks"]["sequence"] and metrics["per_profile"]["toy"]["n"] == 4
        assert (out / "confusion_sequence.png").stat().st_size > 1000


def test_cli_train_writes_a_loadable_bundle(study, tmp_path):
    root, truth = study
    # train on the toy study itself (4 classes): enough to check the command's plumbing
    out = tmp_path / "models"
    assert main(["train", "--data", str(root), "--out", str(out), "--no-cnn", "--n-estimators", "10",
                 "--holdout-profile", "nothing"]) == 0
    bundle = load_bundle(out)
    assert bundle.forest is not None and 0.5 <= bundle.ensemble.review_threshold <= 0.9
    assert "seriesclassifier train" in bundle.card or "Retrain" in bundle.card
    config = json.loads((out / "forest.json").read_text())
    assert config["training"]["n_series"] == 4 and config["version"]


def test_demo_generates_classifies_and_prints_a_table(monkeypatch, capsys, bundle_dir):
    from SeriesClassifierLib.synth import generate
    from SeriesClassifierLib.synth.flat import FlatPhantom, flat_render

    real = generate.generate_studies

    def fast(out_dir, n_studies, seed, profiles=None, **kwargs):
        return real(out_dir, n_studies, seed, profiles, make_phantom=lambda rng: FlatPhantom(), render=flat_render)

    monkeypatch.setattr(generate, "generate_studies", fast)
    assert main(["demo", "--models", str(bundle_dir), "--no-cnn", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "sequence" in out and "orientation" in out and "series match the generator's labels" in out
    assert len(out.splitlines()) > 8


@pytest.mark.torch
def test_cli_classify_writes_gradcam_on_the_series_grid(bundle_dir, study, tmp_path):
    import shutil

    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.models.gradcam import read_nrrd

    models = tmp_path / "models"
    shutil.copytree(bundle_dir, models)
    CnnModel.new().save(models)  # untrained: the geometry of the maps is what is checked here
    root, truth = study
    cams = tmp_path / "cams"
    assert main(["classify", str(root), "--out", str(tmp_path / "r.json"), "--models", str(models),
                 "--gradcam", str(cams), "--quiet"]) == 0
    series = {s.series_uid: s for s in (read_series(r) for r in iter_series_refs(root)) if not s.skipped}
    nrrds = sorted(cams.glob("*.nrrd"))
    assert len(nrrds) == len(series) and len(list(cams.glob("*.png"))) == len(series)
    for path in nrrds:
        uid = next(u for u in series if u in path.name)
        geometry = series[uid].geometry
        volume, header = read_nrrd(path)
        assert volume.shape == (len(geometry.positions), geometry.rows, geometry.columns)
        assert volume.min() >= 0.0 and volume.max() <= 1.0
        assert header["space"] == "left-posterior-superior"


@pytest.mark.torch
def test_cli_gradcam_only_for_the_series_asked(bundle_dir, study, tmp_path, capsys):
    """--gradcam-series / --gradcam-outcome: maps for those series only, and only they are classified again."""
    import shutil

    from SeriesClassifierLib.models.cnn import CnnModel

    models = tmp_path / "models"
    shutil.copytree(bundle_dir, models)
    CnnModel.new().save(models)
    root = tmp_path / "study"
    shutil.copytree(study[0], root)
    assert main(["classify", str(root), "--out", str(tmp_path / "r.json"), "--models", str(models), "--quiet"]) == 0
    results = {p["series_uid"]: p for p in json.loads((tmp_path / "r.json").read_text())["series"]}
    readable = sorted(uid for uid, p in results.items() if not p.get("error"))
    assert len(readable) >= 2
    asked = readable[0]
    capsys.readouterr()

    cams = tmp_path / "cams"
    assert main(["classify", str(root), "--out", str(tmp_path / "r2.json"), "--models", str(models),
                 "--gradcam", str(cams), "--gradcam-series", asked]) == 0
    assert {p.name for p in cams.glob("*.nrrd")} and all(asked in p.name for p in cams.glob("*"))
    # the other series come from the store: one series is classified again, not the study
    assert f"classifying 1 series ({len(results) - 1} unchanged, from the store)" in capsys.readouterr().err

    by_number = tmp_path / "by_number"
    number = str(results[readable[1]]["series_number"])
    assert main(["classify", str(root), "--models", str(models), "--gradcam", str(by_number),
                 "--gradcam-series", number, "--quiet"]) == 0
    numbered = {uid for uid in readable if str(results[uid]["series_number"]) == number}  # one per study
    assert {uid for uid in readable if any(uid in p.name for p in by_number.glob("*.nrrd"))} == numbered

    review = tmp_path / "review"
    assert main(["classify", str(root), "--out", str(tmp_path / "r3.json"), "--models", str(models),
                 "--gradcam", str(review), "--gradcam-outcome", "review", "--quiet"]) == 0
    outcomes = {p["series_uid"]: p["outcome"] for p in json.loads((tmp_path / "r3.json").read_text())["series"]}
    mapped = {uid for uid in outcomes if any(uid in p.name for p in review.glob("*.nrrd"))}
    assert mapped == {uid for uid, outcome in outcomes.items() if outcome == "review"}


def test_gradcam_selection_names_series_by_uid_or_number_and_outcome():
    from SeriesClassifierLib.run.stream import GradcamSelection

    review = SeriesPrediction("1.2.3", series_number=7, needs_review=True,
                              sequence=TaskPrediction.from_probabilities({"T2_2D": 0.5, "PD": 0.5}))
    sure = SeriesPrediction("1.2.4", series_number=8, sequence=TaskPrediction.from_probabilities({"T2_2D": 1.0}))
    assert GradcamSelection().wants(review) and GradcamSelection().wants(sure)
    assert GradcamSelection(frozenset({"7"})).wants(review) and not GradcamSelection(frozenset({"7"})).wants(sure)
    assert GradcamSelection(frozenset({"1.2.4"})).wants(sure)
    only_review = GradcamSelection(outcomes=frozenset({"review"}))
    assert only_review.wants(review) and not only_review.wants(sure)


def test_cli_gradcam_filters_need_gradcam(bundle_dir, study, tmp_path, capsys):
    assert main(["classify", str(study[0]), "--models", str(bundle_dir), "--gradcam-outcome", "review",
                 "--quiet"]) == 2
    assert "give --gradcam too" in capsys.readouterr().err


def test_cli_gradcam_without_a_cnn_is_refused(bundle_dir, study, tmp_path, capsys):
    assert main(["classify", str(study[0]), "--out", str(tmp_path / "r.csv"), "--models", str(bundle_dir),
                 "--gradcam", str(tmp_path / "cams"), "--quiet"]) == 2
    assert "needs the CNN" in capsys.readouterr().err


def _confident(model: str, label: str, novelty: list[str] | None = None) -> ModelOutput:
    return ModelOutput(model=model, sequence=TaskPrediction.from_probabilities({label: 0.99, "OTHER": 0.01}),
                       novelty=list(novelty or []))


def _read_one(root, cls, **extra):
    rng = np.random.default_rng(3)
    headers = {**recipe_headers(cls, rng), **extra}
    write_classic_series(root, headers, n=3, iop=SAGITTAL, description="")
    return read_series(next(iter_series_refs(root)))


def test_decide_sends_a_non_brain_series_and_novelty_to_review_with_the_reason(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.5), version="t")
    knee = _read_one(tmp_path / "knee", "T2_2D", BodyPartExamined="KNEE")
    p = decide(knee, {"forest": _confident("forest", "T2_2D")}, bundle)
    assert p.sequence.label == "T2_2D" and p.needs_review
    assert any("'KNEE'" in r for r in p.reasons)
    head = _read_one(tmp_path / "head", "T2_2D", BodyPartExamined="HEAD")
    assert not decide(head, {"forest": _confident("forest", "T2_2D")}, bundle).needs_review
    strange = decide(head, {"forest": _confident("forest", "T2_2D", ["header terms rare or absent: ss:RM"])}, bundle)
    assert strange.needs_review and "forest: header terms rare or absent: ss:RM" in strange.reasons


def test_decide_moves_a_pre_contrast_t1_to_post_when_its_header_names_an_agent(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.5), version="t")
    t1 = _read_one(tmp_path / "t1", "T1_3D_PRE", ContrastBolusAgent="Magnevist")
    p = decide(t1, {"forest": _confident("forest", "T1_3D_PRE")}, bundle)
    assert p.sequence.label == "T1_3D_POST"
    assert any(r.startswith("post-contrast from the study: its ContrastBolusAgent") for r in p.reasons)


def test_predict_all_is_the_loop_classify_runs(bundle_dir, tmp_path):
    """classify = read_all_series + predict_all: the same predictions, in the same order, with progress."""
    from SeriesClassifierLib.run.pipeline import predict_all, read_all_series, resolve_refs

    root = tmp_path / "study"
    write_classic_series(root / "a", recipe_headers("T2_2D", np.random.default_rng(1)), n=3)
    write_classic_series(root / "b", recipe_headers("DWI", np.random.default_rng(2)), n=4, iop=SAGITTAL)
    bundle = load_bundle(bundle_dir, load_cnn=False)
    seen = []
    via_classify = [p.to_dict() for p in classify(root, bundle, use_cnn=False)]
    pairs = list(predict_all(read_all_series(resolve_refs(root)), bundle, use_cnn=False,
                             progress=lambda done, total, uid: seen.append((done, total))))
    assert [p.to_dict() for _, p in pairs] == via_classify
    assert [s.series_uid for s, _ in pairs] == [p["series_uid"] for p in via_classify]
    assert seen == [(1, 2), (2, 2)]


def test_the_review_reason_names_the_answer_after_the_study_context(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.9), version="t")
    t1 = _read_one(tmp_path / "t1", "T1_3D_PRE", ContrastBolusAgent="Magnevist")
    unsure = ModelOutput(model="forest",
                         sequence=TaskPrediction.from_probabilities({"T1_3D_PRE": 0.6, "T1_3D_POST": 0.4}))
    p = decide(t1, {"forest": unsure}, bundle)
    assert p.sequence.label == "T1_3D_POST" and p.needs_review
    assert any(r.startswith("low confidence T1_3D_POST 0.60") for r in p.reasons)
    assert not any("low confidence T1_3D_PRE" in r for r in p.reasons)


def test_decide_says_unknown_when_the_models_cannot_tell_and_keeps_the_guess(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.6, unknown_threshold=0.45), version="t")
    head = _read_one(tmp_path / "head", "T2_2D", BodyPartExamined="BRAIN")
    guess = ModelOutput(model="forest",
                        sequence=TaskPrediction.from_probabilities({"T2_2D": 0.4, "PD": 0.35, "FLAIR_2D": 0.25}))
    p = decide(head, {"forest": guess}, bundle)
    assert p.outcome == "unknown" and p.needs_review
    assert p.sequence.label == "T2_2D"  # the reviewer still sees the best guess
    assert "best guess T2_2D at 0.40" in p.unknown
    unsure = ModelOutput(model="forest", sequence=TaskPrediction.from_probabilities({"T2_2D": 0.55, "PD": 0.45}))
    assert decide(head, {"forest": unsure}, bundle).outcome == "review"
    assert decide(head, {"forest": _confident("forest", "T2_2D")}, bundle).outcome == "classified"


def test_a_non_brain_series_is_unknown_whatever_the_confidence(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.5), version="t")
    knee = _read_one(tmp_path / "knee", "T2_2D", BodyPartExamined="KNEE")
    p = decide(knee, {"forest": _confident("forest", "T2_2D")}, bundle)
    assert p.outcome == "unknown" and p.unknown.startswith("not brain MR") and "'KNEE'" in p.unknown


def test_a_stripped_header_with_no_image_is_unknown(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.5), version="t")
    bare = _read_one(tmp_path / "bare", "T2_2D")
    for key in ("RepetitionTime", "EchoTime", "ImageType", "ScanningSequence", "SequenceName"):
        bare.header.pop(key, None)
    p = decide(bare, {"forest": _confident("forest", "T2_2D")}, bundle)
    assert p.outcome == "unknown" and p.unknown.startswith("nothing to read")


def test_an_unfamiliar_cnn_is_left_out_beside_the_forest_and_alone_is_a_guess(tmp_path):
    from SeriesClassifierLib.run.pipeline import decide

    def bundle(votes: bool) -> ModelBundle:
        return ModelBundle(ensemble=EnsembleParams(review_threshold=0.5, method="log_linear", unfamiliar_votes=votes,
                                                   weights={"forest": 1.0, "cnn": 1.0}), version="t")

    head = _read_one(tmp_path / "head", "T2_2D", BodyPartExamined="HEAD")
    cnn = _confident("cnn", "DWI")
    cnn.unfamiliar = "images unlike its training images"
    outputs = {"forest": _confident("forest", "T2_2D"), "cnn": cnn}
    p = decide(head, outputs, bundle(False))
    assert p.sequence.label == "T2_2D" and not any(r.startswith("models disagree") for r in p.reasons)
    assert "cnn: images unlike its training images; left out of the vote" in p.reasons
    assert set(p.models) == {"forest", "cnn"} and p.unknown is None  # its answer is kept for the record
    voting = decide(head, outputs, bundle(True))  # a bundle may keep its vote: then its dissent counts
    assert voting.outcome == "review" and any(r.startswith("models disagree") for r in voting.reasons)
    alone = decide(head, {"cnn": cnn}, bundle(False))
    assert alone.sequence.label == "DWI" and alone.outcome == "unknown"
    assert "has not seen anything like this series" in alone.unknown


