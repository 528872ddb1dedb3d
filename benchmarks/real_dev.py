"""The real scanner development set: forest, CNN and ensemble, per vendor and per class.

    python benchmarks/real_dev.py --data REALDEV --out docs/real_dev [--manifest real_dev.tsv]

REALDEV is the folder ``build_real_dev.py`` writes (``../shared/real-dev``): one folder per
series and ``labels.csv`` (series_uid, sequence, orientation, vendor, case, source). Nothing
here is in CI: the data are fetched from public repositories, not shipped.

How each figure is made, so none is measured on data its model saw:

- **forest**: leave-source-out. For each source repository, a forest is fitted with the
  bundled recipe (``training.forest_training.fit_forest``) on the generated training rows plus
  the real series of every *other* source (each weighted ``--real-weight``), then predicts the
  left-out source. Research-only sources (``RESEARCH_ONLY``) are never trained on.
- **CNN**: the bundled CNN as is; or, with ``--cnn-folds``, a CNN trained on real series too, each series
  answered by the one whose training left its source out (``cnn_real_folds.py``). Those networks carry no
  novelty reference (``scripts/fit_cnn_novelty.py`` fits the bundle's), so none of their answers is set
  aside as unfamiliar: the ensemble figure is not comparable with the bundle's.
- **ensemble**: nested leave-source-out. For each source, the pooling weights (``ensemble.fit_params``)
  are fitted on the other sources' forest and CNN outputs and on shifted data (below), then the review
  threshold with every review rule in place (``training.review_fit``) on those sources alone; then
  ``pipeline.decide`` answers for the left-out source with everything the product does (study context,
  novelty, not-brain, stripped headers).
- **headers stripped**: the same nested decision for each series as its files would be with only identity and
  pixels left (``headers_stripped``): the forest is left out and the CNN answers alone; what the product
  lets through unreviewed then, and how far the probability it shows can be trusted (``shown_confidence``),
  with the CNN's weight alone fitted on the other sources (``fit_pooling``) and, to compare, its pooling weight.
- **leave-one-vendor-out on generated data**: forests fitted on the generated rows of all but
  one vendor, scored on that vendor. These outputs are the shifted data the pooling weights are also
  fitted on (``--shifted-share``, half the weight by default): on development series alone, where the
  forest is right on nine in ten, the likelihood favours a sharper forest than a header from a vendor it
  never saw deserves.
- **generated held-out profiles** (``--gen-heldout``): the bundle's recipe (generated rows plus
  every trainable real source) scored on header rows of profiles no training row comes from.

For the generated rows, the tables give the forest's wrong answers at p ≥ 0.9 and, pooled alone at the
fitted forest weight as the product pools a series without pixels, at p ≥ 0.5 (so not sent to review by
confidence) and p ≥ 0.9.

Intervals are 95 % bootstrap percentiles over studies (series of one study move together).
Writes metrics.json, predictions.csv, confusion_<model>.png, summary.md and
ensemble_fitted.json (the pooling fitted on every source's outputs, for the bundle) to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from cnn_gradcam_docs import KEEP as STRIPPED_KEEPS  # what a stripped file keeps: one definition

from SeriesClassifierLib.models.bundle import ModelBundle, default_models_dir, load_bundle
from SeriesClassifierLib.models.ensemble import EnsembleParams, combine, fit_alone_weight, fit_params
from SeriesClassifierLib.models.plausibility import rules_broken
from SeriesClassifierLib.prediction import OUTCOMES, ModelOutput, SeriesPrediction
from SeriesClassifierLib.run.pipeline import decide, read_all_series, resolve_refs
from SeriesClassifierLib.series import Series
from SeriesClassifierLib.training.evaluate import plot_confusion, task_metrics
from SeriesClassifierLib.training.forest_training import fit_forest
from SeriesClassifierLib.training.header_augment import EXCERPT_RATE, LONG_RUN_RATE, RECON_RATE
from SeriesClassifierLib.training.review_fit import fit_review_rules, fit_review_threshold, fit_unknown_threshold
from SeriesClassifierLib.training.site_training import BASE_ROWS, read_base_rows

# OsiriX samples: research and teaching use only; evaluate on them, never train on them.
RESEARCH_ONLY = ("orthanc-mirrors/orthanc-tests",)
WEIGHT_GRID = np.exp(np.linspace(np.log(0.1), np.log(3.0), 18))  # bounded: no model may be raised to p^8
TARGET_ACCURACY = 0.98  # of the series not sent to review
# the CNN's and the pooling's code: the forest imports none of it, so a change there keeps its outputs
NOT_THE_FOREST = ("cnn.py", "cnn_train.py", "gradcam.py", "ensemble.py")


def log(msg: str) -> None:
    print(f"[real_dev {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def read_real(data: Path, cache: Path) -> tuple[list[Series], dict[str, dict[str, str]]]:
    with open(data / "labels.csv", newline="", encoding="utf-8") as f:
        labels = {r["series_uid"]: r for r in csv.DictReader(f)}
    if cache.is_file():
        series = [Series.from_dict(json.loads(line)) for line in cache.read_text(encoding="utf-8").splitlines()]
        from SeriesClassifierLib.models.features import add_study_context

        add_study_context(series)
    else:
        series = read_all_series(resolve_refs(data))
        cache.write_text("\n".join(json.dumps(s.to_dict()) for s in series), encoding="utf-8")
    series = [s for s in series if s.series_uid in labels and not s.skipped]
    log(f"{len(series)} labelled real series from {data}")
    return series, labels


def add_anatomy(labels: dict[str, dict[str, str]], manifest: Path | None) -> None:
    if manifest is None or not manifest.is_file():
        return
    with open(manifest, newline="", encoding="utf-8") as f:
        anatomy = {r["series_uid"]: r["anatomy"] for r in csv.DictReader(f, delimiter="\t")}
    for uid, row in labels.items():
        row["anatomy"] = anatomy.get(uid, "")


def output_from_dict(d: dict) -> ModelOutput:
    return SeriesPrediction.from_dict({"series_uid": "", "models": {"m": d}}).models["m"]


def cnn_outputs(series: list[Series], cache: Path, labels: dict[str, dict[str, str]],
                folds: Path | None = None) -> dict[str, ModelOutput]:
    """The CNN's output per series: the bundled CNN's, or with ``folds`` (``cnn_real_folds.py``'s OUT) the
    CNN of the series' source's fold, which never saw that source."""
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("folds") == str(folds or ""):
            return {k: output_from_dict(v) for k, v in saved["outputs"].items()}
    from SeriesClassifierLib.models.cnn import CnnModel

    fold_of = json.loads((folds / "folds.json").read_text(encoding="utf-8")) if folds else {}
    bundled = None if folds else load_bundle(load_forest=False).cnn
    by_fold = {k: CnnModel.load(folds / f"fold_{k}") for k in set(fold_of.values())}
    out: dict[str, ModelOutput] = {}
    for s in series:
        source = labels[s.series_uid]["source"]
        if folds and source not in fold_of:
            log(f"cnn: no answer for {s.series_uid}: its source {source} is in no fold of {folds}")
            continue
        cnn = by_fold[fold_of[source]] if folds else bundled
        try:
            out[s.series_uid] = cnn.predict(s)
        except Exception as exc:  # noqa: BLE001 - a series without usable pixels has no CNN answer
            log(f"cnn: no answer for {s.series_uid}: {exc}")
    cache.write_text(json.dumps({"folds": str(folds or ""), "outputs": {k: asdict(v) for k, v in out.items()}}),
                     encoding="utf-8")
    return out


# ----------------------------------------------------------------------------- models


def recipe(args) -> dict:
    """The forest's training settings from the command line (the bundle's by default)."""
    return {"n_estimators": args.trees, "seed": args.seed, "field_dropout": args.field_dropout,
            "excerpt_rate": args.excerpt_rate, "long_run_rate": args.long_run_rate, "recon_rate": args.recon_rate,
            "sequence_max_features": args.sequence_max_features}


def _max_features(text: str) -> float | str:
    return text if text in ("sqrt", "log2") else float(text)


def forest_recipe_key(args) -> str:
    """What the leave-source-out forests depend on: their outputs are reused only while it is unchanged."""
    import hashlib

    h = hashlib.sha256(Path(args.gen_rows).read_bytes())
    h.update(json.dumps([args.real_weight, recipe(args)], sort_keys=True).encode())
    lib = Path(fit_forest.__code__.co_filename).parents[1]
    for source in sorted([*lib.glob("dicom/*.py"), *lib.glob("models/*.py"), *lib.glob("training/*.py")]):
        if source.name not in NOT_THE_FOREST:
            h.update(source.read_bytes())  # features, physics, augmentation, the forest itself
    return h.hexdigest()


def cached_outputs(cache: Path, key, compute) -> dict[str, ModelOutput]:
    """``compute()``'s outputs, reused from ``cache`` while ``key`` (what they depend on) is unchanged."""
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            log(f"outputs reused from {cache}")
            return {k: output_from_dict(v) for k, v in saved["outputs"].items()}
    out = compute()
    cache.write_text(json.dumps({"key": key, "outputs": {k: asdict(v) for k, v in out.items()}}), encoding="utf-8")
    return out


