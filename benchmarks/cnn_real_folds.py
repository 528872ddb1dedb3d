"""The CNN trained on generated and real slices together, measured leaving the real sources out.

    python benchmarks/cnn_real_folds.py --data REALDEV --manifest real_dev.tsv --train HEADS PARTS \\
        --out DIR [--init MODELS] [--cache-dir DIR] [--real-share 0.25] [--epochs 4] [--lr 2e-4]
        [--samples-per-epoch 16384] [--folds 5] [--control] [--answers CSV]

REALDEV is the folder ``build_real_dev.py`` writes; HEADS and PARTS are generated corpora (``cnn_corpus``).
The real sources are split into ``--folds`` groups (shuffled once, seed 0). For each group a CNN is
fine-tuned from ``--init`` (default the bundled one) on the generated corpora and the real series of every
other source (``cnn_train --real``, ``--real-share`` of the slices), and answers the group's series: every
real series is answered by a CNN that never saw its source. The figure is printed as ``cnn_real_probe.py``
prints its own (series right, with pixel facts, heads, other parts).

``--control``: one more run with the same schedule and no real series, answering all of them: what the
extra epochs do without the real data. OUT/folds.json names each source's fold (``real_dev.py --cnn-folds
OUT`` answers each real series with its fold's CNN). Each run is kept in OUT/fold_K (OUT/control) and
reused when its model exists, so an interrupted benchmark continues where it stopped.

The OsiriX samples (research and teaching use only) are never trained on. A benchmark: the data are fetched.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
from cnn_real_probe import RESEARCH_ONLY, _both, add_anatomy, real_slices, source_folds, write_answers


def trained(out: Path, train: list[Path], real: Path | None, left_out: list[str], args) -> Path:
    """A CNN fine-tuned into ``out`` (reused when there), the ``left_out`` sources' series not seen."""
    from SeriesClassifierLib.training.cnn_train import REAL_PREFIX, train_cnn

    if (out / "cnn.json").is_file() and (out / "cnn_metrics.json").is_file():
        return out
    train_cnn(train, out, cache_dir=args.cache_dir or out / "cache", init=args.init, epochs=args.epochs,
              lr=args.lr, patience=args.epochs, samples_per_epoch=args.samples_per_epoch, sharpen=args.sharpen,
              val_profile=args.val_profile, real=real, real_share=args.real_share if real else 0.0,
              exclude_profiles=[REAL_PREFIX + s for s in (*left_out, *RESEARCH_ONLY)], fit_gru=False,
              seed=args.seed, threads=2, workers=2, max_minutes=60,
              command="benchmarks/cnn_real_folds.py " + " ".join(sys.argv[1:]))
    return out


def log_probabilities(models, images: np.ndarray) -> np.ndarray:
    """The sequence log-probabilities of ``models`` (a folder, or a loaded CnnModel) on ``images``."""
    from SeriesClassifierLib.models.cnn import CnnModel

    model = models if isinstance(models, CnnModel) else CnnModel.load(models)
    return np.log(model.infer(images)["sequence"] + 1e-9)


def main(argv: list[str] | None = None) -> int:
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--manifest", type=Path, help="real_dev.tsv: also split every figure by anatomy")
    ap.add_argument("--train", required=True, nargs="+", type=Path, help="generated corpora (labels.csv inside)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--init", type=Path, default=default_models_dir())
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--real-share", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--samples-per-epoch", type=int, default=16384)
    ap.add_argument("--sharpen", type=float, default=0.35)
    ap.add_argument("--val-profile", default="siemens_trio_3t_vb17", help="generated profile for early stopping")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--control", action="store_true", help="also the same runs without real series")
    ap.add_argument("--answers", type=Path, metavar="CSV", help="each series' answer from its fold's CNN")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",  # the trainings' progress
                        handlers=[logging.FileHandler(args.out / "train.log")])
    start = CnnModel.load(args.init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, uids, _, labels = real_slices(args.data, start)
    if args.manifest:
        add_anatomy(labels, args.manifest)
    classes = start.config.sequence_classes
    sources = np.array([labels[u]["source"] for u in uids])
    log_p = np.zeros((len(uids), len(classes)))
    folds = source_folds(sources, args.folds)
    (args.out / "folds.json").write_text(json.dumps({s: k for k, group in enumerate(folds) for s in group},
                                                    indent=1), encoding="utf-8")  # for real_dev.py --cnn-folds
    for k, group in enumerate(folds):
        models = trained(args.out / f"fold_{k}", args.train, args.data, group, args)
        test = np.isin(sources, group)
        log_p[test] = log_probabilities(models, images[test])
        print(f"fold {k} ({', '.join(group)}): {_both(log_p[test], uids[test], classes, labels)}", flush=True)
    print(f"generated and real slices, real sources left out: {_both(log_p, uids, classes, labels)}")
    if args.answers:
        write_answers(args.answers, log_p, uids, classes, labels)
    if args.control:
        control = log_probabilities(trained(args.out / "control", args.train, None, [], args), images)
        print(f"control, the same fine-tune on generated slices alone: {_both(control, uids, classes, labels)}")
    print(f"the starting CNN ({args.init}): {_both(log_probabilities(start, images), uids, classes, labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
