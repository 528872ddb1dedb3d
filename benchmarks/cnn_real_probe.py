"""Can the real development set teach the CNN? Leave-source-out probes on real pixels.

    python benchmarks/cnn_real_probe.py --data REALDEV [--models DIR] [--manifest real_dev.tsv] [--fine-tune]
        [--adabn [BLEND ...]] [--answers CSV]

REALDEV is the folder ``build_real_dev.py`` writes (``../shared/real-dev``). Each series is read as the
product reads it (K slices), and these CNN figures on real pixels are printed, series right / series:

- the CNN as it is (the bundled one, or ``--models DIR``'s);
- a linear probe: logistic regression on that CNN's slice embeddings, trained on the real series of
  every other source (leave-source-out), series answer = mean log-probability over its slices;
- ``--adabn``: the CNN with its batch-norm statistics re-estimated on the unlabelled real slices of every
  other source (leave-source-out), blended with the training statistics;
- ``--fine-tune``: the whole CNN trained further on real slices of the other sources, five folds of
  sources (class-balanced sampling, the training augmentation), the same series answer.

Each figure is given twice: as the network answers, and restricted by what the series' own repetitions prove
(``dicom.dynamics``, as ``CnnModel.predict`` does).

``--distort blur:2 down:2 noise:0.05 gamma:1.5 no-lower:0.4``: the CNN as it is on the same real slices, each
changed one way (of the 128² input: Gaussian blur of σ pixels; downsampled by a factor and back; Rician noise
of σ; gamma; the lower fraction of rows zeroed, which removes a sagittal head's neck and face), with the
classes whose count moved. A class that real images enter only when changed is one the generator renders
that way and scanners do not (session 13: blurred or noisy localisers become scouts, neckless ones do not).

The OsiriX samples (research and teaching use only) are never trained on. A benchmark: the data are fetched.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import numpy as np

RESEARCH_ONLY = ("orthanc-mirrors/orthanc-tests",)


def real_slices(data: Path, model) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(images (n, S, S), series uid per image, the CNN's embedding per image, labels by uid); each label
    row also gets ``facts``, what the series' repetitions prove (``dicom.dynamics``, as the product reads it)."""
    from SeriesClassifierLib.dicom.dynamics import stack_facts
    from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs
    from SeriesClassifierLib.training.corpus import cnn_samples

    with open(data / "labels.csv", newline="", encoding="utf-8") as fp:
        labels = {r["series_uid"]: r for r in csv.DictReader(fp)}
    images, uids = [], []
    labelled = (s for s in read_all_series(resolve_refs(data)) if s.series_uid in labels)
    for s, sampled in cnn_samples(model, labelled, name=lambda s: labels[s.series_uid]["case"]):
        images += list(sampled.images)
        uids += [s.series_uid] * len(sampled.images)
        labels[s.series_uid]["facts"] = stack_facts(sampled.stack)
    images = np.stack(images).astype(np.float32)
    return images, np.array(uids), model.infer(images)["embedding"], labels


def series_scores(log_p: np.ndarray, uids: np.ndarray, classes: list[str], labels: dict,
                  with_facts: bool = False) -> dict[str, np.ndarray]:
    """{series uid: mean slice log-probability per class}; ``with_facts``: the classes its pixel facts rule
    out at -inf (unless they rule out every class)."""
    from SeriesClassifierLib.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    scores = {}
    for u in dict.fromkeys(uids):
        mean = log_p[uids == u].mean(axis=0)
        facts = (labels[u].get("facts") or {}) if with_facts else {}
        ruled_out = np.array([bool(vocabulary.ruling_out(c, facts)) for c in classes])
        scores[u] = np.where(ruled_out, -np.inf, mean) if facts and not ruled_out.all() else mean
    return scores


def series_answers(log_p: np.ndarray, uids: np.ndarray, classes: list[str], labels: dict,
                   with_facts: bool = False) -> dict[str, tuple[str, float]]:
    """{series uid: (answer, its mean slice probability)}; ``with_facts``: restricted to what its pixel facts
    leave."""
    answers = {}
    for u, scores in series_scores(log_p, uids, classes, labels, with_facts).items():
        best = int(np.argmax(scores))
        answers[u] = classes[best], float(np.exp(log_p[uids == u][:, best]).mean())
    return answers


def series_right(log_p: np.ndarray, uids: np.ndarray, classes: list[str], labels: dict,
                 with_facts: bool = False) -> int:
    """Series right; ``with_facts``: each series' answer restricted to what its pixel facts leave."""
    answers = series_answers(log_p, uids, classes, labels, with_facts)
    return sum(answer == labels[u]["sequence"] for u, (answer, _) in answers.items())


