"""``seriesclassifier train --data PATH --labels labels.csv --out MODELDIR``: train a models bundle.

The metadata forest (+ its calibration and the ensemble's review threshold) is trained
here. The CNN is trained by ``cnn_train`` when available and not switched off
(``--no-cnn``); with ``--from`` the models not retrained are copied from that bundle.
Series of ``--holdout-profile`` profiles are never trained on; they (or ``--eval``) give
the held-out metrics written into the model card.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ..training.site_training import BASE_ROWS, read_base_rows, split_by_study, write_base_rows

DEFAULT_HOLDOUT_NOTE = "profiles never seen in training"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="labelled DICOM folder (or Slicer database)")
    parser.add_argument("--labels", help="labels CSV, or a label store (its corrected and accepted series; a folder "
                        "means its default store) (default: DATA/labels.csv)")
    parser.add_argument("--out", required=True, help="models folder to write (forest_trees.*, forest.json, card …)")
    parser.add_argument("--from", dest="base", help="start from this models folder (copies what is not retrained)")
    parser.add_argument("--no-cnn", action="store_true", help="train the forest only (with --from: the CNN is "
                        "copied from the base bundle)")
    parser.add_argument("--fine-tune-cnn", action="store_true",
                        help="with --from: fine-tune the base CNN's heads on the site's series (off by default: on "
                        "10-100 series it lowered the CNN's accuracy on the rest of a site, docs/SITE_ADAPTATION.md)")
    parser.add_argument("--site-weight", type=float, default=10.0,
                        help="with --from: weight of each site series against one of the base's training rows")
    parser.add_argument("--test-fraction", type=float,
                        help="share of the site's series (whole studies) kept out of training to compare the new "
                        "bundle with --from on (default 0.2 with --from, else 0)")
    parser.add_argument("--write-base-rows", action="store_true",
                        help=f"store the training header records in the bundle ({BASE_ROWS}) for later --from "
                        "retraining; only for data you may share (e.g. generated studies)")
    parser.add_argument("--holdout-profile", nargs="*", default=[], help="profiles (labels 'profile' column) to "
                        "exclude from training and report as held-out")
    parser.add_argument("--eval", dest="eval_data", help="a separate labelled folder to report held-out metrics on")
    parser.add_argument("--eval-labels", help="labels CSV for --eval (default: EVAL/labels.csv)")
    parser.add_argument("--descriptions", action="store_true",
                        help="also use SeriesDescription/ProtocolName tokens (off by default: descriptions lie)")
    parser.add_argument("--kind", choices=["random_forest", "extra_trees"], help="tree ensemble (default: RF)")
    parser.add_argument("--n-estimators", type=int, help="trees per task (default 200)")
    parser.add_argument("--name-dropout", type=float, default=0.0,
                        help="fraction of training rows without vendor sequence names (robustness to new vendors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="JSON-lines cache of read headers (reused when present)")
    parser.add_argument("--docs", help="also copy the held-out confusion PNGs here")


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_all(path: Path, cache: Path | None = None) -> list:
    """Every series under path, headers read (or loaded from the cache written by an earlier run)."""
    from ..dicom.headers import read_series
    from ..dicom.sources import iter_series_refs
    from ..models.features import add_study_context
    from ..series import Series

    if cache is not None and cache.is_file():
        with open(cache, encoding="utf-8") as f:
            series = [Series.from_dict(json.loads(line)) for line in f if line.strip()]
        add_study_context(series)
        _log(f"{len(series)} series from cache {cache}")
        return series
    t0 = time.time()
    refs = list(iter_series_refs(path))
    _log(f"{len(refs)} series grouped under {path} in {time.time() - t0:.0f} s")
    series = [read_series(r) for r in refs]
    add_study_context(series)
    _log(f"headers read in {time.time() - t0:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "w", encoding="utf-8") as f:
            for s in series:
                f.write(json.dumps(s.to_dict()) + "\n")
    return series


def training_targets(series: list, labels: dict[str, dict[str, str]]) -> dict[str, list]:
    from ..vocabulary import load_vocabulary

    tasks = ["sequence", *load_vocabulary().attribute_codes]
    return {task: [labels[s.series_uid].get(task) for s in series] for task in tasks}


def split_by_profile(series: list, labels: dict, holdout: list[str]) -> tuple[list, list]:
    usable = [s for s in series if not s.skipped and s.series_uid in labels and labels[s.series_uid].get("sequence")]
    held = [s for s in usable if labels[s.series_uid].get("profile", "") in set(holdout)]
    train = [s for s in usable if labels[s.series_uid].get("profile", "") not in set(holdout)]
    return train, held


def without_context(series: list, fraction: float, seed: int) -> list:
    """Copies of the series where a random fraction lost their study context.

    A series classified on its own (no siblings read) has no context; training on some such
    rows keeps the forest from leaning on context it will not always get.
    """
    import copy

    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for s in series:
        if rng.random() < fraction:
            s = copy.copy(s)
            s.header = {k: v for k, v in s.header.items() if k != "StudyContext"}
        out.append(s)
    return out


VENDOR_NAME_FIELDS = ("SequenceName", "PulseSequenceName", "GEPulseSequenceName", "PhilipsScanningTechnique")


def without_vendor_names(series: list, fraction: float, seed: int) -> list:
    """Copies where a random fraction lost their vendor sequence names.

    Sequence names are near-perfect cues on the vendors in training and unknown words on a
    new one; rows without them make the forest learn the physics (TR/TE/TI/flip, b-values,
    standard tags) as well, which is what carries over to an unseen scanner.
    """
    import copy

    import numpy as np

    rng = np.random.default_rng(seed + 1)
    out = []
    for s in series:
        if fraction > 0 and rng.random() < fraction:
            s = copy.copy(s)
            s.header = {k: v for k, v in s.header.items() if k not in VENDOR_NAME_FIELDS}
        out.append(s)
    return out


def fit_forest(train: list, labels: dict, *, descriptions: bool, kind: str, n_estimators: int, seed: int,
               context_dropout: float = 0.15, name_dropout: float = 0.0, sample_weight: list | None = None):
    from ..models.features import FeatureExtractor
    from ..models.forest import ForestModel

    forest = ForestModel(FeatureExtractor(use_description=descriptions), kind=kind, n_estimators=n_estimators,
                         random_state=seed)
    train = without_vendor_names(without_context(train, context_dropout, seed), name_dropout, seed)
    return forest.fit(train, training_targets(train, labels), sample_weight=sample_weight)


def review_threshold_from_oob(forest) -> float:
    """The ensemble's review threshold from the forest's calibrated out-of-bag sequence predictions."""
    from ..models.calibration import review_threshold

    oob = forest.oob.get("sequence")
    if not oob:
        return 0.7
    p = forest.scalers["sequence"].transform(oob["probabilities"])
    return review_threshold(p.max(axis=1), p.argmax(axis=1) == oob["y"], target_accuracy=0.99)


def evaluate_forest(forest, series: list, labels: dict, params) -> dict:
    from ..models.bundle import ModelBundle
    from ..run.pipeline import predict_series
    from ..training.evaluate import evaluate_predictions

    bundle = ModelBundle(forest=forest, ensemble=params, version="candidate")
    predictions = [predict_series(s, bundle, use_cnn=False) for s in series]
    return evaluate_predictions(predictions, labels)


def calibration_summary(forest) -> dict:
    """ECE of the out-of-bag sequence probabilities before and after temperature scaling."""
    from ..models.calibration import expected_calibration_error

    oob = forest.oob.get("sequence")
    if not oob:
        return {}
    raw = oob["probabilities"]
    cal = forest.scalers["sequence"].transform(raw)
    return {
        "temperature": round(forest.scalers["sequence"].temperature, 4),
        "oob_ece_raw": round(expected_calibration_error(raw, oob["y"]), 4),
        "oob_ece_calibrated": round(expected_calibration_error(cal, oob["y"]), 4),
    }


def _train_cnn(args, out: Path, labels_path: Path) -> str | None:
    """Train the CNN into ``out`` when cnn_train is available; returns a note for the card."""
    try:
        from ..training.cnn_train import train_cnn
    except ImportError as exc:
        return f"CNN not trained: cnn_train unavailable ({exc})"
    holdout = list(args.holdout_profile or [])
    train_cnn(args.data, out, test=args.eval_data, exclude_profiles=holdout, seed=args.seed, labels_csv=labels_path,
              command="seriesclassifier train " + " ".join(sys.argv[2:]))
    return None


def run(args) -> int:
    from .. import __version__
    from ..models.bundle import write_model_card
    from ..models.ensemble import EnsembleParams
    from ..training.evaluate import read_labels, write_report

    data = Path(args.data)
    out = Path(args.out)
    labels_path = Path(args.labels) if args.labels else data / "labels.csv"
    labels = _read_training_labels(labels_path)
    if labels is None:
        return 2
    base = Path(args.base) if args.base else None
    base_config = {}
    if base is not None and (base / "forest.json").is_file():
        base_config = json.loads((base / "forest.json").read_text(encoding="utf-8"))
    kind = args.kind or base_config.get("kind", "random_forest")
    n_estimators = args.n_estimators or int(base_config.get("n_estimators", 200))
    descriptions = args.descriptions or bool(base_config.get("features", {}).get("use_description", False))

    series = read_all(data, Path(args.cache) if args.cache else None)
    train, held = split_by_profile(series, labels, args.holdout_profile)
    if not train:
        print(f"no labelled, classifiable series under {data} (labels: {labels_path})", file=sys.stderr)
        return 2
    # with --from, part of the site is kept out to compare the new bundle with the base on
    fraction = args.test_fraction if args.test_fraction is not None else (0.2 if base is not None else 0.0)
    train, site_test = split_by_study(train, fraction, args.seed)
    fit_series, fit_labels, weights = _with_base_rows(train, labels, base, args.site_weight)
    _log(f"training on {len(train)} series ({len(held)} held out by profile, {len(site_test)} by study for the "
         f"comparison){f', plus {len(fit_series) - len(train)} base rows' if len(fit_series) > len(train) else ''}; "
         f"kind={kind}, trees={n_estimators}, descriptions={'on' if descriptions else 'off'}")
    forest = fit_forest(fit_series, fit_labels, descriptions=descriptions, kind=kind, n_estimators=n_estimators,
                        seed=args.seed, name_dropout=args.name_dropout, sample_weight=weights)
    if base is not None:
        params = EnsembleParams.load(base)  # fitted against the base's models; the refit forest is its kin
    else:
        params = EnsembleParams()
        params.review_threshold = round(review_threshold_from_oob(forest), 4)
    _log(f"forest fitted; review threshold {params.review_threshold}")

    held_labels = labels
    if args.eval_data:
        eval_path = Path(args.eval_data)
        eval_labels_path = Path(args.eval_labels) if args.eval_labels else eval_path / "labels.csv"
        held_labels = read_labels(eval_labels_path)
        held = [s for s in read_all(eval_path) if not s.skipped and s.series_uid in held_labels]
    report = evaluate_forest(forest, held, held_labels, params) if held else None

    out.mkdir(parents=True, exist_ok=True)
    version = f"{__version__}+{time.strftime('%Y%m%d%H%M')}"
    profiles = sorted({labels[s.series_uid].get("profile", "") for s in train} - {""})
    held_profiles = sorted({held_labels[s.series_uid].get("profile", "") for s in held} - {""}) if held else []
    training = {
        "data": str(data),
        "labels": str(labels_path),
        "n_series": len(train),
        "profiles": profiles,
        "heldout_profiles": held_profiles,
        "heldout_data": str(args.eval_data or data),
        "class_counts": _counts(training_targets(train, labels)["sequence"]),
        "command": "seriesclassifier train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else "",
    }
    forest.save(out, extra={"version": version, "training": training, "calibration": calibration_summary(forest),
                            "heldout": _compact(report)})
    params.save(out)
    if report is not None:
        written = write_report(report, out / "heldout", "forest, held-out profiles")
        if args.docs:
            Path(args.docs).mkdir(parents=True, exist_ok=True)
            for p in written:
                if p.suffix == ".png":
                    shutil.copy(p, Path(args.docs) / f"forest_heldout_{p.name}")
        from ..training.evaluate import summary_lines

        for line in summary_lines(report):
            _log(line)

    cnn_note = None
    with tempfile.TemporaryDirectory() as tmp:  # series UIDs of the site stay out of the bundle
        train_labels = _write_labels_csv({s.series_uid: labels[s.series_uid] for s in train},
                                         Path(tmp) / "training_labels.csv")
        if base is not None:
            cnn_note = _adapt_from_base(args, base, out, train_labels)
        elif not args.no_cnn:
            cnn_note = _train_cnn(args, out, train_labels)
    if args.write_base_rows:
        write_base_rows(out / BASE_ROWS, train, labels)
    write_model_card(out, forest, params, report, training, version, notes=[n for n in [cnn_note] if n])
    if site_test:
        _compare_on_site(out, base, site_test, labels)
    _log(f"bundle written to {out}")
    return 0


def _read_training_labels(path: Path) -> dict | None:
    """Labels from a CSV or a store (saying how many were corrected/accepted); None after printing why not."""
    from ..labels.store import StoreError
    from ..training.evaluate import read_any_labels

    try:
        labels = read_any_labels(path)
    except (ValueError, StoreError) as exc:
        print(f"labels: {exc} (give --labels)", file=sys.stderr)
        return None
    if any("label_source" in row for row in labels.values()):
        sources = Counter(row.get("label_source", "") for row in labels.values())
        _log(f"{len(labels)} verified labels from the store {path}: {sources.get('corrected', 0)} corrected, "
             f"{sources.get('accepted', 0)} accepted (unreviewed predictions are not training labels)")
    return labels


def _adapt_from_base(args, base: Path, out: Path, train_labels: Path) -> str | None:
    """Base rows copied; the base CNN copied, or with --fine-tune-cnn its heads fine-tuned on the site's series."""
    if base.resolve() != out.resolve() and (base / BASE_ROWS).is_file():
        shutil.copy(base / BASE_ROWS, out / BASE_ROWS)  # base rows only: the site's headers stay in its store
    if not (base / "cnn.safetensors").is_file():
        return None
    if args.no_cnn or not args.fine_tune_cnn:
        for name in ("cnn.safetensors", "cnn.json"):
            if base.resolve() != out.resolve():
                shutil.copy(base / name, out / name)
        return f"CNN copied unchanged from {base}"
    from ..training.cnn_train import fine_tune_cnn

    result = fine_tune_cnn(base, args.data, train_labels, out, seed=args.seed)
    _log(f"CNN heads fine-tuned on {result['n_series']} site series ({result['n_slices']} slices); "
         f"loss per epoch {result['losses']}")
    return f"CNN fine-tuned from {base}: heads only, {result['n_series']} site series"