def cached_forest_outputs(series, labels, gen_series, gen_labels, args) -> dict[str, ModelOutput]:
    """``forest_leave_source_out``, reused from --out when the recipe and the series are the same."""
    key = [forest_recipe_key(args), sorted(s.series_uid for s in series)]
    return cached_outputs(args.out / "forest_outputs.json", key,
                          lambda: forest_leave_source_out(series, labels, gen_series, gen_labels, args))


def forest_leave_source_out(series, labels, gen_series, gen_labels, args) -> dict[str, ModelOutput]:
    sources = sorted({labels[s.series_uid]["source"] for s in series})
    out: dict[str, ModelOutput] = {}
    for i, source in enumerate(sources, 1):
        real = [s for s in series if labels[s.series_uid]["source"] not in (source, *RESEARCH_ONLY)]
        train = gen_series + real
        weights = [1.0] * len(gen_series) + [args.real_weight] * len(real)
        forest = fit_forest(train, {**gen_labels, **labels}, **recipe(args), sample_weight=weights)
        held = [s for s in series if labels[s.series_uid]["source"] == source]
        for s, o in zip(held, forest.predict_many(held)):
            out[s.series_uid] = o
        log(f"forest fold {i}/{len(sources)} {source}: {len(held)} series")
    return out


def outputs_for(uid: str, forest: dict, cnn: dict, use: tuple[str, ...]) -> dict[str, ModelOutput]:
    return {name: m[uid] for name, m in (("forest", forest), ("cnn", cnn)) if name in use and uid in m}


