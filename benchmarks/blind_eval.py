"""A blind evaluation: the bundled product, as a user runs it, on real series it was never developed on.

    python benchmarks/blind_eval.py --build MIRRORS --data BLIND --labels docs/blind/labels.csv   # once
    python benchmarks/blind_eval.py --data BLIND --labels docs/blind/labels.csv --out docs/blind

BLIND is a folder of real scanner series that no model, threshold or choice was fitted or tuned on
(not the real development set); ``labels.csv`` (series_uid, sequence, confidence, vendor, folder,
source, description) was written from the folder names and the sources' READMEs *before* this was
run. Run it once per bundle: a test set used to choose anything is no longer a test set.

Beside the product's answer, each series is decided again as its files would be with only identity and pixels
left (``real_dev.headers_stripped``: the CNN alone), to see whether the probability shown then means on
unseen sources what it means on the development set.

Writes predictions.csv, metrics.json, confusion_ensemble.png and summary.md to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

from real_dev import headers_stripped, shown_confidence

from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.prediction import OUTCOMES
from SeriesClassifierLib.run.pipeline import decide, predict_all, read_all_series, resolve_refs
from SeriesClassifierLib.training.evaluate import plot_confusion, task_metrics


def build(mirrors: Path, data: Path, labels: dict[str, dict[str, str]]) -> None:
    """Copy every labelled series' folder out of the git mirrors (``MIRRORS/neurolabusc+REPO/repo``, as the
    fetch tool lays them out), file by file: a blob a mirror lacks is left out, not the folder."""
    import subprocess

    for folder in sorted({row["folder"] for row in labels.values()}):
        repo, inside = folder.split("/", 1)
        git = ["git", "-C", str(mirrors / f"neurolabusc+{repo}" / "repo")]
        names = subprocess.run([*git, "ls-tree", "-r", "--name-only", "HEAD", inside + "/"], check=True,
                               capture_output=True, text=True).stdout.split()
        for name in names:
            blob = subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True)
            if blob.returncode == 0:
                target = data / repo / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.stdout)


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fp:
        return {row["series_uid"]: row for row in csv.DictReader(fp)}


def prediction_rows(data: Path, labels: dict[str, dict[str, str]]) -> tuple[list[dict], dict]:
    """(one row per labelled series, {series uid: its decision with headers stripped})."""
    rows, stripped = [], {}
    bundle = load_bundle()
    for series, p in predict_all(read_all_series(resolve_refs(data)), bundle):  # what classify() does
        lab = labels.get(p.series_uid)
        if lab is None:
            continue
        stripped[p.series_uid] = bare = decide(headers_stripped(series), p.models, bundle)
        forest, cnn = p.models.get("forest"), p.models.get("cnn")
        rows.append({
            "folder": lab["folder"], "vendor": lab["vendor"], "source": lab["source"], "truth": lab["sequence"],
            "label_confidence": lab["confidence"],
            "ensemble": p.sequence.label if p.sequence else "",
            "ensemble_p": round(p.sequence.probability, 3) if p.sequence else "",
            "forest": forest.sequence.label if forest and forest.sequence else "",
            "cnn": cnn.sequence.label if cnn and cnn.sequence else "",
            "outcome": p.outcome, "reasons": " | ".join(p.reasons), "unknown": p.unknown or "",
            "stripped": bare.sequence.label if bare.sequence else "",
            "stripped_p": round(bare.sequence.probability, 3) if bare.sequence else "",
            "stripped_outcome": bare.outcome,
        })
    return rows, stripped


def tally(rows: list[dict], key: str) -> str:
    return f"{sum(r[key] == r['truth'] for r in rows)}/{len(rows)}"


def outcome_tally(rows: list[dict], answer: str, outcome: str) -> dict[str, str]:
    """{outcome: "R right of N"} for the answers in column ``answer`` and their outcomes in ``outcome``."""
    return {o: f"{sum(r[answer] == r['truth'] for r in rows if r[outcome] == o)} right of "
               f"{sum(r[outcome] == o for r in rows)}" for o in OUTCOMES}


def metrics_of(rows: list[dict]) -> dict:
    vendors = sorted({r["vendor"] for r in rows})
    accepted = [r for r in rows if r["outcome"] == "classified"]
    return {
        "n": len(rows),
        "ensemble": tally(rows, "ensemble"), "forest": tally(rows, "forest"),
        "cnn": tally([r for r in rows if r["cnn"]], "cnn"),
        "per_vendor": {v: {k: tally([r for r in rows if r["vendor"] == v], k) for k in ("forest", "cnn", "ensemble")}
                       for v in vendors},
        "per_class": {c: tally([r for r in rows if r["truth"] == c], "ensemble")
                      for c in sorted({r["truth"] for r in rows})},
        "outcomes": outcome_tally(rows, "ensemble", "outcome"),
        "right_among_classified": tally(accepted, "ensemble"),
        "confident_wrong": [f"{r['folder']}: {r['truth']} read as {r['ensemble']} ({r['ensemble_p']})"
                            for r in accepted if r["ensemble"] != r["truth"]],
        "label_confidence": dict(Counter(r["label_confidence"] for r in rows)),
        "headers_stripped": {"outcomes": outcome_tally(rows, "stripped", "stripped_outcome")},
    }


def summary_markdown(m: dict) -> str:
    lines = [f"Series: {m['n']} ({', '.join(f'{k} {v}' for k, v in m['label_confidence'].items())} labels).", "",
             "| | all | " + " | ".join(m["per_vendor"]) + " |", "|---|---|" + "---|" * len(m["per_vendor"])]
    for key in ("forest", "cnn", "ensemble"):
        lines.append(f"| {key} | {m[key]} | " + " | ".join(v[key] for v in m["per_vendor"].values()) + " |")
    lines += ["", "Outcomes: " + "; ".join(f"{o} {v}" for o, v in m["outcomes"].items()) + ".",
              f"Right among the classified (not sent to review, not unknown): {m['right_among_classified']}.", "",
              "| class | ensemble |", "|---|---|"]
    lines += [f"| {c} | {v} |" for c, v in m["per_class"].items()]
    if m["confident_wrong"]:
        lines += ["", "Wrong and not sent to review:", *[f"- {w}" for w in m["confident_wrong"]]]
    bare = m["headers_stripped"]
    if bare.get("shown"):
        c = bare["shown"]
        lines += ["", "Headers stripped to identity and pixels (the CNN alone): outcomes "
                  + "; ".join(f"{o} {v}" for o, v in bare["outcomes"].items())
                  + f". Shown probability {c['mean_shown_p']:.2f} on average, right {c['right']}; right by shown p: "
                  + ", ".join(f"{band} {v}" for band, v in c["right_by_band"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--labels", required=True, type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--build", type=Path, metavar="MIRRORS", help="first lay out --data from the git mirrors")
    args = ap.parse_args(argv)
    if args.build:
        build(args.build, args.data, read_labels(args.labels))
        return 0
    if args.out is None:
        ap.error("--out is needed to evaluate")
    args.out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = read_labels(args.labels)
        rows, stripped = prediction_rows(args.data, labels)
    with open(args.out / "predictions.csv", "w", newline="", encoding="utf-8") as fp:
        writer = csv.DictWriter(fp, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = metrics_of(rows)
    metrics["headers_stripped"]["shown"] = shown_confidence(stripped, labels)
    report = task_metrics([r["truth"] for r in rows], [r["ensemble"] or "-" for r in rows])
    plot_confusion(report, args.out / "confusion_ensemble.png", "Ensemble, blind real series")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    (args.out / "summary.md").write_text(summary_markdown(metrics), encoding="utf-8")
    print(summary_markdown(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