def write_answers(path: Path, log_p: np.ndarray, uids: np.ndarray, classes: list[str], labels: dict) -> None:
    """One row per series (with pixel facts), to compare two CNNs series by series."""
    answers = series_answers(log_p, uids, classes, labels, with_facts=True)
    with open(path, "w", newline="", encoding="utf-8") as fp:
        out = csv.writer(fp)
        out.writerow(["case", "anatomy", "truth", "cnn", "cnn_p"])
        for u, (answer, p) in answers.items():
            row = labels[u]
            out.writerow([row["case"], row.get("anatomy", ""), row["sequence"], answer, f"{p:.3f}"])


def _both(log_p: np.ndarray, uids: np.ndarray, classes: list[str], labels: dict) -> str:
    n = len(set(uids))
    text = (f"{series_right(log_p, uids, classes, labels)}/{n}, with pixel facts "
            f"{series_right(log_p, uids, classes, labels, with_facts=True)}/{n}")
    anatomy = {u: labels[u].get("anatomy") for u in set(uids)}
    if any(anatomy.values()):  # --manifest given: heads apart from the knees, spines, abdomens and phantoms
        for name, keep in (("heads", True), ("other parts", False)):
            part = np.array([(anatomy[u] == "brain/head") == keep for u in uids])
            right = series_right(log_p[part], uids[part], classes, labels, with_facts=True)
            text += f"; {name} {right}/{len(set(uids[part]))}"
    return text


def right_by_class(log_p: np.ndarray, uids: np.ndarray, classes: list[str], labels: dict) -> dict[str, int]:
    """Series right per true class, with pixel facts."""
    counts = {}
    for u in dict.fromkeys(uids):
        one = uids == u
        truth = labels[u]["sequence"]
        counts[truth] = counts.get(truth, 0) + series_right(log_p[one], uids[one], classes, labels, with_facts=True)
    return counts


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma)


def _down(image: np.ndarray, factor: float) -> np.ndarray:
    from scipy.ndimage import zoom

    small = zoom(image, 1 / factor, order=1)
    return zoom(small, np.array(image.shape) / np.array(small.shape), order=1)


def _rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))


def _no_lower(image: np.ndarray, fraction: float) -> np.ndarray:
    out = image.copy()
    out[int(round(len(image) * (1 - fraction))):] = 0
    return out


DISTORTIONS = {
    "blur": lambda im, v, rng: _blur(im, v),
    "down": lambda im, v, rng: _down(im, v),
    "noise": _rician,
    "gamma": lambda im, v, rng: im ** v,
    "no-lower": lambda im, v, rng: _no_lower(im, v),
}


def distortion_probe(model, images, uids, classes, labels, specs: list[str]) -> None:
    """The CNN on the slices changed by each ``NAME:VALUE`` of ``DISTORTIONS``, with the classes that moved."""
    as_is = right_by_class(np.log(model.infer(images)["sequence"] + 1e-9), uids, classes, labels)
    for spec in specs:
        name, _, value = spec.partition(":")
        rng = np.random.default_rng(0)
        changed = np.stack([np.clip(DISTORTIONS[name](im, float(value), rng), 0, 1) for im in images])
        log_p = np.log(model.infer(changed.astype(np.float32))["sequence"] + 1e-9)
        moved = right_by_class(log_p, uids, classes, labels)
        changes = ", ".join(f"{c} {as_is[c]}→{moved[c]}" for c in sorted(as_is) if moved[c] != as_is[c])
        print(f"{spec}: {_both(log_p, uids, classes, labels)} ({changes or 'no class moved'})")


def add_anatomy(labels: dict, manifest: Path) -> None:
    """Each label row gets the manifest's ``anatomy`` (matched by case id)."""
    with open(manifest, newline="", encoding="utf-8") as fp:
        anatomy = {r["case_id"]: r["anatomy"] for r in csv.DictReader(fp, delimiter="\t")}
    for row in labels.values():
        row["anatomy"] = anatomy.get(row["case"], "")


def linear_probe(emb, uids, y, sources, classes) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    log_p = np.full((len(uids), len(classes)), -30.0)
    for source in np.unique(sources):
        test, train = sources == source, (sources != source) & ~np.isin(sources, RESEARCH_ONLY)
        scaler = StandardScaler().fit(emb[train])
        clf = LogisticRegression(C=0.01, max_iter=2000, class_weight="balanced")
        clf.fit(scaler.transform(emb[train]), y[train])
        cols = [classes.index(c) for c in clf.classes_]
        log_p[np.ix_(test, cols)] = clf.predict_log_proba(scaler.transform(emb[test]))
    return log_p