def base_params(overrides: list[str]) -> EnsembleParams:
    """The bundle's ensemble settings, with ``KEY=JSON`` overrides (``--ensemble support_top_k=1``) to compare."""
    d = EnsembleParams.load(default_models_dir()).to_dict()
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in d:
            raise SystemExit(f"--ensemble {item}: no ensemble setting {key!r}")
        d[key] = json.loads(value)
    return EnsembleParams.from_dict(d)


@dataclass
class Shifted:
    """Outputs on shifted data (generated rows scored by a forest that never saw their vendor) that the
    pooling weights are also fitted on, with ``share`` of the total weight."""

    outputs: list[dict[str, ModelOutput]]
    truth: list[str]
    share: float


def fit_pooling(fit_series: list[Series], forest: dict, cnn: dict, labels: dict,
                base: EnsembleParams, fit_dissent: bool = True, shifted: Shifted | None = None,
                fit_alone: bool = True) -> EnsembleParams:
    """Pooling weights (NLL on the development series and, with ``shifted``, on shifted data too), then the
    review threshold, and the dissent bar unless ``fit_dissent`` is false, with every review rule in place
    (training.review_fit). The review rules are fitted on development series only. With ``fit_alone``, the
    CNN's weight alone too (``ensemble.fit_alone_weight``) on the development series: the forest's own
    weight is fitted where it answers alone already (the shifted rows), the CNN's only beside the forest."""
    uids = [s.series_uid for s in fit_series]
    outputs = [outputs_for(u, forest, cnn, ("forest", "cnn")) for u in uids]
    truth = [labels[u]["sequence"] for u in uids]
    fit_outputs, fit_truth, weight = outputs, truth, [1.0] * len(uids)
    if shifted is not None and shifted.share > 0 and shifted.outputs:
        each = shifted.share / (1 - shifted.share) * len(uids) / len(shifted.outputs)
        fit_outputs, fit_truth = outputs + shifted.outputs, truth + shifted.truth
        weight = weight + [each] * len(shifted.outputs)
    params = fit_params(fit_outputs, fit_truth, base=base, target_accuracy=TARGET_ACCURACY, grid=WEIGHT_GRID,
                        sample_weight=weight)
    if fit_dissent:
        params = fit_review_rules(fit_series, outputs, truth, params, TARGET_ACCURACY)
    else:
        params.review_threshold = fit_review_threshold(fit_series, outputs, truth, params, TARGET_ACCURACY)
    params.unknown_threshold = fit_unknown_threshold(fit_series, outputs, truth, params)
    alone = fit_alone_weight([o.get("cnn") for o in outputs], truth, WEIGHT_GRID) if fit_alone else None
    params.alone_weights = {k: w for k, w in params.alone_weights.items() if k != "cnn"}
    if alone is not None:
        params.alone_weights["cnn"] = alone
    return params


def physics_rule_figures(series, labels, gen_series, gen_labels, rows) -> dict:
    """Whether a labelled series breaks a physics rule (the rules must hold on every one), and how many
    answers the rules restricted."""
    def broken(items):
        return [f"{label}: {', '.join(facts)}" for s, label in items if (facts := rules_broken(s, label))]

    real = broken((s, labels[s.series_uid]["sequence"]) for s in series)
    generated = broken((s, gen_labels[s.series_uid]["sequence"]) for s in gen_series
                       if gen_labels[s.series_uid].get("sequence"))
    restricted = [r for r in rows if "rules out" in r["reasons"]]
    return {"labelled_real_breaking_a_rule": f"{len(real)}/{len(series)}", "real_examples": real[:5],
            "labelled_generated_breaking_a_rule": f"{len(generated)}/{len(gen_series)}",
            "generated_examples": generated[:5],
            "answers_restricted": f"{len(restricted)} ({sum(r['ensemble'] == r['truth'] for r in restricted)} "
                                  "then right)"}


def ensemble_nested(series, labels, forest, cnn, base: EnsembleParams, use=("forest", "cnn"),
                    fit_dissent: bool = True, shifted: Shifted | None = None,
                    answered_as=lambda s: s, fit_alone: bool = True) -> dict[str, SeriesPrediction]:
    """Each source's series decided with pooling fitted on the other sources; ``answered_as(series)`` is the
    series the decision sees (e.g. its headers stripped), the fit always the series as read."""
    out = {}
    for source in sorted({labels[s.series_uid]["source"] for s in series}):
        others = [s for s in series if labels[s.series_uid]["source"] != source]
        params = fit_pooling(others, forest, cnn, labels, base, fit_dissent, shifted, fit_alone)
        log(f"fold {source} ({'+'.join(use)}): weights {params.weights}, alone {params.alone_weights}, "
            f"review threshold {params.review_threshold}, dissent bar {params.disagreement_confidence}, "
            f"unknown threshold {params.unknown_threshold}")
        bundle = ModelBundle(ensemble=params, version=f"fold-{source}")
        for s in series:
            if labels[s.series_uid]["source"] == source:
                out[s.series_uid] = decide(answered_as(s), outputs_for(s.series_uid, forest, cnn, use), bundle)
    return out


