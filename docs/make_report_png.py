"""Make docs/report.png: a contact sheet of generated studies, screenshotted in headless Chromium.

    python docs/make_report_png.py WORKDIR [--out docs/report.png] [--models DIR] [--title TEXT]

Generates two studies into WORKDIR (a Siemens and a Philips site), then classifies them with
the models in --models when given. Without trained models the predictions are *illustrative*:
built from the generator's ground truth with a few deliberate forest/CNN disagreements, so the
page shows every state (agreement, disagreement, needs review, corrected, accepted).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np

from SeriesClassifierLib.commands.cli import main as cli
from SeriesClassifierLib.dicom.headers import read_series
from SeriesClassifierLib.dicom.sources import iter_series_refs
from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.vocabulary import load_vocabulary


def _distribution(label: str, p: float, rng: np.random.Generator, codes: list[str]) -> dict[str, float]:
    others = [c for c in codes if c != label]
    rest = rng.dirichlet(np.ones(len(others)) * 0.3) * (1 - p)
    return {label: p, **{c: float(v) for c, v in zip(others, rest)}}


def illustrative_predictions(dicom: Path, seed: int = 0) -> list[SeriesPrediction]:
    codes = load_vocabulary().sequence_codes
    truth = {r["series_uid"]: r for r in csv.DictReader((dicom / "labels.csv").open())}
    rng = np.random.default_rng(seed)
    out = []
    for ref in iter_series_refs(dicom):
        s = read_series(ref)
        t = truth[s.series_uid]
        forest_label = cnn_label = ensemble_label = t["sequence"]
        if "FLAIR" in s.series_description.upper() and not t["sequence"].startswith("FLAIR"):
            forest_label = ensemble_label = "FLAIR_2D"  # a wrong description misleads the header model
        if t["sequence"] in ("SWI_MINIP", "T1_2D_POST"):  # hard for pixels alone
            cnn_label = {"SWI_MINIP": "SWI", "T1_2D_POST": "T1_2D_PRE"}[t["sequence"]]
        forest = TaskPrediction.from_probabilities(_distribution(forest_label, rng.uniform(0.7, 0.97), rng, codes))
        cnn = TaskPrediction.from_probabilities(_distribution(cnn_label, rng.uniform(0.6, 0.95), rng, codes))
        agree = forest_label == cnn_label
        p = (forest.probability + cnn.probability) / 2 if agree else max(forest.probability, cnn.probability) * 0.6
        sequence = TaskPrediction.from_probabilities(_distribution(ensemble_label, p, rng, codes))
        orientation = TaskPrediction.from_probabilities({t["orientation"]: 0.98, "OBLIQUE": 0.02})
        out.append(SeriesPrediction(
            s.series_uid, s.study_uid, s.patient_id, s.series_number, s.series_description, s.n_images,
            sequence=sequence, orientation=orientation, needs_review=not agree or p < 0.6,
            reasons=[] if agree else [f"forest says {forest_label}, CNN says {cnn_label}"],
            models={"forest": ModelOutput("forest", sequence=forest), "cnn": ModelOutput("cnn", sequence=cnn)},
            model_version="illustrative",
        ))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "report.png")
    parser.add_argument("--models")
    parser.add_argument("--title", default="SeriesClassifier report")
    args = parser.parse_args()
    from SeriesClassifierLib.synth.generate import generate_study
    from SeriesClassifierLib.synth.profiles import get_profiles

    folder = args.workdir / "studies"
    for i, (profile, kind) in enumerate([("philips_ingenia_3t", "tumour"), ("siemens_skyra_3t", "stroke")]):
        dicom = folder / profile
        if not (dicom / "labels.csv").exists():
            from SeriesClassifierLib.synth.generate import write_labels

            rows = generate_study(dicom, get_profiles([profile])[0], seed=11 + i, index=i, study_type=kind)
            write_labels(rows, dicom / "labels.csv")
    store_path = args.workdir / "labels.sqlite"
    store_path.unlink(missing_ok=True)
    with LabelStore(store_path) as store:
        if args.models:
            from SeriesClassifierLib.models.bundle import load_bundle
            from SeriesClassifierLib.run.pipeline import classify

            store.record_predictions(classify(folder, load_bundle(args.models)))
        else:
            for i, dicom in enumerate(sorted(folder.iterdir())):
                store.record_predictions(illustrative_predictions(dicom, seed=i))
        records = store.records()
        truth = {}
        for labels in folder.glob("*/labels.csv"):
            truth.update({row["series_uid"]: row["sequence"] for row in csv.DictReader(labels.open())})
        # a reviewer corrects two wrong predictions and accepts three right ones
        wrong = [r for r in records if r.sequence and r.sequence != truth.get(r.series_uid, r.sequence)]
        for r in wrong[:2]:
            store.correct(r.series_uid, sequence=truth[r.series_uid], user="reviewer", source="review")
        right = [r for r in records if r.sequence == truth.get(r.series_uid) and not r.prediction.needs_review]
        for r in right[1:4]:
            store.accept(r.series_uid, user="reviewer", source="review")
    html = args.workdir / "report.html"
    cli(["report", str(folder), "--store", str(store_path), "--out", str(html), "--title",
         args.title + ("" if args.models else " (illustrative predictions)")]
        + (["--gradcam", "--models", args.models] if args.models else []))
    chromium = shutil.which("chromium") or "chromium"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={args.workdir / 'chromium-profile'}", f"--screenshot={args.out}",
         "--window-size=1400,1000", html.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
