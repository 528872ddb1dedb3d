"""``seriesclassifier tune --train CORPUS --held CORPUS --out RUN [--real REALDEV] [--scale reduced|full]``.

Random search, then Gaussian-process-guided search over the CNN's hyper-parameters (training/tune.py);
the top-k trials averaged into an ensemble whose review threshold is chosen on the validation profile.
``--ablation`` first trains the baseline and one change per method (docs/ABLATION.md). ``--ablation --lovo
[VENDOR ...]`` instead trains each row leaving one vendor of the training corpus out (every vendor, or those
named) and scores the left-out vendor's series; the vendor of a series comes from its profile (the generator's
profile table). Resumes from RUN/trials.jsonl, RUN/ablation.jsonl, RUN/lovo_ablation.jsonl when run again.
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--train", required=True, help="generated training corpus (folder with labels.csv) or "
                        "its slice cache (.npz); one profile becomes the validation set")
    parser.add_argument("--held", help="generated held-out profiles (folder or .npz): scored only; required "
                        "except with --lovo")
    parser.add_argument("--real", help="real development set (folder with labels.csv): scored only, pixels only")
    parser.add_argument("--out", required=True, help="run folder: trial log, trials/, summary.json, picture")
    parser.add_argument("--scale", choices=("reduced", "full"), default="reduced",
                        help="reduced: ≤ 3 epochs of 2048 slices a trial (2 CPU cores); full: whole passes")
    parser.add_argument("--random-trials", type=int, default=8)
    parser.add_argument("--gp-trials", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=3, help="trials averaged into the ensemble")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--max-minutes", type=float, help="start no new search trial after this")
    parser.add_argument("--ablation", action="store_true", help="train the ablation's fixed configurations first")
    parser.add_argument("--ablation-rows", nargs="+", metavar="ROW",
                        help="with --ablation: only these rows (training/tune.py's ABLATION names, e.g. slice_gru "
                        "slice_conv1d pooled_head); default every row")
    parser.add_argument("--no-search", action="store_true", help="the ablation only")
    parser.add_argument("--lovo", nargs="*", metavar="VENDOR",
                        help="with --ablation: leave one vendor out: each row trained on the other vendors' series "
                        "of --train and scored on the vendor's (every vendor of the corpus, or those named, e.g. "
                        "SIEMENS GE PHILIPS); log RUN/lovo_ablation.jsonl; no search")


def run(args) -> int:
    import importlib.util
    import logging

    from ..errors import MissingDependencyError, TrainingError

    if args.lovo is not None and not args.ablation:
        raise TrainingError("--lovo trains the ablation's rows leaving one vendor out: give --ablation with it")
    if args.held is None and args.lovo is None:
        raise TrainingError("--held is required (except with --lovo)")
    if importlib.util.find_spec("torch") is None:
        raise MissingDependencyError("tune trains CNNs and needs torch: pip install torch")
    from ..synth.profiles import PROFILES
    from ..training.tune import TuneRun, run_tune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    summary = run_tune(TuneRun(
        train=args.train, held=args.held, out=args.out, real=args.real, scale=args.scale,
        n_random=args.random_trials, n_gp=args.gp_trials, top_k=args.top_k, seed=args.seed, threads=args.threads,
        max_minutes=args.max_minutes, ablation=args.ablation, ablation_rows=args.ablation_rows,
        search=not args.no_search and args.lovo is None, lovo=args.lovo,
        vendor_of={name: p.vendor for name, p in PROFILES.items()},
    ))
    shown = {k: v for k, v in summary.items() if k not in ("ablation", "lovo")}
    if "lovo" in summary:  # per row and held-out vendor: series right of the vendor's series
        shown["lovo"] = {name: {k: r["figures"]["lovo__mean"][k] for k in ("right", "n", "accuracy")}
                         for name, r in summary["lovo"]["rows"].items()}
    json.dump(shown, sys.stdout, indent=1, default=float)
    print()
    return 0
