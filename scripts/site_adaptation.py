"""Site adaptation: how many corrected series does a new site need before the models learn its ways?

    python scripts/site_adaptation.py --site /work/data/corpus_site --out /work/data/site_exp \\
        [--models SeriesClassifier/Resources/Models] [--n 10 30 100] [--seeds 0 1 2] [--docs docs]

The site corpus (labels.csv inside) is split by study, once, into a POOL a person reviews and a
fixed TEST set nobody corrects. For each N and seed, a person meets the pool the way a curator
does, study by study in a random order, and confirms or corrects every series until N are done;
their labels go into a fresh label store, exactly as the Slicer module or ``review`` would write
them. ``seriesclassifier train --labels STORE --from MODELS`` then refits the forest and fine-tunes the
CNN's heads, and the TEST series are classified before and after by the forest, the CNN and the
ensemble of the two. Prints a markdown table and writes results.json and a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from SeriesClassifierLib.commands.cli import main as cli
from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.models.ensemble import combine
from SeriesClassifierLib.training.corpus import read_all
from SeriesClassifierLib.training.evaluate import read_labels
from SeriesClassifierLib.training.site_training import split_by_study


def accuracy(forest, cnn, test: list, labels: dict, params) -> dict[str, float]:
    """Sequence accuracy of the forest, the CNN and the ensemble on the test series, and the review rate."""
    right: dict[str, list[bool]] = {"forest": [], "cnn": [], "ensemble": []}
    flagged = []
    for s in test:
        outputs = {"forest": forest.predict(s), "cnn": cnn.predict(s)}
        truth = labels[s.series_uid]["sequence"]
        c = combine(outputs, params)
        for name, answer in [*((n, o.sequence) for n, o in outputs.items()), ("ensemble", c.sequence)]:
            right[name].append(answer is not None and answer.label == truth)
        flagged.append(c.needs_review)
    return {**{k: float(np.mean(v)) for k, v in right.items()}, "review": float(np.mean(flagged))}


def reviewed_first(pool: list, n: int, seed: int) -> list:
    """The first n series a curator meets: whole studies in a random order, series in their order."""
    studies = sorted({s.study_uid for s in pool})
    np.random.default_rng(seed).shuffle(studies)
    chosen = []
    for study in studies:
        chosen += sorted((s for s in pool if s.study_uid == study), key=lambda s: s.series_number or 0)
        if len(chosen) >= n:
            break
    return chosen[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=Path(__file__).resolve().parents[1] / "SeriesClassifier"
                    / "Resources" / "Models")
    ap.add_argument("--n", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--test-fraction", type=float, default=0.4)
    ap.add_argument("--site-weight", default="10")
    ap.add_argument("--docs", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    labels = read_labels(args.site / "labels.csv")
    cache = args.out / "headers.jsonl"
    series = [s for s in read_all(args.site, cache) if not s.skipped and s.series_uid in labels]
    pool, test = split_by_study(series, args.test_fraction, seed=1234)
    base = load_bundle(args.models)
    before = accuracy(base.forest, base.cnn, test, labels, base.ensemble)
    print(f"site {args.site}: {len(series)} series; pool {len(pool)}, test {len(test)}; before: {before}")
    runs = []
    for n in args.n:
        for seed in args.seeds:
            chosen = reviewed_first(pool, n, seed)
            run_dir = args.out / f"n{n}_seed{seed}"
            store_path = run_dir / "labels.sqlite"
            store_path.unlink(missing_ok=True)
            with LabelStore(store_path) as store:
                for s in chosen:
                    store.correct(s.series_uid, sequence=labels[s.series_uid]["sequence"], user="curator",
                                  source="api")
            assert cli(["train", "--data", str(args.site), "--labels", str(store_path), "--from", str(args.models),
                        "--out", str(run_dir / "models"), "--cache", str(cache), "--test-fraction", "0",
                        "--site-weight", args.site_weight, "--fine-tune-cnn"]) == 0
            new = load_bundle(run_dir / "models")
            after = accuracy(new.forest, new.cnn, test, labels, new.ensemble)
            runs.append({"n": n, "seed": seed, "n_studies": len({s.study_uid for s in chosen}), **after})
            print(f"N={n} seed={seed}: {after}", flush=True)
    result = {"site": str(args.site), "n_series": len(series), "n_pool": len(pool), "n_test": len(test),
              "before": before, "runs": runs, "site_weight": float(args.site_weight)}
    (args.out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(table(result))
    figure(result, (args.docs or args.out) / "site_adaptation.png")
    return 0


def _summary(result: dict) -> list[tuple]:
    b = result["before"]
    rows = [(0, b["forest"], 0.0, b["cnn"], 0.0, b["ensemble"], 0.0, b["review"])]
    for n in sorted({r["n"] for r in result["runs"]}):
        rs = [r for r in result["runs"] if r["n"] == n]
        f, c, e, v = (np.array([r[k] for r in rs]) for k in ("forest", "cnn", "ensemble", "review"))
        rows.append((n, f.mean(), f.std(), c.mean(), c.std(), e.mean(), e.std(), v.mean()))
    return rows


def table(result: dict) -> str:
    lines = [f"Test: {result['n_test']} series of the site never corrected; mean ± sd over seeds.", "",
             "| corrected series N | forest accuracy | CNN accuracy | ensemble accuracy | ensemble review rate |",
             "|---|---|---|---|---|"]
    for n, f, fs, c, cs, e, es, v in _summary(result):
        lines.append(f"| {n if n else '0 (bundled models)'} | {f:.3f} ± {fs:.3f} | {c:.3f} ± {cs:.3f} | "
                     f"{e:.3f} ± {es:.3f} | {v:.3f} |")
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _summary(result)
    n = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.errorbar(n, [r[1] for r in rows], yerr=[r[2] for r in rows], marker="o", capsize=3, label="forest")
    ax.errorbar(n, [r[3] for r in rows], yerr=[r[4] for r in rows], marker="^", capsize=3, label="CNN")
    ax.errorbar(n, [r[5] for r in rows], yerr=[r[6] for r in rows], marker="s", capsize=3, label="ensemble")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xticks(n, [str(x) for x in n])
    ax.set_xlabel("series corrected at the new site (N)")
    ax.set_ylabel("sequence accuracy on the site's other series")
    ax.set_title(f"Site adaptation: {Path(result['site']).name} ({result['n_test']} test series)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