def headers_stripped(s: Series) -> Series:
    """``s`` as the decision sees it when its files keep only identity and pixels, exactly what
    ``cnn_gradcam_docs.py``'s stripped copies keep (the CNN's output is the one from the files as they are:
    its figure's definition, K slices arranged by their geometry)."""
    return replace(s, header={k: v for k, v in s.header.items() if k in STRIPPED_KEEPS}, geometry=None,
                   orientation=None, series_description="")


def leave_one_vendor_out(gen_series, gen_labels, args) -> dict[str, ModelOutput]:
    """Every generated training row scored by a forest fitted on the other vendors' rows (cached in --out)."""
    return cached_outputs(args.out / "lovo_outputs.json", forest_recipe_key(args),
                          lambda: _leave_one_vendor_out(gen_series, gen_labels, args))


def _leave_one_vendor_out(gen_series, gen_labels, args) -> dict[str, ModelOutput]:
    out: dict[str, ModelOutput] = {}
    for vendor in sorted({gen_labels[s.series_uid].get("vendor", "") for s in gen_series} - {""}):
        train = [s for s in gen_series if gen_labels[s.series_uid].get("vendor") != vendor]
        held = [s for s in gen_series if gen_labels[s.series_uid].get("vendor") == vendor]
        forest = fit_forest(train, gen_labels, **recipe(args))
        out.update({s.series_uid: o for s, o in zip(held, forest.predict_many(held))})
        log(f"leave-one-vendor-out {vendor}: {len(held)} series")
    return out


def pooled_forest_figures(outputs: dict[str, ModelOutput], truth: dict[str, str], group: dict[str, str],
                          weight: float) -> dict[str, dict]:
    """Per group: accuracy, and wrong answers the pooling (forest alone, raised to ``weight``) puts at
    p >= 0.5 (not sent to review by confidence) and p >= 0.9."""
    result: dict[str, dict] = {}
    for name in sorted(set(group.values())):
        uids = [u for u in outputs if group[u] == name and outputs[u].sequence is not None]
        wrong = [u for u in uids if outputs[u].sequence.label != truth[u]]
        pooled = [pooled_top(outputs[u], weight) for u in wrong]
        result[name] = {"n": len(uids), "accuracy": round(1 - len(wrong) / max(len(uids), 1), 4),
                        "forest_wrong_at_p_ge_0.9": int(sum(outputs[u].sequence.probability >= 0.9 for u in wrong)),
                        "wrong_at_p_ge_0.5": int(sum(p >= 0.5 for p in pooled)),
                        "wrong_at_p_ge_0.9": int(sum(p >= 0.9 for p in pooled))}
    return result


def threshold_trade(outputs: dict[str, ModelOutput], truth: dict[str, str], weight: float, rows: list[dict],
                    thresholds=(0.5, 0.6, 0.7, 0.8, 0.9)) -> list[dict]:
    """What a higher review threshold would cost and catch: on the shifted rows (forest alone, pooled at
    ``weight``, no other review rule) the wrong answers it would send to review and the right ones; on the
    development set, the classified series whose pooled confidence lies below it."""
    pooled = [(pooled_top(o, weight), o.sequence.label == truth[u]) for u, o in outputs.items() if o.sequence]
    classified = [float(r["ensemble_p"]) for r in rows if r["outcome"] == "classified"]
    return [{"threshold": t, "shifted_wrong_caught": sum(p < t and not ok for p, ok in pooled),
             "shifted_wrong": sum(not ok for _, ok in pooled),
             "shifted_right_reviewed": sum(p < t and ok for p, ok in pooled),
             "development_classified_below": sum(p < t for p in classified)} for t in thresholds]


def shifted_product(gen_series: list[Series], outputs: dict[str, ModelOutput], truth: dict[str, str],
                    params: EnsembleParams) -> dict:
    """The product's whole decision (forest alone, as for a series without pixels: physics rules, unseen terms,
    values out of range, the review threshold) on the shifted rows: wrong answers classified without review,
    and right ones sent to review or called unknown."""
    bundle = ModelBundle(ensemble=params, version="shifted")
    counts = {"n": 0, "wrong": 0, "wrong_classified": 0, "right_not_classified": 0}
    for s in gen_series:
        if s.series_uid not in outputs:
            continue
        p = decide(s, {"forest": outputs[s.series_uid]}, bundle)
        right = p.sequence is not None and p.sequence.label == truth[s.series_uid]
        counts["n"] += 1
        counts["wrong"] += not right
        counts["wrong_classified"] += not right and p.outcome == "classified"
        counts["right_not_classified"] += right and p.outcome != "classified"
    return counts


def pooled_top(output: ModelOutput, weight: float) -> float:
    """The top probability of the forest's answer pooled alone at ``weight``, as the product pools it."""
    alone = EnsembleParams(method="log_linear", weights={"forest": weight})
    return combine({"forest": output}, alone).sequence.probability


