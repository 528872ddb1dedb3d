"""What the study context is worth for pre/post-contrast T1 when the contrast tags are gone.

    python benchmarks/contrast_context.py --rows HELDOUT.jsonl.gz

HELDOUT: generated header rows of held-out profiles (``seriesclassifier synth OUT.jsonl.gz --headers-only
--profile holdout``), whole studies. The T1 series are scored four ways, by the bundled forest:

- headers as generated, forest alone (``predict_series`` without the decision step) and forest with the
  study-context step of ``run.pipeline.decide``;
- the same with ContrastBolusAgent (and its route/volume) deleted from every series and the descriptions
  blanked, as anonymisers and some sites leave them; the study is read again, so the context features
  (order in the study, same protocol before, dynamic run before) are all that is left.

Prints the accuracy on T1 pre/post for each, the T1 series answered wrong without review, and how often
the answers the context sent to a person were right: the repeat hint (the last of several series of one
protocol, in a study naming no agent), a contrast-marked description the study's agent tags contradict,
and a pre-contrast answer nothing in the headers could contradict (no description, no agent recorded). A
benchmark (generated data, figures to read), not a test.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from SeriesClassifierLib.models.bundle import ModelBundle, load_bundle
from SeriesClassifierLib.models.features import add_study_context
from SeriesClassifierLib.run.pipeline import decide
from SeriesClassifierLib.series import Series
from SeriesClassifierLib.training.site_training import read_base_rows

T1 = ("T1_2D_PRE", "T1_2D_POST", "T1_3D_PRE", "T1_3D_POST")
CONTRAST_TAGS = ("ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume", "ContrastBolusStartTime")
DESCRIPTIONS = ("SeriesDescription", "ProtocolName")


def without_contrast_tags(series: list[Series]) -> list[Series]:
    stripped = copy.deepcopy(series)
    for s in stripped:
        for key in CONTRAST_TAGS + DESCRIPTIONS:
            s.header.pop(key, None)
        s.header.pop("StudyContext", None)
        s.series_description = ""
    add_study_context(stripped)
    return stripped


def scores(series: list[Series], labels: dict, bundle: ModelBundle) -> tuple[str, str, int, str]:
    """(forest alone, forest + study context) right / T1 series, the T1 series the product answers wrongly
    without sending them to review, and how the answers the context sent to a person did."""
    alone = with_context = n = hinted = hinted_right = wrong_unreviewed = 0
    for s in series:
        truth = labels[s.series_uid]["sequence"]
        out = bundle.forest.predict(s)
        decided = decide(s, {"forest": out}, bundle)
        if any("a person should confirm" in r for r in decided.reasons):
            hinted += 1
            hinted_right += decided.sequence.label == truth
        if truth in T1:
            alone += out.sequence.label == truth
            with_context += decided.sequence.label == truth
            wrong_unreviewed += decided.sequence.label != truth and not decided.needs_review
            n += 1
    return f"{alone}/{n}", f"{with_context}/{n}", wrong_unreviewed, f"{hinted_right} right of {hinted}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", required=True, type=Path)
    args = ap.parse_args(argv)
    series, labels = read_base_rows(args.rows)
    add_study_context(series)
    bundle = load_bundle(load_cnn=False)
    print("| T1 pre/post, generated held-out | forest alone | forest + study context | of which wrong, not reviewed "
          "| sent to a person by the context |")
    print("|---|---|---|---|---|")
    for name, rows in (("headers as generated", series), ("contrast tags and descriptions removed",
                                                          without_contrast_tags(series))):
        alone, context, wrong_unreviewed, hinted = scores(rows, labels, bundle)
        print(f"| {name} | {alone} | {context} | {wrong_unreviewed} | {hinted} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
