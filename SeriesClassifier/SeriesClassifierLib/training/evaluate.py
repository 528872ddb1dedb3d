"""Scoring predictions against reference labels: accuracy, macro-F1, per-class tables, ECE, confusion PNGs.

Works on ``SeriesPrediction`` objects (fresh from ``classify`` or read back from a results
JSON) and a labels CSV with at least ``series_uid`` and ``sequence`` (the generator's
labels.csv: series_uid, study_uid, sequence, orientation, contrast, acquisition,
fat_suppressed, derived, vendor, field_strength, profile). Series without a label are
counted, not scored; series the classifier could not handle count as wrong.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..models.calibration import expected_calibration_error
from ..prediction import SeriesPrediction, TaskPrediction
from ..vocabulary import load_vocabulary

NO_PREDICTION = "(none)"


def read_labels(path: str | Path) -> dict[str, dict[str, str]]:
    """labels CSV → {series_uid: {column: value}}; raises ValueError naming the file when unusable."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            uid_column = next((c for c in ("series_uid", "SeriesInstanceUID") if c in columns), None)
            if uid_column is None:
                raise ValueError(f"{path}: needs a series_uid column (has: {', '.join(columns) or 'nothing'})")
            out = {}
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                if row.get(uid_column):
                    out[row[uid_column]] = row
    except (OSError, UnicodeDecodeError, csv.Error) as e:  # a binary file, a folder, a vanished file
        raise ValueError(f"{path}: not a readable labels CSV ({e})") from e
    return out


def is_label_store(path: str | Path) -> bool:
    """A SQLite label store (by its file signature), as opposed to a labels CSV."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def read_any_labels(path: str | Path) -> dict[str, dict[str, str]]:
    """Reference labels from a labels CSV or from a label store (its verified labels only).

    A folder means the store that ``classify``/``review`` keep for that folder.
    """
    from ..labels.store import LabelStore, default_store_path

    p = Path(path)
    if p.is_dir():
        p = default_store_path(p)
    if is_label_store(p):
        with LabelStore(p, create=False) as store:
            return store.verified_labels()
    if not p.is_file():
        raise ValueError(f"{p}: no labels CSV or label store there")
    return read_labels(p)


def read_predictions(path: str | Path) -> list[SeriesPrediction]:
    """A results JSON written by ``classify`` (a list, or {"series": [...]}) back into predictions."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = data.get("series", []) if isinstance(data, dict) else data
    known = set(SeriesPrediction.__dataclass_fields__)
    # classify's JSON carries extras (top3) beside the record's own fields
    return [SeriesPrediction.from_dict({k: v for k, v in d.items() if k in known}) for d in items]


def _task_value(p: SeriesPrediction, task: str) -> TaskPrediction | None:
    if task in ("sequence", "orientation"):
        return getattr(p, task)
    return p.attributes.get(task)


def _truth(row: dict[str, str], task: str) -> str | None:
    from ..models.forest import normalise_label  # the same spelling rules as training

    try:
        return normalise_label(task, row.get(task))
    except ValueError:
        return None


def unknown_codes(labels: dict[str, dict[str, str]], tasks: tuple[str, ...] = ("sequence", "orientation")
                  ) -> tuple[list[str], int]:
    """(labels whose code is not in the vocabulary, as "series: why"; how many labels were given at all)."""
    from ..models.forest import normalise_label

    bad, given = [], 0
    for uid, row in labels.items():
        for task in tasks:
            if not row.get(task):
                continue
            given += 1
            try:
                normalise_label(task, row[task])
            except ValueError as exc:
                bad.append(f"series {uid}: {exc}")
    return bad, given