def generated_heldout(series, labels, gen_series, gen_labels, held_path: Path, args):
    """The bundle's recipe (generated rows + every trainable real source) on held-out generated profiles:
    its outputs and the held-out rows' labels."""
    real = [s for s in series if labels[s.series_uid]["source"] not in RESEARCH_ONLY]
    forest = fit_forest(gen_series + real, {**gen_labels, **labels}, **recipe(args),
                        sample_weight=[1.0] * len(gen_series) + [args.real_weight] * len(real))
    held, held_labels = read_base_rows(held_path)
    return dict(zip((s.series_uid for s in held), forest.predict_many(held))), held_labels


# ----------------------------------------------------------------------------- scoring


def study_bootstrap(correct_by_study: dict[str, list[bool]], reps: int = 2000, seed: int = 0) -> list[float]:
    studies = list(correct_by_study)
    if not studies:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(reps):
        pick = rng.integers(0, len(studies), len(studies))
        values = [v for i in pick for v in correct_by_study[studies[i]]]
        stats.append(np.mean(values) if values else np.nan)
    return [round(float(np.nanpercentile(stats, 2.5)), 3), round(float(np.nanpercentile(stats, 97.5)), 3)]


def score(rows: list[dict], key: str) -> dict:
    """Accuracy of column ``key`` overall, per vendor, with a study-clustered interval."""
    scored = [r for r in rows if r[key]]
    by_study: dict[str, list[bool]] = defaultdict(list)
    for r in scored:
        by_study[r["study"]].append(r[key] == r["truth"])
    vendors = sorted({r["vendor"] for r in scored})
    return {
        "n": len(scored),
        "correct": sum(r[key] == r["truth"] for r in scored),
        "accuracy": round(float(np.mean([r[key] == r["truth"] for r in scored])), 4) if scored else None,
        "interval_95_by_study": study_bootstrap(by_study),
        "per_vendor": {v: f"{sum(r[key] == r['truth'] for r in scored if r['vendor'] == v)}/"
                          f"{sum(r['vendor'] == v for r in scored)}" for v in vendors},
    }


def review_figures(rows: list[dict]) -> dict:
    accepted = [r for r in rows if not r["review"]]
    by_study: dict[str, list[bool]] = defaultdict(list)
    for r in accepted:
        by_study[r["study"]].append(r["ensemble"] == r["truth"])
    wrong = [r for r in rows if r["ensemble"] != r["truth"]]
    return {
        "sent_to_review": f"{sum(r['review'] for r in rows)}/{len(rows)}",
        "review_fraction": round(sum(r["review"] for r in rows) / len(rows), 4),
        "accepted_correct": f"{sum(r['ensemble'] == r['truth'] for r in accepted)}/{len(accepted)}",
        "accepted_accuracy": round(float(np.mean([r["ensemble"] == r["truth"] for r in accepted])), 4)
        if accepted else None,
        "accepted_interval_95_by_study": study_bootstrap(by_study),
        "wrong_caught": f"{sum(r['review'] for r in wrong)}/{len(wrong)}",
        "outcomes": {o: f"{sum(r['ensemble'] == r['truth'] for r in rows if r['outcome'] == o)} right of "
                        f"{sum(r['outcome'] == o for r in rows)}" for o in OUTCOMES},
    }


CONFIDENCE_BANDS = ((0.0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.0))


def shown_confidence(predictions: dict[str, SeriesPrediction], labels: dict) -> dict:
    """How far the probability a reviewer sees can be trusted: its mean beside the share right, the mean
    negative log-likelihood of the truth (its probability floored at 1e-4), and the share right per band."""
    shown = [(p.sequence.probability, p.sequence.label == labels[u]["sequence"],
              p.sequence.probabilities.get(labels[u]["sequence"], 0.0)) for u, p in predictions.items() if p.sequence]
    if not shown:
        return {}
    top, right, truth = (np.array(x, dtype=float) for x in zip(*shown))
    bands = {}
    for low, high in CONFIDENCE_BANDS:
        inside = (top >= low) & ((top < high) if high < 1 else (top <= high))
        bands[f"{low:.1f}-{high:.1f}"] = f"{int(right[inside].sum())}/{int(inside.sum())}"
    return {"n": len(shown), "mean_shown_p": round(float(top.mean()), 3), "right": f"{int(right.sum())}/{len(shown)}",
            "share_right": round(float(right.mean()), 3),
            "nll_of_truth": round(float(-np.log(np.maximum(truth, 1e-4)).mean()), 3), "right_by_band": bands}