def _with_base_rows(train: list, labels: dict, base: Path | None, site_weight: float) -> tuple[list, dict, list]:
    """The site's series plus the base bundle's training rows (when it ships them), with sample weights."""
    if base is None:
        return train, labels, [1.0] * len(train)
    if not (base / BASE_ROWS).is_file():
        _log(f"{base} has no {BASE_ROWS}: the forest learns from the site's series alone")
        return train, labels, [1.0] * len(train)
    base_series, base_labels = read_base_rows(base / BASE_ROWS)
    return base_series + train, {**base_labels, **labels}, [1.0] * len(base_series) + [site_weight] * len(train)


def _compare_on_site(out: Path, base: Path | None, test: list, labels: dict) -> None:
    """The new bundle and the base (or nothing) on the site's series kept out of training."""
    from ..models.bundle import load_bundle
    from ..run.pipeline import predict_series
    from ..training.evaluate import compare_bundles, evaluate_predictions, summary_lines, write_comparison, write_report

    new = load_bundle(out, load_cnn=False)
    new_predictions = [predict_series(s, new, use_cnn=False) for s in test]
    if base is None:
        report = evaluate_predictions(new_predictions, labels)
        write_report(report, out / "site_test")
        for line in summary_lines(report):
            _log(line)
        return
    old = load_bundle(base, load_cnn=False)
    comparison = compare_bundles(new_predictions, [predict_series(s, old, use_cnn=False) for s in test], labels)
    write_comparison(comparison, out / "site_test")
    t = comparison["tasks"]["sequence"]
    _log(f"site test ({len(test)} series, forest only): sequence accuracy {t['baseline']['accuracy']:.4f} with "
         f"{base} → {t['new']['accuracy']:.4f}; fixed {len(comparison['fixed'])}, broken {len(comparison['broken'])}"
         f" (details in {out / 'site_test'})")


def _write_labels_csv(labels: dict[str, dict[str, str]], path: Path) -> Path:
    """Training labels as the CSV the CNN trainer reads (written to a temporary folder by the caller)."""
    import csv

    columns = sorted({k for row in labels.values() for k in row} - {"series_uid"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["series_uid", *columns])
        w.writeheader()
        for uid, row in sorted(labels.items()):
            w.writerow({"series_uid": uid, **{c: row.get(c, "") for c in columns}})
    return path


def _counts(values: list) -> dict[str, int]:
    from ..models.forest import normalise_label

    counts: dict[str, int] = {}
    for v in values:
        label = normalise_label("sequence", v)
        if label:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def _compact(report: dict | None) -> dict | None:
    """Held-out metrics without the bulky confusion matrices, for forest.json."""
    if report is None:
        return None
    tasks = {
        task: {k: v for k, v in r.items() if k not in {"confusion", "classes"}} for task, r in report["tasks"].items()
    }
    return {**{k: v for k, v in report.items() if k != "tasks"}, "tasks": tasks}