def task_metrics(truth: list[str], pred: list[str], probs: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix and ECE for one task."""
    classes = sorted(set(truth) | (set(pred) - {NO_PREDICTION}))
    if NO_PREDICTION in pred:
        classes.append(NO_PREDICTION)
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(truth, pred):
        cm[index[t], index[p]] += 1
    per_class = {}
    f1s = []
    for c in classes:
        if c == NO_PREDICTION:
            continue
        i = index[c]
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        support = int(cm[i, :].sum())
        per_class[c] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                        "f1": round(float(f1), 4), "support": support}
        if support:
            f1s.append(f1)
    n = len(truth)
    result: dict[str, Any] = {
        "n": n,
        "accuracy": round(float(np.trace(cm) / n), 4) if n else None,
        "macro_f1": round(float(np.mean(f1s)), 4) if f1s else None,
        "per_class": per_class,
        "classes": classes,
        "confusion": cm.tolist(),
    }
    if probs is not None and n:
        known = [c for c in classes if c != NO_PREDICTION]
        P = np.array([[pr.get(c, 0.0) for c in known] for pr in probs], dtype=float)
        rows = P.sum(axis=1)
        ok = rows > 0
        if ok.any():
            y = np.array([known.index(t) if t in known else -1 for t in truth])
            P = P[ok] / rows[ok, None]
            result["ece"] = round(expected_calibration_error(P, y[ok]), 4)
    return result


def evaluate_predictions(
    predictions: Iterable[SeriesPrediction], labels: dict[str, dict[str, str]], tasks: list[str] | None = None
) -> dict[str, Any]:
    """Metrics per task over the labelled series, plus review statistics and a per-profile breakdown."""
    vocab = load_vocabulary()
    tasks = tasks or ["sequence", "orientation", *vocab.attribute_codes]
    predictions = list(predictions)
    labelled = [p for p in predictions if p.series_uid in labels]
    report: dict[str, Any] = {
        "n_predictions": len(predictions),
        "n_labelled": len(labelled),
        "n_unlabelled": len(predictions) - len(labelled),
        "n_labels_without_prediction": len(set(labels) - {p.series_uid for p in predictions}),
        "n_errors": sum(1 for p in labelled if p.error),
        "tasks": {},
    }
    for task in tasks:
        truth, pred, probs = [], [], []
        for p in labelled:
            t = _truth(labels[p.series_uid], task)
            if t is None:
                continue
            value = _task_value(p, task)
            truth.append(t)
            pred.append(value.label if value is not None else NO_PREDICTION)
            probs.append(value.probabilities if value is not None else {})
        if truth and any(v != NO_PREDICTION for v in pred):  # a task no model answers is not scored
            report["tasks"][task] = task_metrics(truth, pred, probs)
    seq = [(p, _truth(labels[p.series_uid], "sequence")) for p in labelled]
    seq = [(p, t) for p, t in seq if t is not None]
    if seq:
        flagged = [p.needs_review for p, _ in seq]
        correct = [p.sequence is not None and p.sequence.label == t for p, t in seq]
        accepted = [c for c, f in zip(correct, flagged) if not f]
        report["review"] = {
            "flagged_fraction": round(float(np.mean(flagged)), 4),
            "accuracy_not_flagged": round(float(np.mean(accepted)), 4) if accepted else None,
            "errors_caught": int(sum(1 for c, f in zip(correct, flagged) if f and not c)),
            "errors_missed": int(sum(1 for c, f in zip(correct, flagged) if not f and not c)),
        }
    profiles = sorted({labels[p.series_uid].get("profile", "") for p in labelled} - {""})
    if profiles:
        report["per_profile"] = {}
        for profile in profiles:
            subset = [p for p in labelled if labels[p.series_uid].get("profile") == profile]
            pairs = [(p, _truth(labels[p.series_uid], "sequence")) for p in subset]
            pairs = [(p, t) for p, t in pairs if t is not None]
            if pairs:
                acc = np.mean([p.sequence is not None and p.sequence.label == t for p, t in pairs])
                report["per_profile"][profile] = {"n": len(pairs), "sequence_accuracy": round(float(acc), 4)}
    return report


def plot_confusion(task_report: dict[str, Any], path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = task_report["classes"]
    cm = np.array(task_report["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.42 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    acc = task_report.get("accuracy")
    f1 = task_report.get("macro_f1")
    ax.set_title(f"{title}\naccuracy {acc:.3f}, macro-F1 {f1:.3f}, n={task_report['n']}" if acc is not None else title,
                 fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path, title: str = "") -> list[Path]:
    """metrics.json and confusion_<task>.png for every task into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json"]
    (out / "metrics.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    for task, task_report in report.get("tasks", {}).items():
        written.append(plot_confusion(task_report, out / f"confusion_{task}.png", f"{title} {task}".strip()))
    return written


def task_figures(r: dict[str, Any]) -> str:
    """One task's figures as the summary and the model card print them: 'accuracy 0.9917, macro-F1 0.9926,
    ECE 0.028 (n=1211)' (ECE where the report has it)."""
    ece = f", ECE {r['ece']:.3f}" if "ece" in r else ""
    return f"accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}{ece} (n={r['n']})"


def review_figures(rv: dict[str, Any]) -> str:
    """The review flag's figures: '17.6% flagged, accuracy of the others 0.9931'."""
    return f"{rv['flagged_fraction']:.1%} flagged, accuracy of the others {rv['accuracy_not_flagged']}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"{report['n_labelled']} labelled series ({report['n_errors']} not classified)"]
    for task, r in report.get("tasks", {}).items():
        lines.append(f"  {task:15s} {task_figures(r)}")
    if "review" in report:
        rv = report["review"]
        lines.append(f"  needs_review    {review_figures(rv)}; errors caught {rv['errors_caught']}, "
                     f"missed {rv['errors_missed']}")
    return lines


def per_class_table(task_report: dict[str, Any]) -> str:
    """A markdown table of one task's per-class precision/recall/F1/support."""
    rows = ["| class | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    for c, m in task_report["per_class"].items():
        rows.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return "\n".join(rows)


def compare_bundles(
    new: list[SeriesPrediction], old: list[SeriesPrediction], labels: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Two bundles on the same labelled series: metrics side by side and the series each one got right alone."""
    new_report, old_report = evaluate_predictions(new, labels), evaluate_predictions(old, labels)
    tasks = {}
    for task in sorted(set(new_report["tasks"]) | set(old_report["tasks"])):
        n, o = new_report["tasks"].get(task, {}), old_report["tasks"].get(task, {})
        tasks[task] = {
            "new": {k: n.get(k) for k in ("accuracy", "macro_f1", "ece", "n")},
            "baseline": {k: o.get(k) for k in ("accuracy", "macro_f1", "ece", "n")},
            "accuracy_change": (round(n["accuracy"] - o["accuracy"], 4)
                                if n.get("accuracy") is not None and o.get("accuracy") is not None else None),
            "recall": {c: {"new": n.get("per_class", {}).get(c, {}).get("recall"),
                           "baseline": o.get("per_class", {}).get(c, {}).get("recall")}
                       for c in sorted(set(n.get("per_class", {})) | set(o.get("per_class", {})))},
        }
    old_by_uid = {p.series_uid: p for p in old}
    fixed, broken = [], []
    for p in new:
        truth = _truth(labels.get(p.series_uid, {}), "sequence")
        before = old_by_uid.get(p.series_uid)
        if truth is None or before is None:
            continue
        now_label = p.sequence.label if p.sequence else None
        old_label = before.sequence.label if before.sequence else None
        row = {"series_uid": p.series_uid, "truth": truth, "baseline": old_label, "new": now_label}
        if now_label == truth and old_label != truth:
            fixed.append(row)
        elif now_label != truth and old_label == truth:
            broken.append(row)
    return {"n_labelled": new_report["n_labelled"], "tasks": tasks, "fixed": fixed, "broken": broken,
            "review": {"new": new_report.get("review"), "baseline": old_report.get("review")}}


def comparison_markdown(comparison: dict[str, Any], new_name: str = "new", old_name: str = "baseline") -> str:
    lines = [f"{comparison['n_labelled']} labelled series, both bundles on the same series.", "",
             f"| task | {old_name} accuracy | {new_name} accuracy | change "
             f"| {old_name} macro-F1 | {new_name} macro-F1 |",
             "|---|---|---|---|---|---|"]

    def f(v):
        return "—" if v is None else f"{v:.4f}"

    for task, t in comparison["tasks"].items():
        lines.append(f"| {task} | {f(t['baseline']['accuracy'])} | {f(t['new']['accuracy'])} | "
                     f"{f(t['accuracy_change'])} | {f(t['baseline']['macro_f1'])} | {f(t['new']['macro_f1'])} |")
    for title, rows in (("Fixed by the new bundle", comparison["fixed"]),
                        ("Broken by the new bundle", comparison["broken"])):
        lines += ["", f"{title}: {len(rows)}", ""]
        if rows:
            lines += ["| series | truth | baseline | new |", "|---|---|---|---|"]
            lines += [f"| {r['series_uid']} | {r['truth']} | {r['baseline']} | {r['new']} |" for r in rows]
    return "\n".join(lines) + "\n"


def write_comparison(comparison: dict[str, Any], out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(comparison, indent=1), encoding="utf-8")
    (out / "comparison.md").write_text(comparison_markdown(comparison), encoding="utf-8")
    return [out / "comparison.json", out / "comparison.md"]