def adapted_norms(models: Path, images: np.ndarray, blend: float):
    """The CNN with its batch-norm statistics re-estimated on ``images`` (no labels), mixed ``blend`` : 1 - blend
    with the training statistics (AdaBN, Li et al. 2016)."""
    import torch

    from SeriesClassifierLib.models.cnn import CnnModel

    model = CnnModel.load(models)
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    trained = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    model.net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over every batch
        m.train()
    order = np.random.default_rng(0).permutation(len(images))
    with torch.no_grad():
        for start in range(0, len(order), 64):
            model.net.features(torch.as_tensor(images[order[start:start + 64]])[:, None])
    for m, (mean, var) in zip(norms, trained):
        m.running_mean.mul_(blend).add_((1 - blend) * mean)
        m.running_var.mul_(blend).add_((1 - blend) * var)
        m.eval()
    return model


def adabn(models: Path, images, sources, classes: list[str], blend: float) -> np.ndarray:
    """Series answers of the CNN whose normalisation statistics come from the other sources' real slices."""
    log_p = np.zeros((len(images), len(classes)))
    for source in np.unique(sources):
        test, other = sources == source, (sources != source) & ~np.isin(sources, RESEARCH_ONLY)
        model = adapted_norms(models, images[other], blend)
        log_p[test] = np.log(model.infer(images[test])["sequence"] + 1e-9)
    return log_p


def source_folds(sources: np.ndarray, folds: int) -> list[list[str]]:
    """The real sources in ``folds`` groups, shuffled once with seed 0."""
    groups = sorted(set(sources))
    np.random.default_rng(0).shuffle(groups)
    return [groups[k::folds] for k in range(folds)]


def fine_tune(models: Path, images, y, sources, classes, epochs: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.training.cnn_train import augment

    rng = np.random.default_rng(0)
    target = np.array([classes.index(c) for c in y])
    log_p = np.zeros((len(y), len(classes)))
    for k, group in enumerate(source_folds(sources, 5)):
        test = np.isin(sources, group)
        train = ~test & ~np.isin(sources, RESEARCH_ONLY)
        net = CnnModel.load(models).net
        opt = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=1e-3)
        gen = torch.Generator().manual_seed(k)
        counts = np.bincount(target[train], minlength=len(classes))
        weight = np.where(train, 1 / np.sqrt(counts[target].clip(1)), 0.0)
        weight /= weight.sum()
        net.train()
        for _ in range(epochs * max(1, int(train.sum()) // 32)):
            idx = rng.choice(len(y), 32, p=weight)
            x = augment(torch.as_tensor(images[idx])[:, None], torch.zeros(32, dtype=torch.bool), gen)
            loss = F.cross_entropy(net(x)["sequence"], torch.as_tensor(target[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            log_p[test] = torch.log_softmax(net(torch.as_tensor(images[test])[:, None])["sequence"], 1).numpy()
    return log_p


def main(argv: list[str] | None = None) -> int:
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=default_models_dir())
    ap.add_argument("--fine-tune", action="store_true")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--manifest", type=Path, help="real_dev.tsv: also split every figure by anatomy")
    ap.add_argument("--distort", nargs="+", default=[], metavar="NAME:VALUE",
                    help=f"also the CNN on the real slices changed so ({', '.join(DISTORTIONS)}; e.g. blur:2)")
    ap.add_argument("--adabn", type=float, nargs="*", metavar="BLEND",
                    help="also the CNN with batch-norm statistics re-estimated on the other sources' real slices "
                    "(unlabelled), mixed BLEND with the training ones (default 1.0 and 0.5)")
    ap.add_argument("--answers", type=Path, metavar="CSV", help="write the CNN's answer per series (pixel facts)")
    args = ap.parse_args(argv)
    model = CnnModel.load(args.models)
    classes = model.config.sequence_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, uids, emb, labels = real_slices(args.data, model)
        if args.manifest:
            add_anatomy(labels, args.manifest)
        y = np.array([labels[u]["sequence"] for u in uids])
        sources = np.array([labels[u]["source"] for u in uids])
        as_is = np.log(model.infer(images)["sequence"] + 1e-9)
        print(f"the CNN of {args.models}: {_both(as_is, uids, classes, labels)}")
        if args.answers:
            write_answers(args.answers, as_is, uids, classes, labels)
        distortion_probe(model, images, uids, classes, labels, args.distort)
        probe = linear_probe(emb, uids, y, sources, classes)
        print(f"linear probe on its embeddings, leave-source-out: {_both(probe, uids, classes, labels)}")
        for blend in ([1.0, 0.5] if args.adabn == [] else args.adabn or []):
            adapted = adabn(args.models, images, sources, classes, blend)
            print(f"batch-norm statistics from the other sources' slices ({blend:g} of them), leave-source-out: "
                  f"{_both(adapted, uids, classes, labels)}")
        if args.fine_tune:
            tuned = fine_tune(args.models, images, y, sources, classes, args.epochs)
            print(f"whole CNN fine-tuned, five folds of sources: {_both(tuned, uids, classes, labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
