"""The ablation table of docs/ABLATION.md from a ``seriesclassifier tune --ablation`` run folder.

    python benchmarks/ablation.py --run RUN [RUN2 ...] [--png docs/ablation/search_trajectory.png] \
        [--reference SeriesClassifier/Resources/Models --held HELD.npz]
    python benchmarks/ablation.py --lovo LOVO_RUN      # a ``tune --ablation --lovo`` run folder

One row per method against its baseline, on the generated held-out profiles and on the real development
set (pixels only): series right / n, macro-F1, the rare classes' recall (the rarest third of the classes by
training series, those present), ECE (models/calibration.py, 15 bins), the difference in series right from
the baseline with an exact McNemar p-value over the paired series, and the inference cost per series
(multiply-adds; milliseconds on one thread of a shared machine). Also the search: trials, the best single
trial and the top-k ensemble. A benchmark: the run folder is made by the tune command, not by a test.

Several run folders: their ablation logs are read together (rows added later in another run, e.g. with
``tune --ablation --no-search --ablation-rows ...``; a name in two runs is taken from the first); the search,
the reference and the correlations come from the first. Comparisons pair the series of each trial's
outputs.npz, so every run must have been given the same caches (the real set read the same way).

``--lovo``: the leave-one-vendor-out tables of a ``tune --ablation --lovo`` run (its lovo_ablation.jsonl, names
``row@VENDOR``): per method, each held-out vendor's series right / n with the difference from the baseline
trained without the same vendor (exact McNemar p), the mean of the vendors' accuracies, and all vendors pooled
(every corpus series is scored once, by the model that never saw its vendor); then macro-F1, rare recall and
ECE per vendor, and each split (validation profile, series, training seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# row: (label, ablation trial, aggregation, the baseline it is compared with (trial, aggregation))
ROWS = [
    ("baseline: CE + class-balanced sampler, weights 1/0.5/4×0.25, no CLAHE, mean log-prob", "baseline", "mean",
     None),
    ("baseline, another seed (the noise of one row)", "baseline_seed1", "mean", ("baseline", "mean")),
    ("focal loss, γ = 2", "focal", "mean", ("baseline", "mean")),
    ("asymmetric loss, γ+ = 0, γ− = 4, clip 0.05", "asl", "mean", ("baseline", "mean")),
    ("CLAHE, clip 2, 8 × 8 tiles", "clahe", "mean", ("baseline", "mean")),
    ("CLAHE, another seed, against the baseline's other seed", "clahe_seed1", "mean", ("baseline_seed1", "mean")),
    ("task weights main 0.7 / auxiliary 0.3 (paper)", "paper_weights", "mean", ("baseline", "mean")),
    ("focal loss, another seed, against the baseline's other seed", "focal_seed1", "mean", ("baseline_seed1", "mean")),
    ("task weights 0.7 / 0.3, another seed, against the baseline's other seed", "paper_weights_seed1", "mean",
     ("baseline_seed1", "mean")),
    ("single task (sequence only)", "single_task", "mean", ("baseline", "mean")),
    ("series by majority vote of the slices", "baseline", "vote", ("baseline", "mean")),
    ("series by a bidirectional GRU on frozen slice embeddings", "baseline", "gru", ("baseline", "mean")),
    ("fair control: a linear head fitted on the baseline's mean-pooled frozen embeddings (as the GRU is)",
     "pooled_head", "pooled", ("baseline", "mean")),
    ("GRU on frozen embeddings (refitted), against the fair control", "pooled_head", "gru",
     ("pooled_head", "pooled")),
    ("end to end: mean-pooled embedding + residual bidirectional GRU, linear head, trained with the CNN",
     "slice_gru", "e2e", ("baseline", "mean")),
    ("end to end: mean-pooled embedding + residual 1-D convolution (k 3), linear head, trained with the CNN",
     "slice_conv1d", "e2e", ("baseline", "mean")),
    ("batching control: the baseline trained on the end-to-end rows' batches (4 whole series a step), no head",
     "series_batches", "mean", ("baseline", "mean")),
    ("end-to-end GRU, against the batching control", "slice_gru", "e2e", ("series_batches", "mean")),
    ("end-to-end 1-D convolution, against the batching control", "slice_conv1d", "e2e", ("series_batches", "mean")),
    ("end-to-end GRU, against its own network's slice head by mean log-prob", "slice_gru", "e2e",
     ("slice_gru", "mean")),
    ("end-to-end GRU, against its own network's slice head by majority vote", "slice_gru", "e2e",
     ("slice_gru", "vote")),
    ("end-to-end 1-D convolution, against its own network's slice head by mean log-prob", "slice_conv1d", "e2e",
     ("slice_conv1d", "mean")),
    ("end-to-end 1-D convolution, against its own network's slice head by majority vote", "slice_conv1d", "e2e",
     ("slice_conv1d", "vote")),
]
EXTRA_COST = {"gru": " (+GRU)", "pooled": " (+linear)", "e2e": " (with its head)"}
SETS = (("held", "generated held-out profiles"), ("real", "real development set, pixels only"))


def read_done(log: Path) -> list[dict]:
    from SeriesClassifierLib.training.tune import TrialLog

    return TrialLog(log).read()[0] if log.is_file() else []


def predictions(trial: dict, name: str, agg: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(trial["result"]["folder"]) / "outputs.npz", allow_pickle=False) as z:
        return z[f"{name}__{agg}"].argmax(axis=1), z[f"{name}__y"].astype(int)


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of paired right/wrong answers."""
    from scipy.stats import binomtest

    b = int((right_a & ~right_b).sum())
    c = int((~right_a & right_b).sum())
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table(by_name: dict[str, dict], name: str) -> list[str]:
    lines = ["| method | right / n | macro-F1 | rare recall (n) | ECE | Δ right vs baseline (McNemar p) | "
             "MMAC / series | ms / series |", "|---|---|---|---|---|---|---|---|"]
    for label, trial, agg, base in ROWS:
        t = by_name.get(trial)
        if t is None or f"{name}__{agg}" not in t["result"]["figures"]:
            continue
        f = t["result"]["figures"][f"{name}__{agg}"]
        delta = "–"
        if base is not None and base[0] in by_name:
            pred, y = predictions(t, name, agg)
            pred_b, _ = predictions(by_name[base[0]], name, base[1])
            ok = y >= 0
            right, right_b = (pred == y)[ok], (pred_b == y)[ok]
            delta = f"{int(right.sum()) - int(right_b.sum()):+d} (p {mcnemar(right, right_b):.2f})"
        cost = t["result"]["cost"]
        extra = EXTRA_COST.get(agg, "")
        lines.append(f"| {label} | {f['right']}/{f['n']} ({f['accuracy']:.3f}) | {_fmt(f['macro_f1'])} | "
                     f"{_fmt(f['rare_recall'])} ({f['rare_n']}) | {_fmt(f['ece'])} | {delta} | "
                     f"{cost['mmac_per_series']}{extra} | {cost['ms_per_series']} |")
    return lines


