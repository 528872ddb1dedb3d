"""Series-level accuracy of one or more CNNs on a labelled generated corpus, as ``cnn_train``'s final test.

    python benchmarks/cnn_heldout.py --data HELDOUT --models CNN [CNN ...] [--cache CACHE.npz]

HELDOUT is a corpus ``seriesclassifier synth HELDOUT --studies 10 --seed 11 --profile holdout`` writes. It
compares networks on images of one generator: a CNN trained on an older generator scored on today's, or
the other way round (docs/REAL_DATA.md, session 18). The slices are sampled once, with the first model's
settings, and kept in CACHE (default: a temporary file); every model must share those settings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.training.cnn_train import build_cache, evaluate

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--models", required=True, nargs="+", type=Path)
    ap.add_argument("--cache", type=Path, help="where the sampled slices are kept (reused when it exists)")
    args = ap.parse_args(argv)
    models = [CnnModel.load(m) for m in args.models]
    if any(m.config.slice_options != models[0].config.slice_options for m in models):
        ap.error("the models sample slices differently: score them in separate runs")
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_cache(args.data, models[0].config, args.cache or Path(tmp) / "slices.npz", workers=1)
        for path, model in zip(args.models, models):
            sequence = evaluate(model, cache)["sequence"]
            print(f"{path}: {args.data}: sequence accuracy {sequence['accuracy']:.3f} "
                  f"(macro F1 {sequence['macro_f1']:.3f}, {len(cache.series_labels['sequence'])} series)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