def unfamiliar_figures(series, labels, forest, cnn, base: EnsembleParams, fit_dissent: bool = True,
                       shifted: Shifted | None = None) -> dict:
    """The CNN's embedding novelty on real series: how its right and wrong answers split, and what the other
    choice of ``unfamiliar_votes`` (models.ensemble.voting_outputs) would give."""
    answered = [(u, o) for u, o in cnn.items() if o.sequence is not None]
    flagged = [(u, o) for u, o in answered if o.unfamiliar]
    kept = [(u, o) for u, o in answered if not o.unfamiliar]
    right = lambda pairs: sum(o.sequence.label == labels[u]["sequence"] for u, o in pairs)  # noqa: E731
    other = EnsembleParams.from_dict({**base.to_dict(), "unfamiliar_votes": not base.unfamiliar_votes})
    rows = make_rows(series, labels, forest, cnn,
                     ensemble_nested(series, labels, forest, cnn, other, fit_dissent=fit_dissent, shifted=shifted))
    return {"cnn_right_among_unfamiliar": f"{right(flagged)}/{len(flagged)}",
            "cnn_right_among_familiar": f"{right(kept)}/{len(kept)}",
            "other_choice": f"unfamiliar_votes={str(other.unfamiliar_votes).lower()}",
            "ensemble_with_other_choice": score(rows, "ensemble"),
            "review_with_other_choice": review_figures(rows)}


def make_rows(series, labels, forest, cnn, ensemble) -> list[dict]:
    rows = []
    for s in series:
        lab, p = labels[s.series_uid], ensemble[s.series_uid]
        f, c = forest.get(s.series_uid), cnn.get(s.series_uid)
        rows.append({
            "case": lab["case"], "source": lab["source"], "vendor": lab["vendor"], "study": s.study_uid,
            "anatomy": lab.get("anatomy", ""), "truth": lab["sequence"],
            "forest": f.sequence.label if f and f.sequence else "",
            "forest_p": round(f.sequence.probability, 3) if f and f.sequence else "",
            "cnn": c.sequence.label if c and c.sequence else "",
            "cnn_p": round(c.sequence.probability, 3) if c and c.sequence else "",
            "ensemble": p.sequence.label if p.sequence else "",
            "ensemble_p": round(p.sequence.probability, 3) if p.sequence else "",
            "review": p.needs_review,
            "outcome": p.outcome,
            "orientation_truth": lab["orientation"],
            "orientation": p.orientation.label if p.orientation else "",
            "reasons": " | ".join(p.reasons),
        })
    return rows


def confusion(rows: list[dict], key: str, path: Path, title: str) -> None:
    scored = [r for r in rows if r[key]]
    report = task_metrics([r["truth"] for r in scored], [r[key] for r in scored])
    plot_confusion(report, path, title)