def search_lines(run: Path) -> list[str]:
    from SeriesClassifierLib.training.tune import trajectory

    done = read_done(run / "trials.jsonl")
    if not done:
        return ["(no search trials)"]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    t = trajectory(done)
    best = min(done, key=lambda d: d["loss"])
    lines = [f"{len(done)} trials ({t['random_ended_after']} random, {len(done) - t['random_ended_after']} GP); "
             f"validation loss per trial: {', '.join(f'{v:.3f}' for v in t['loss'])}; "
             f"best {best['loss']:.3f} at trial {best['trial']} ({best.get('stage')}): "
             f"{json.dumps(best['params'])}", "",
             "| model | set | right / n | macro-F1 | rare recall (n) | ECE | kept at threshold | their accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for name, title in (("val", "validation profile"), *SETS):
        f = best["result"]["figures"].get(f"{name}__mean")
        if f:
            lines.append(f"| best trial ({best['trial']}) | {title} | {f['right']}/{f['n']} | {_fmt(f['macro_f1'])} | "
                         f"{_fmt(f['rare_recall'])} ({f['rare_n']}) | {_fmt(f['ece'])} | – | – |")
        e = summary.get("ensemble", {}).get(name)
        if e:
            lines.append(f"| top-{len(summary['ensemble']['members'])} ensemble {summary['ensemble']['members']} | "
                         f"{title} | {e['right']}/{e['n']} | {_fmt(e['macro_f1'])} | {_fmt(e['rare_recall'])} "
                         f"({e['rare_n']}) | {_fmt(e['ece'])} | {_fmt(e['accepted_share'], 2)} | "
                         f"{_fmt(e['accepted_accuracy'])} |")
    if "ensemble" in summary:
        lines += ["", f"Ensemble review threshold (chosen on the validation profile, target accuracy 0.95, bounds "
                      f"0.5–0.9): {summary['ensemble']['threshold']:.3f}"]
    return lines


def reference_lines(models: Path, caches: dict[str, Path], rare: list[int]) -> list[str]:
    """The bundled CNN scored by the same code on the same slices (K = 8, 128², mean log-probability)."""
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.training.cnn_train import Cache
    from SeriesClassifierLib.training.tune_trials import inference_cost, scores, series_probabilities

    model = CnnModel.load(models)
    cost = inference_cost(model, 8, 128)
    lines = [f"Reference: the CNN in {models} (version {model.config.version}, widths {model.config.widths}, "
             f"{cost['mmac_per_series']} MMAC / series, {cost['ms_per_series']} ms / series)", ""]
    for name, title in SETS:
        if name in caches and caches[name].is_file():
            cache = Cache.load(caches[name])
            f = scores(series_probabilities(model, cache)["mean"], cache.series_labels["sequence"], rare)
            lines.append(f"- {title}: {f['right']}/{f['n']} ({f['accuracy']:.3f}), macro-F1 {_fmt(f['macro_f1'])}, "
                         f"rare recall {_fmt(f['rare_recall'])} ({f['rare_n']}), ECE {_fmt(f['ece'])}")
    return lines


def correlation_lines(run: Path) -> list[str]:
    """Across every model of the run: does the search's loss (generated validation) rank the real set's answers?"""
    from scipy.stats import spearmanr

    done = read_done(run / "trials.jsonl") + read_done(run / "ablation.jsonl")
    done = [t for t in done if "real__mean" in t["result"]["figures"]]
    if len(done) < 3:
        return []
    loss = [t["loss"] for t in done]
    held = [t["result"]["figures"]["held__mean"]["accuracy"] for t in done]
    real = [t["result"]["figures"]["real__mean"]["right"] for t in done]
    pairs = (("validation loss", loss, "generated held-out accuracy", held),
             ("validation loss", loss, "real series right", real),
             ("generated held-out accuracy", held, "real series right", real))
    lines = [f"Rank correlation over the run's {len(done)} models (Spearman ρ, p):"]
    for a_name, a, b_name, b in pairs:
        r = spearmanr(a, b)
        lines.append(f"- {a_name} vs {b_name}: ρ = {r.statistic:+.2f} (p {r.pvalue:.3f})")
    return lines + [f"- real series right per model: {sorted(real)}"]


def _paired(trial: dict, base: dict) -> tuple[np.ndarray, np.ndarray]:
    """Right / wrong of a LOVO trial and its baseline on the same held-out vendor's series."""
    pred, y = predictions(trial, "lovo", "mean")
    pred_b, y_b = predictions(base, "lovo", "mean")
    assert (y == y_b).all(), "the two trials were not scored on the same series"
    ok = y >= 0
    return (pred == y)[ok], (pred_b == y)[ok]


def lovo_lines(run: Path) -> list[str]:
    """The leave-one-vendor-out tables (see the module's note)."""
    done = read_done(run / "lovo_ablation.jsonl")
    by: dict[tuple[str, str], dict] = {}
    for t in done:
        row, vendor = t["name"].split("@")
        by[(row, vendor)] = t
    vendors = sorted({v for _, v in by})
    labels = {trial: label for label, trial, agg, _ in ROWS if agg == "mean"}
    bases = {trial: base[0] for _, trial, agg, base in ROWS if agg == "mean" and base is not None}
    rows = [r for r in labels if any((r, v) in by for v in vendors)]
    head = ("| method | " + " | ".join(f"{v} held out: right / n (Δ, McNemar p)" for v in vendors) +
            " | mean of the vendors' accuracy | all vendors pooled: right / n (Δ, McNemar p) |")
    lines = ["### Leave one vendor out: series accuracy on the held-out vendor", "", head,
             "|---|" + "---|" * (len(vendors) + 2)]
    for row in rows:
        cells, accs, right_all, right_base, complete = [], [], [], [], True
        for v in vendors:
            t = by.get((row, v))
            if t is None:
                cells.append("–")
                complete = False
                continue
            f = t["result"]["figures"]["lovo__mean"]
            accs.append(f["accuracy"])
            cell = f"{f['right']}/{f['n']} ({f['accuracy']:.3f})"
            base = by.get((bases.get(row, ""), v))
            if base is not None:
                a, b = _paired(t, base)
                cell += f" ({int(a.sum()) - int(b.sum()):+d}, p {mcnemar(a, b):.2f})"
                right_all.append(a)
                right_base.append(b)
            cells.append(cell)
        mean = f"{np.mean(accs):.3f}" + ("" if complete else " (incomplete)") if accs else "–"
        n_all = sum(by[(row, v)]["result"]["figures"]["lovo__mean"]["n"] for v in vendors if (row, v) in by)
        r_all = sum(by[(row, v)]["result"]["figures"]["lovo__mean"]["right"] for v in vendors if (row, v) in by)
        pooled = f"{r_all}/{n_all} ({r_all / max(n_all, 1):.3f})"
        if right_all and len(right_all) == len(vendors):
            a, b = np.concatenate(right_all), np.concatenate(right_base)
            pooled += f" ({int(a.sum()) - int(b.sum()):+d}, p {mcnemar(a, b):.2f})"
        lines.append(f"| {labels[row]} | " + " | ".join(cells) + f" | {mean} | {pooled} |")
    lines += ["", "### Leave one vendor out: macro-F1, rare recall (n) and ECE on the held-out vendor", "",
              "| method | " + " | ".join(f"{v}: macro-F1 / rare recall (n) / ECE" for v in vendors) + " |",
              "|---|" + "---|" * len(vendors)]
    for row in rows:
        cells = []
        for v in vendors:
            f = by[(row, v)]["result"]["figures"]["lovo__mean"] if (row, v) in by else None
            cells.append("–" if f is None else f"{_fmt(f['macro_f1'])} / {_fmt(f['rare_recall'])} ({f['rare_n']}) / "
                                               f"{_fmt(f['ece'])}")
        lines.append(f"| {labels[row]} | " + " | ".join(cells) + " |")
    lines += ["", "### Leave one vendor out: the splits", "",
              "| held-out vendor | its profiles | validation profile | series: train / validation / held out | "
              "training seconds per row |", "|---|---|---|---|---|"]
    for v in vendors:
        trials = [by[(r, v)] for r in rows if (r, v) in by]
        split = trials[0]["result"]["split"]
        secs = ", ".join(f"{r} {by[(r, v)]['result']['train_seconds']:.0f}" for r in rows if (r, v) in by)
        lines.append(f"| {v} | {', '.join(split['lovo_profiles'])} | {split['val_profile']} | "
                     f"{split['n_train']} / {split['n_val']} / {split['n_lovo']} | {secs} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, nargs="+",
                    help="the tune run folder; more folders add their ablation rows (see the module's note)")
    ap.add_argument("--lovo", type=Path, help="a tune --ablation --lovo run folder: its tables")
    ap.add_argument("--png", type=Path, help="also draw the search trajectory here")
    ap.add_argument("--reference", type=Path, help="a models folder to score on the same slices (the bundle)")
    ap.add_argument("--held", type=Path, help="the held-out slice cache the run was given (for --reference)")
    args = ap.parse_args(argv)
    if not args.run and not args.lovo:
        ap.error("give --run or --lovo")
    if args.lovo:
        print("\n".join(lovo_lines(args.lovo)))
        if not args.run:
            return 0
    by_name: dict[str, dict] = {}
    for run in args.run:
        for t in read_done(run / "ablation.jsonl"):
            by_name.setdefault(t["name"], t)
    args.run = args.run[0]
    if args.reference and "baseline" in by_name:
        caches = {"real": args.run / "cache" / "real_k8_s128.npz", **({"held": args.held} if args.held else {})}
        print("\n".join(reference_lines(args.reference, caches, by_name["baseline"]["result"]["rare_classes"])))
    for name, title in SETS:
        print(f"\n### {title}\n")
        print("\n".join(table(by_name, name)))
    print("\n### search\n")
    print("\n".join(search_lines(args.run)))
    print()
    print("\n".join(correlation_lines(args.run)))
    if args.png:
        from SeriesClassifierLib.training.tune import plot_trajectory

        done = read_done(args.run / "trials.jsonl")
        args.png.parent.mkdir(parents=True, exist_ok=True)
        plot_trajectory(done, args.png, f"seriesclassifier tune --scale reduced: {len(done)} trials "
                                        "(generated validation profile)")
        print(f"\nwrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
