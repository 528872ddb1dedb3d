"""``seriesclassifier demo``: generate a small simulated study, classify it, print what it found and why."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--studies", type=int, default=1, help="how many studies to generate (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="append", help="generator profile(s) to use (default: the generator's)")
    parser.add_argument("--keep", help="write the study here and keep it (default: a temporary folder, removed)")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def run(args) -> int:
    from ..models.bundle import load_bundle
    from ..prediction import REVIEW, UNKNOWN
    from ..run.pipeline import classify
    from ..synth.generate import generate_studies
    from ..training.evaluate import read_labels

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="seriesclassifier-demo-"))
    try:
        print(f"generating {args.studies} simulated stud{'y' if args.studies == 1 else 'ies'} in {folder} …",
              file=sys.stderr)
        generate_studies(folder, args.studies, args.seed, profiles=args.profile)
        truth = read_labels(folder / "labels.csv")
        bundle = load_bundle(args.models, load_cnn=not args.no_cnn)
        print(f"models: {bundle.describe()}", file=sys.stderr)
        rows = []
        right = 0
        predictions = list(classify(folder, bundle, use_cnn=not args.no_cnn))
        predictions.sort(key=lambda p: (p.study_uid, p.series_number or 0))
        for p in predictions:
            expected = truth.get(p.series_uid, {}).get("sequence", "?")
            label = p.sequence.label if p.sequence else "-"
            right += label == expected
            why = next((r.split(": ", 1)[1] for r in p.reasons if r.startswith("forest: ")), p.error or "")
            rows.append([
                str(p.series_number or ""),
                p.series_description[:28],
                label,
                f"{p.sequence.probability:.2f}" if p.sequence else "",
                p.orientation.label if p.orientation else "-",
                {REVIEW: "REVIEW", UNKNOWN: "UNKNOWN"}.get(p.outcome, ""),
                "ok" if label == expected else f"truth {expected}",
                why[:70],
            ])
        print(table(rows, ["#", "description", "sequence", "p", "orientation", "", "check", "why"]))
        print(f"\n{right}/{len(predictions)} series match the generator's labels")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
