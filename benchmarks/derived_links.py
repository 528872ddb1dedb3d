"""Derived series tied to their source: how often the link is right, and what it does to the answers.

    python benchmarks/derived_links.py --data GEN [GEN ...] [--no-cnn | --no-forest] [--strip]
    python benchmarks/derived_links.py --data REALDEV --no-cnn --list

GEN: folders of generated studies with their labels.csv (``seriesclassifier synth OUT --profile holdout
--study-type stroke|research|mra``, or the held-out pixel corpus); REALDEV: the real development set
(labels.csv without a ``derived`` column: a series counts as derived by its ImageType). Never the blind set.

Links (``models/derived.py``, made at header time by ``run.pipeline.read_all_series``): a link is right
when the source's label is one a scanner makes that derived class from (``SOURCE_LABELS``, this
benchmark's truth table: the generator does not write which series it derived a series from). Recall
counts the derived series with such a series in their study. Accuracy: the bundled models' decided
answer on the derived series before (link removed) and after (link kept) the decide-time restriction
(``models/context.apply_derived_context``). ``--strip`` repeats it all with ImageType values 3 and up
removed from every series (value 1 DERIVED/ORIGINAL and 2 stay): the forest and the linker read less.
A benchmark (data are generated or fetched, figures to read), not a test.
"""

from __future__ import annotations

import argparse
import copy
import csv
from collections import Counter
from pathlib import Path

from SeriesClassifierLib.models.bundle import ModelBundle, load_bundle
from SeriesClassifierLib.models.derived import LINK_KEY, is_derived, referenced_owners
from SeriesClassifierLib.models.features import add_study_context
from SeriesClassifierLib.prediction import ModelOutput
from SeriesClassifierLib.run.pipeline import decide, read_all_series, resolve_refs
from SeriesClassifierLib.series import Series, SeriesRef

# derived label -> labels of the series it is made from (truth for the link)
SOURCE_LABELS = {
    "ADC": {"DWI"}, "DIFFUSION_DERIVED": {"DWI"}, "DWI": {"DWI"}, "MRA_MIP": {"TOF_MRA"},
    "SWI": {"SWI_MAG", "SWI_PHASE"}, "SWI_MINIP": {"SWI_MAG", "SWI_PHASE", "SWI"}, "SWI_PHASE": {"SWI_MAG"},
}


def read(folders: list[Path]) -> tuple[list[Series], list[SeriesRef], dict[str, dict[str, str]]]:
    labels: dict[str, dict[str, str]] = {}
    refs: list[SeriesRef] = []
    for folder in folders:
        with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
            labels.update({r["series_uid"]: r for r in csv.DictReader(f)})
        refs += resolve_refs(folder)
    series = read_all_series(refs)
    return [s for s in series if s.series_uid in labels and not s.skipped], refs, labels


def stripped(series: list[Series], refs: list[SeriesRef]) -> list[Series]:
    """ImageType cut to its first two values; study context and links made again from what is left."""
    out = copy.deepcopy(series)
    for s in out:
        s.header["ImageType"] = list(s.header.get("ImageType") or [])[:2]
    add_study_context(out, referenced_owners(refs, out))
    return out


def counts_as_derived(s: Series, row: dict[str, str]) -> bool:
    if "derived" in row:
        return row["derived"] == "YES" and row["sequence"] in SOURCE_LABELS
    return is_derived(s.header)


def link_figures(series: list[Series], labels: dict[str, dict[str, str]]) -> dict[str, object]:
    by_uid = {s.series_uid: s for s in series}
    study_labels: dict[str, Counter[str]] = {}
    for s in series:
        study_labels.setdefault(s.study_uid, Counter())[labels[s.series_uid]["sequence"]] += 1
    linkable = linked = right = other = alone = 0
    wrong: Counter[str] = Counter()
    for s in series:
        row = labels[s.series_uid]
        link = s.header.get(LINK_KEY)
        wanted = SOURCE_LABELS.get(row["sequence"])
        if wanted is None or not counts_as_derived(s, row):
            other += link is not None
            continue
        others = study_labels[s.study_uid] - Counter([row["sequence"]])  # the study's other series
        if not any(others[label] for label in wanted):
            alone += 1
        else:
            linkable += 1
        if link is None:
            continue
        linked += 1
        source = labels.get(link["series_uid"], {}).get("sequence", "?") if link["series_uid"] in by_uid else "?"
        if source in wanted:
            right += 1
        else:
            wrong[f"{row['sequence']}<-{source}"] += 1
    return {"derived": linkable + alone, "with a source in the study": linkable, "alone": alone,
            "linked": linked, "right": right, "other links": other, "wrong": dict(wrong)}


def model_outputs(series: list[Series], bundle: ModelBundle, cnn: dict[str, ModelOutput] | None
                  ) -> dict[str, dict[str, ModelOutput]]:
    out = {}
    for s in series:
        outputs = {"forest": bundle.forest.predict(s)} if bundle.forest is not None else {}
        if cnn is not None and s.series_uid in cnn:
            outputs["cnn"] = cnn[s.series_uid]
        out[s.series_uid] = outputs
    return out