def per_class(rows: list[dict]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for cls in sorted({r["truth"] for r in rows}):
        sub = [r for r in rows if r["truth"] == cls]
        out[cls] = {k: f"{sum(r[k] == cls for r in sub if r[k])}/{sum(1 for r in sub if r[k])}"
                    for k in ("forest", "headers", "cnn", "ensemble")}
        out[cls]["review"] = f"{sum(r['review'] for r in sub)}/{len(sub)}"
    return out


def unfamiliar_lines(u: dict | None) -> list[str]:
    if not u:
        return []
    d, r = u["ensemble_with_other_choice"], u["review_with_other_choice"]
    return [f"CNN embedding novelty: right {u['cnn_right_among_unfamiliar']} where it marks the images unfamiliar, "
            f"{u['cnn_right_among_familiar']} elsewhere. With {u['other_choice']} the ensemble would give "
            f"{d['correct']}/{d['n']}, review {r['sent_to_review']}, right among the rest {r['accepted_correct']}.", ""]


def stripped_lines(r: dict | None, shown: dict | None = None) -> list[str]:
    if not r:
        return []
    lines = [f"Headers stripped to identity and pixels (the forest left out, the CNN alone, every review rule): "
             f"sent to review {r['sent_to_review']}; right among the rest {r['accepted_correct']}; wrong answers "
             f"sent to review {r['wrong_caught']}. Outcomes: " + "; ".join(f"{o} {v}" for o, v in r["outcomes"].items())
             + ".", ""]
    if shown:
        lines += ["| CNN alone, tempered by | mean shown p | right | NLL of the truth | "
                  + " | ".join(f"right, shown p {b}" for b in shown["alone_weight"]["right_by_band"]) + " |",
                  "|---|---|---|---|" + "---|" * len(CONFIDENCE_BANDS)]
        for key, name in (("pooling_weight", "its pooling weight (fitted beside the forest)"),
                          ("alone_weight", "its weight alone (fitted alone)")):
            c = shown[key]
            lines.append(f"| {name} | {c['mean_shown_p']:.2f} | {c['right']} | {c['nll_of_truth']:.2f} | "
                         + " | ".join(c["right_by_band"].values()) + " |")
        lines.append("")
    return lines


def summary_markdown(metrics: dict) -> str:
    """The tables docs/REAL_DATA.md quotes."""
    f, h, c, e, r = (metrics[k] for k in ("forest_leave_source_out", "headers", "cnn", "ensemble", "review"))
    vendors = sorted(e["per_vendor"])
    lines = ["| model | all | 95 % (by study) | " + " | ".join(vendors) + " |",
             "|---|---|---|" + "---|" * len(vendors)]
    for name, m in (("forest, leave-source-out", f), ("headers only: forest + study context, nested LSO", h),
                    ("CNN (pixels only)", c), ("ensemble, nested LSO", e)):
        lines.append(f"| {name} | {m['correct']}/{m['n']} ({m['accuracy']:.1%}) | {m['interval_95_by_study'][0]:.2f}–"
                     f"{m['interval_95_by_study'][1]:.2f} | " + " | ".join(m["per_vendor"].get(v, "–") for v in vendors)
                     + " |")
    lines += ["", f"Sent to review: {r['sent_to_review']} ({r['review_fraction']:.0%}); right among the rest: "
              f"{r['accepted_correct']} (95 % by study {r['accepted_interval_95_by_study'][0]:.2f}–"
              f"{r['accepted_interval_95_by_study'][1]:.2f}); wrong answers sent to review: {r['wrong_caught']}. "
              f"Orientation: {metrics['orientation']}.", "",
              "Outcomes: " + "; ".join(f"{o} {v}" for o, v in r["outcomes"].items()) + ".", "",
              *stripped_lines(metrics.get("headers_stripped"), metrics.get("headers_stripped_confidence")),
              *unfamiliar_lines(metrics.get("cnn_unfamiliar")),
              "| class | forest | headers only | CNN | ensemble | sent to review |", "|---|---|---|---|---|---|"]
    for cls, m in metrics["per_class"].items():
        lines.append(f"| {cls} | {m['forest']} | {m['headers']} | {m['cnn']} | {m['ensemble']} | {m['review']} |")
    if metrics.get("brain_only"):
        b = metrics["brain_only"]
        lines += ["", "Brain and head series only: " + ", ".join(
            f"{k} {b[k]['correct']}/{b[k]['n']}" for k in ("forest", "headers", "cnn", "ensemble"))
            + f"; review {b['review']['sent_to_review']}, right among the rest {b['review']['accepted_correct']}."]
    weight = metrics["ensemble_fitted_on_all"]["weights"].get("forest", 1.0)
    for key, title in (("generated_leave_one_vendor_out", "generated, vendor left out"),
                       ("generated_heldout_profiles", "generated held-out profile")):
        if metrics.get(key):
            lines += ["", f"| {title} | series | forest accuracy | wrong, forest p ≥ 0.9 | wrong, pooled "
                          f"(forest weight {weight}) p ≥ 0.5 | p ≥ 0.9 |", "|---|---|---|---|---|---|"]
            lines += [f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['forest_wrong_at_p_ge_0.9']} | "
                      f"{m['wrong_at_p_ge_0.5']} | {m['wrong_at_p_ge_0.9']} |" for name, m in metrics[key].items()]
    if metrics.get("shifted_product"):
        m = metrics["shifted_product"]
        lines += ["", f"The product's whole decision on the {m['n']} shifted rows (forest alone, every review rule): "
                      f"{m['wrong']} wrong, {m['wrong_classified']} of them classified without review; "
                      f"{m['right_not_classified']} right answers sent to review or called unknown."]
    if metrics.get("review_threshold_trade"):
        lines += ["", "| review threshold | shifted rows: wrong sent to review | right sent to review | development: "
                      "classified series below it |", "|---|---|---|---|"]
        lines += [f"| {t['threshold']} | {t['shifted_wrong_caught']}/{t['shifted_wrong']} | "
                  f"{t['shifted_right_reviewed']} | {t['development_classified_below']} |"
                  for t in metrics["review_threshold_trade"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--manifest", type=Path, help="real_dev.tsv, for the anatomy column (brain-only figures)")
    ap.add_argument("--gen-rows", type=Path, default=default_models_dir() / BASE_ROWS,
                    help="generated training header rows (default: the bundle's)")
    ap.add_argument("--real-weight", type=float, default=10.0)
    ap.add_argument("--field-dropout", type=float, default=0.3)
    ap.add_argument("--trees", type=int, default=600, help="trees per task (the bundle's: 600)")
    ap.add_argument("--excerpt-rate", type=float, default=EXCERPT_RATE)
    ap.add_argument("--long-run-rate", type=float, default=LONG_RUN_RATE)
    ap.add_argument("--recon-rate", type=float, default=RECON_RATE,
                    help="fraction of training rows given an interpolated reconstruction matrix")
    ap.add_argument("--sequence-max-features", type=_max_features, default="sqrt",
                    help="features per split of the sequence task: 'sqrt' or a fraction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ensemble", action="append", default=[], metavar="KEY=JSON",
                    help="override a bundled ensemble setting before fitting (to compare pooling variants)")
    ap.add_argument("--no-lovo", action="store_true", help="skip leave-one-vendor-out on generated rows")
    ap.add_argument("--shifted-share", type=float, default=0.5,
                    help="share of the pooling fit's weight given to the generated rows scored leave-one-vendor-out "
                         "(shifted data; the rest is the development set's). 0: development series only")
    ap.add_argument("--fixed-dissent", action="store_true",
                    help="keep the bundled dissent bar (disagreement_confidence) instead of fitting it")
    ap.add_argument("--gen-heldout", type=Path, help="generated header rows of held-out profiles to score the "
                    "bundle's recipe on (seriesclassifier synth OUT.jsonl.gz --headers-only --profile holdout)")
    ap.add_argument("--cnn-folds", type=Path, metavar="DIR",
                    help="cnn_real_folds.py's OUT: each series answered by the CNN of its source's fold (a CNN "
                    "trained on real series too) instead of the bundled one")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    series, labels = read_real(args.data, args.out / "real_headers.jsonl")
    add_anatomy(labels, args.manifest)
    gen_series, gen_labels = read_base_rows(args.gen_rows)
    log(f"{len(gen_series)} generated training rows from {args.gen_rows}")
    cnn = cnn_outputs(series, args.out / "cnn_outputs.json", labels, args.cnn_folds)
    forest = cached_forest_outputs(series, labels, gen_series, gen_labels, args)
    base = base_params(args.ensemble)
    fit_dissent = not args.fixed_dissent
    if args.no_lovo and args.shifted_share > 0:
        raise SystemExit("--shifted-share needs the leave-one-vendor-out outputs: drop --no-lovo or give 0")
    if not 0 <= args.shifted_share < 1:
        raise SystemExit(f"--shifted-share {args.shifted_share}: give a share in [0, 1)")
    lovo = {} if args.no_lovo else leave_one_vendor_out(gen_series, gen_labels, args)
    lovo_truth = {u: gen_labels[u]["sequence"] for u in lovo}
    shifted = Shifted([{"forest": o} for o in lovo.values()], list(lovo_truth.values()), args.shifted_share)
    ensemble = ensemble_nested(series, labels, forest, cnn, base, fit_dissent=fit_dissent, shifted=shifted)
    forest_alone = ensemble_nested(series, labels, forest, cnn, base, use=("forest",), fit_dissent=fit_dissent,
                                   shifted=shifted)
    stripped = ensemble_nested(series, labels, forest, cnn, base, fit_dissent=fit_dissent, shifted=shifted,
                               answered_as=headers_stripped)
    stripped_pooled = ensemble_nested(series, labels, forest, cnn, base, fit_dissent=fit_dissent, shifted=shifted,
                                      answered_as=headers_stripped, fit_alone=False)
    rows = make_rows(series, labels, forest, cnn, ensemble)
    for r, s in zip(rows, series):
        alone = forest_alone[s.series_uid]
        r["headers"] = alone.sequence.label if alone.sequence else ""
        r["forest_alone_review"] = alone.needs_review

    brain = [r for r in rows if r["anatomy"].startswith("brain")]
    metrics = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "n_series": len(rows), "n_studies": len({r["study"] for r in rows}),
        "forest_leave_source_out": score(rows, "forest"),
        "headers": score(rows, "headers"),
        "cnn": score(rows, "cnn"),
        "ensemble": score(rows, "ensemble"),
        "review": review_figures(rows),
        "orientation": f"{sum(r['orientation'] == r['orientation_truth'] for r in rows)}/{len(rows)}",
        "headers_stripped": review_figures(make_rows(series, labels, forest, cnn, stripped)),
        "headers_stripped_confidence": {"alone_weight": shown_confidence(stripped, labels),
                                        "pooling_weight": shown_confidence(stripped_pooled, labels)},
        "brain_only": {k: score(brain, k) for k in ("forest", "headers", "cnn", "ensemble")}
        | {"review": review_figures(brain)} if brain else None,
        "per_class": per_class(rows),
        "ensemble_fitted_on_all": fit_pooling(series, forest, cnn, labels, base, fit_dissent, shifted).to_dict(),
        "cnn_unfamiliar": unfamiliar_figures(series, labels, forest, cnn, base, fit_dissent, shifted),
        "physics_rules": physics_rule_figures(series, labels, gen_series, gen_labels, rows),
    }
    weight = metrics["ensemble_fitted_on_all"]["weights"].get("forest", 1.0)
    if lovo:
        vendors = {u: gen_labels[u].get("vendor", "") for u in lovo}
        metrics["generated_leave_one_vendor_out"] = pooled_forest_figures(lovo, lovo_truth, vendors, weight)
        metrics["review_threshold_trade"] = threshold_trade(lovo, lovo_truth, weight, rows)
        metrics["shifted_product"] = shifted_product(
            gen_series, lovo, lovo_truth, EnsembleParams.from_dict(metrics["ensemble_fitted_on_all"]))
    if args.gen_heldout:
        held, held_labels = generated_heldout(series, labels, gen_series, gen_labels, args.gen_heldout, args)
        metrics["generated_heldout_profiles"] = pooled_forest_figures(
            held, {u: held_labels[u]["sequence"] for u in held},
            {u: held_labels[u].get("profile", "") for u in held}, weight)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    (args.out / "summary.md").write_text(summary_markdown(metrics), encoding="utf-8")
    (args.out / "ensemble_fitted.json").write_text(json.dumps(metrics["ensemble_fitted_on_all"], indent=1),
                                                   encoding="utf-8")
    with open(args.out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for key, title in (("forest", "forest, leave-source-out"), ("headers", "headers only (forest + study context)"),
                       ("cnn", "CNN, real sources left out" if args.cnn_folds else "CNN (generated training only)"),
                       ("ensemble", "ensemble, nested leave-source-out")):
        confusion(rows, key, args.out / f"confusion_{key}.png", f"real development set: {title}")
    print(json.dumps({k: metrics[k] for k in ("forest_leave_source_out", "headers", "cnn", "ensemble", "review",
                                              "orientation")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