def accuracy(series: list[Series], labels: dict[str, dict[str, str]], bundle: ModelBundle,
             outputs: dict[str, dict[str, ModelOutput]], misses: Counter[str]) -> tuple[int, int, int, int, int]:
    """(derived series, right before, right after, answers changed, changed and sent to review); ``misses``
    counts the derived series still wrong after the restriction, and why it did not help."""
    n = before = after = changed = reviewed = 0
    for s in series:
        row = labels[s.series_uid]
        if not counts_as_derived(s, row):
            continue
        n += 1
        unlinked = copy.copy(s)
        unlinked.header = {k: v for k, v in s.header.items() if k != LINK_KEY}
        first = decide(unlinked, outputs[s.series_uid], bundle)
        second = decide(s, outputs[s.series_uid], bundle)
        before += first.sequence is not None and first.sequence.label == row["sequence"]
        after += second.sequence is not None and second.sequence.label == row["sequence"]
        moved = first.sequence is not None and second.sequence is not None and \
            first.sequence.label != second.sequence.label
        changed += moved
        if moved:
            misses[f"moved {first.sequence.label} -> {second.sequence.label}, truth {row['sequence']}"] += 1
        reviewed += moved and second.needs_review
        if second.sequence is None or second.sequence.label != row["sequence"]:
            link = s.header.get(LINK_KEY)
            source = ("linked, source " + (", ".join(link["facts"]) or "of no known family")) if link else "no link"
            misses[f"{row['sequence']} read as {second.sequence.label if second.sequence else '-'}; {source}"] += 1
    return n, before, after, changed, reviewed


def figures(series: list[Series], labels: dict[str, dict[str, str]], bundle: ModelBundle,
            cnn: dict[str, ModelOutput] | None) -> Counter[str]:
    """Link and accuracy counts of one folder's series (UIDs are unique within a folder only)."""
    f = link_figures(series, labels)
    total: Counter[str] = Counter({k: v for k, v in f.items() if isinstance(v, int)})
    total.update({f"wrong {k}": v for k, v in f["wrong"].items()})
    misses: Counter[str] = Counter()
    n, before, after, changed, reviewed = accuracy(series, labels, bundle, model_outputs(series, bundle, cnn), misses)
    total.update({f"miss {k}": v for k, v in misses.items()})
    total.update({"n": n, "before": before, "after": after, "changed": changed, "reviewed": reviewed,
                  "series": len(series)})
    return total


def report(name: str, total: Counter[str], models: str) -> None:
    linked, right, linkable = total["linked"], total["right"], total["with a source in the study"]
    wrong = {k[6:]: v for k, v in total.items() if k.startswith("wrong ")}
    print(f"\n## {name}: {total['series']} series, {total['derived']} derived ({total['alone']} without their "
          f"source in the study)")
    print(f"links: precision {right}/{linked}, recall {right}/{linkable}; links from other derived series "
          f"(MPRs, maps of no family): {total['other links']}; wrong: {wrong or 'none'}")
    print(f"derived-class accuracy ({models}, decided): before {total['before']}/{total['n']}, after "
          f"{total['after']}/{total['n']}; {total['changed']} answers changed, {total['reviewed']} of them sent "
          f"to review")
    for miss, count in sorted(((k[5:], v) for k, v in total.items() if k.startswith("miss ")), key=lambda kv: -kv[1]):
        print(f"  {'' if miss.startswith('moved') else 'still wrong: '}{miss} ({count})")


def list_links(series: list[Series], labels: dict[str, dict[str, str]]) -> None:
    by_uid = {s.series_uid: s for s in series}
    for s in series:
        link = s.header.get(LINK_KEY)
        if is_derived(s.header) or link:
            source = by_uid.get(link["series_uid"]) if link else None
            image_type = "/".join(s.header.get("ImageType") or [])[:40]
            print(f"  {labels[s.series_uid]['sequence']:18} #{s.series_number} {image_type:40}"
                  f" -> {labels[source.series_uid]['sequence'] + ' #' + str(source.series_number) if source else '-'}"
                  f"{'  (' + link['how'] + ')' if link else ''}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True)
    parser.add_argument("--no-cnn", action="store_true", help="forest only (no pixels read)")
    parser.add_argument("--no-forest", action="store_true", help="CNN only (the linker still reads the headers)")
    parser.add_argument("--strip", action="store_true", help="also with ImageType values 3+ removed")
    parser.add_argument("--list", action="store_true", help="list every derived series and its link")
    args = parser.parse_args(argv)
    bundle = load_bundle(load_cnn=not args.no_cnn, load_forest=not args.no_forest)
    as_written: Counter[str] = Counter()
    without: Counter[str] = Counter()
    for folder in args.data:
        series, refs, labels = read([folder])
        cnn = None
        if not args.no_cnn and bundle.cnn is not None:
            cnn = {s.series_uid: bundle.cnn.predict(s) for s in series if counts_as_derived(s, labels[s.series_uid])}
        as_written.update(figures(series, labels, bundle, cnn))
        if args.list:
            print(f"# {folder}")
            list_links(series, labels)
        if args.strip:
            without.update(figures(stripped(series, refs), labels, bundle, cnn))
    models = " + ".join(name for name, m in (("forest", bundle.forest), ("CNN", cnn)) if m is not None)
    report("headers as written", as_written, models)
    if args.strip:
        report("ImageType values 3+ removed", without, models)


if __name__ == "__main__":
    main()
