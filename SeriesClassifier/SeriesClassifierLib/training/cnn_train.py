"""Train and evaluate the slice CNN on a labelled corpus (folder of DICOM + labels.csv).

    python -m SeriesClassifierLib.training.cnn_train --train /work/data/corpus_train \\
        --val /work/data/corpus_holdout --out DIR [--epochs N] [--resume] ...

1. Cache: every labelled series is sampled exactly as at inference (slices.py)
   and its K preprocessed slices stored as uint8 in ``<cache>/<corpus>.npz``
   once; training then runs from memory.
2. Split: one training PROFILE (scanner/site) is held out as validation for
   early stopping, so the stopping criterion sees an unseen site like the test
   will. The --val corpus (held-out profiles) is used only for the final test.
3. Train: weighted sampler (1/sqrt class frequency) for balance, augmentation
   on the batch (rotation, zoom, shift, left-right flip for axial/coronal slices
   only, padding bars filled or added, background zeroed, gamma, noise, blur,
   bias field; ``augment_strength`` scales them), weighted multi-task loss
   (``task_weights``: sequence 1, plane 0.5, each attribute 0.25; or the
   paper's 0.7 / 0.3; or the sequence alone), the sequence head's loss
   cross-entropy, focal or asymmetric (``loss``). A checkpoint after
   every epoch (``--resume`` continues from it); the best epoch on the
   validation profile is exported as cnn.safetensors + cnn.json.
4. Aggregation: a GRU over slice embeddings is fitted on frozen embeddings and
   kept only when it beats the mean log-prob on the validation profile. With
   ``--slice-model gru|conv1d`` the series head (aggregate.SliceHead: the mean-pooled
   embedding plus a residual GRU or 1-D convolution neck) is instead trained end to
   end with the CNN on batches of whole series (``fit_cnn``) and is the model's
   aggregator; ``none`` (the default) is the mean log-probability, trained as before.
5. Test: series accuracy, macro-F1, per-class recall, ECE (models/calibration.py)
   and a confusion picture on --val, headers not used by the model.

``--real REALDEV`` (``build_real_dev.py``'s folder of real, labelled series) trains on real series beside the
generated ones: each real series' profile is ``real:SOURCE`` (``--exclude-profile real:SOURCE`` leaves a source
out; ``benchmarks/cnn_real_folds.py`` measures it that way), ``--real-share`` of each epoch's slices are drawn
from them, and they are never the validation profile.

``train_cnn(train, out, TrainOptions(...))`` is the function ``seriesclassifier train``
calls; ``fit_cnn`` is its optimisation alone (``seriesclassifier tune`` calls it on
caches it derives).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dicom.slices import SliceOptions, sample_series
from ..models.aggregate import SLICE_MODELS, LearnedAggregator, SliceHead, pad_embeddings, slice_head_for
from ..models.cnn import CnnConfig, CnnModel, SeriesNet, head_classes

log = logging.getLogger("cnn_train")

LOSS_WEIGHTS = {"sequence": 1.0, "orientation": 0.5}
ATTRIBUTE_WEIGHT = 0.25
SERIES_LOSS_WEIGHT = 1.0  # --slice-model: the series head's loss, added to the slice heads' weighted sum
REAL_PREFIX = "real:"  # the profile of a real series is its source's name after this


# ----------------------------------------------------------------------------- corpus → cache


def label_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a labels CSV, one per series (``training.evaluate.read_labels`` reads it)."""
    from .evaluate import read_labels as read_labels_by_uid

    return list(read_labels_by_uid(path).values())


def series_files(corpus: str | Path) -> dict[str, list[Path]]:
    """SeriesInstanceUID → files, via the engine's folder source (grouping tags only)."""
    from ..dicom.sources import iter_series_refs

    return {ref.series_uid: list(ref.files) for ref in iter_series_refs(corpus)}


def _plane(iop, threshold: float) -> str | None:
    from ..dicom.orientation import plane_of

    if iop is None:
        return None
    try:
        return plane_of(iop, threshold)
    except ValueError:
        return None


def _sample_one(args) -> tuple[str, np.ndarray | None, list[str | None], str]:
    uid, files, options, threshold = args
    try:
        s = sample_series(files, options)
    except Exception as exc:  # reported and skipped, never fatal
        return uid, None, [], f"{exc.__class__.__name__}: {exc}"
    images = np.round(s.images * 255).astype(np.uint8)
    planes = [_plane(o, threshold) for o in s.orientations]
    return uid, images, planes, ""


@dataclass
class Cache:
    """Slices of a corpus in memory, with per-slice and per-series labels (indices into config classes)."""

    images: np.ndarray  # (N, S, S) uint8
    series_index: np.ndarray  # (N,) index into the series arrays
    labels: dict[str, np.ndarray]  # head → (N,) class index, -1 when unknown
    uids: np.ndarray  # (M,) series
    profiles: np.ndarray  # (M,)
    series_labels: dict[str, np.ndarray]  # head → (M,) class index (orientation: over orientation_codes)
    n_labels: int = -1  # rows of labels.csv when built: a grown corpus is re-cached

    def subset_series(self, keep: np.ndarray) -> Cache:
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        rows = keep[self.series_index]
        return Cache(
            self.images[rows],
            new_index[self.series_index[rows]],
            {k: v[rows] for k, v in self.labels.items()},
            self.uids[keep],
            self.profiles[keep],
            {k: v[keep] for k, v in self.series_labels.items()},
        )

    @classmethod
    def concat(cls, caches: list[Cache]) -> Cache:
        """Several corpora as one (series indices shifted)."""
        if len(caches) == 1:
            return caches[0]
        offsets = np.cumsum([0] + [len(c.uids) for c in caches[:-1]])
        return cls(
            np.concatenate([c.images for c in caches]),
            np.concatenate([c.series_index + o for c, o in zip(caches, offsets)]).astype(np.int32),
            {k: np.concatenate([c.labels[k] for c in caches]) for k in caches[0].labels},
            np.concatenate([c.uids for c in caches]),
            np.concatenate([c.profiles for c in caches]),
            {k: np.concatenate([c.series_labels[k] for c in caches]) for k in caches[0].series_labels},
        )

    def save(self, path: Path) -> None:
        arrays = {"images": self.images, "series_index": self.series_index, "uids": self.uids,
                  "profiles": self.profiles, "n_labels": np.asarray(self.n_labels)}
        arrays.update({f"slicelabel__{k}": v for k, v in self.labels.items()})
        arrays.update({f"serieslabel__{k}": v for k, v in self.series_labels.items()})
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Cache:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["images"], z["series_index"],
                {k[12:]: z[k] for k in z.files if k.startswith("slicelabel__")},
                z["uids"], z["profiles"],
                {k[13:]: z[k] for k in z.files if k.startswith("serieslabel__")},
                int(z["n_labels"]) if "n_labels" in z.files else -1,
            )


def build_cache(corpus: str | Path, config: CnnConfig, out: str | Path, workers: int = 2,
                labels_csv: str | Path | None = None, real: bool = False) -> Cache:
    """Sample every labelled series of a corpus once; reuse ``out`` when it exists.

    ``real``: a corpus of real scanner series (``build_real_dev.py``'s labels, one ``source`` per series):
    each series' profile is ``real:SOURCE``, so a source is left out as a profile is."""
    out = Path(out)
    corpus = Path(corpus)
    rows = label_rows(labels_csv or corpus / "labels.csv")
    if out.is_file():
        cached = Cache.load(out)
        if cached.n_labels == len(rows):
            log.info("cache %s exists: reusing it", out)
            return cached
        log.info("cache %s was built from %d labels, labels.csv now has %d: rebuilding", out, cached.n_labels,
                 len(rows))
    from ..vocabulary import load_vocabulary

    files = series_files(corpus)
    options = config.options
    threshold = load_vocabulary().oblique_threshold_degrees
    classes = head_classes(config)
    todo = [(r["series_uid"], files[r["series_uid"]], options, threshold) for r in rows if r["series_uid"] in files]
    missing = len(rows) - len(todo)
    if missing:
        log.warning("%d labelled series have no files under %s", missing, corpus)
    by_uid = {r["series_uid"]: r for r in rows}
    images, series_index, per_slice = [], [], {h: [] for h in classes}
    uids, profiles, series_labels = [], [], {h: [] for h in classes}
    t0 = time.time()
    # fork after torch has started its thread pool can deadlock the children: spawn them, or stay in-process
    pool = (ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    results = pool.map(_sample_one, todo, chunksize=4) if pool is not None else map(_sample_one, todo)
    try:
        for n, (uid, imgs, planes, err) in enumerate(results, 1):
            if imgs is None:
                log.warning("series %s skipped: %s", uid, err)
                continue
            row = by_uid[uid]
            m = len(uids)
            uids.append(uid)
            profiles.append(REAL_PREFIX + row.get("source", "") if real else row.get("profile", ""))
            for head, cls_list in classes.items():
                series_value = row.get(head, "")
                if head == "orientation":
                    series_labels[head].append(_index(config.orientation_codes, series_value))
                    values = [p if p is not None else series_value for p in planes]
                else:
                    series_labels[head].append(_index(cls_list, series_value))
                    values = [series_value] * len(imgs)
                per_slice[head].extend(_index(cls_list, v) for v in values)
            images.append(imgs)
            series_index.extend([m] * len(imgs))
            if n % 200 == 0:
                log.info("cached %d/%d series (%.0f s)", n, len(todo), time.time() - t0)
    finally:
        if pool is not None:
            pool.shutdown()
    cache = Cache(
        np.concatenate(images),
        np.asarray(series_index, dtype=np.int32),
        {h: np.asarray(v, dtype=np.int16) for h, v in per_slice.items()},
        np.asarray(uids),
        np.asarray(profiles),
        {h: np.asarray(v, dtype=np.int16) for h, v in series_labels.items()},
        n_labels=len(rows),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    cache.save(out)
    log.info("cached %d slices of %d series in %.0f s -> %s", len(cache.images), len(uids), time.time() - t0, out)
    return cache


def _index(values: list[str], value: str) -> int:
    return values.index(value) if value in values else -1


# ----------------------------------------------------------------------------- augmentation


def _edge_zero_bands(x: torch.Tensor) -> torch.Tensor:
    """(B,1,S,S) → bool mask of the all-zero rows/columns at the image edges (padding bars)."""
    zero_rows = x.amax(dim=-1)[:, 0] <= 0  # (B, S)
    zero_cols = x.amax(dim=-2)[:, 0] <= 0
    s = x.shape[-1]

    def band(z):
        lead = torch.cumprod(z.int(), dim=1).sum(dim=1, keepdim=True)
        trail = torch.cumprod(z.flip(1).int(), dim=1).sum(dim=1, keepdim=True)
        i = torch.arange(s)[None]
        return (i < lead) | (i >= s - trail)

    return (band(zero_rows)[:, None, :, None] | band(zero_cols)[:, None, None, :])


def augment(x: torch.Tensor, flippable: torch.Tensor, gen: torch.Generator, strength: float = 1.0,
            sharpen: float = 0.0) -> torch.Tensor:
    """Batch augmentation of (B,1,S,S) images in [0,1]; left-right flips only where anatomically valid.

    Besides geometry and intensity, the generator's possible shortcuts are broken on the batch:
    padding bars are filled with a noise floor (half of the images that have them) or added (a
    quarter of all images), and the background outside the head is zeroed in some.
    ``strength`` scales every magnitude and probability (1 = the defaults; the random draws are the same
    whatever the strength, so a run differs only by how far each change goes). ``sharpen`` is the share of
    images given an unsharp mask (0, the default, draws nothing: the stream is the one before it existed).
    """
    b = x.shape[0]
    s = float(strength)

    def u(lo, hi, n=b):
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    def p(prob):
        return min(1.0, prob * s)

    angle = u(-20 * s, 20 * s) * math.pi / 180
    scale = u(1 - 0.25 * s, 1 + 0.3 * s)
    flip = torch.where((torch.rand(b, generator=gen) < 0.5) & flippable, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * flip, -sin, u(-0.1 * s, 0.1 * s)
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * flip, cos, u(-0.1 * s, 0.1 * s)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # padding bars removed: the zero bands at the edges get a noise floor
    fill = (torch.rand(b, 1, 1, 1, generator=gen) < p(0.5)) & _edge_zero_bands(x)
    floor = torch.randn(x.shape, generator=gen).abs() * u(0.005, 0.06).view(b, 1, 1, 1)
    x = torch.where(fill, floor, x)
    # padding bars added: zero bands at two opposite edges
    size = x.shape[-1]
    add = torch.rand(b, generator=gen) < p(0.25)
    rows = torch.rand(b, generator=gen) < 0.75
    w1, w2 = (u(0.03, 0.2) * size).long(), (u(0.03, 0.2) * size).long()
    i = torch.arange(size)[None]
    band = ((i < w1[:, None]) | (i >= size - w2[:, None])) & add[:, None]  # (B, S)
    mask = torch.where(rows[:, None, None], band[:, :, None].expand(-1, -1, size),
                       band[:, None, :].expand(-1, size, -1))[:, None]
    x = x.masked_fill(mask, 0.0)
    # smooth multiplicative bias field
    field = F.interpolate(torch.randn(b, 1, 3, 3, generator=gen), size=x.shape[-2:], mode="bicubic",
                          align_corners=False)
    use = (torch.rand(b, 1, 1, 1, generator=gen) < p(0.5)).float()
    x = x * torch.exp(0.25 * s * field * use)
    # coarser acquisition matrix: unseen sites scan at other resolutions than the training profiles
    lowres = torch.rand(b, generator=gen) < p(0.3)
    if lowres.any():
        size = x.shape[-1]
        small = int(size / float(u(1.2, 2.2, 1)))
        coarse = F.interpolate(x[lowres], size=(small, small), mode="area")
        x[lowres] = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    # blur
    blur = torch.rand(b, generator=gen) < p(0.2)
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        k2 = (k[:, None] * k[None, :])[None, None]
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k2)
    if sharpen > 0:
        x = _sharpened(x, torch.rand(b, generator=gen) < min(1.0, sharpen * s), u(0.3, 1.5), ~blur & ~lowres)
    # background suppression: zero outside a smoothed threshold of the object
    suppress = (torch.rand(b, 1, 1, 1, generator=gen) < p(0.15)).float()
    smooth = F.avg_pool2d(x, 9, stride=1, padding=4)
    keep = (smooth > u(0.03, 0.12).view(b, 1, 1, 1)).float()
    x = x * (1 - suppress + suppress * keep)
    # gamma
    gamma = torch.exp(u(-0.4 * s, 0.4 * s)).view(b, 1, 1, 1)
    x = x.clamp(0, 1.5) ** gamma
    # Rician-like noise
    sigma = (u(0, 0.06 * s) * (torch.rand(b, generator=gen) < p(0.5)).float()).view(b, 1, 1, 1)
    n1 = torch.randn(x.shape, generator=gen) * sigma
    n2 = torch.randn(x.shape, generator=gen) * sigma
    x = torch.sqrt((x + n1) ** 2 + n2**2)
    return x.clamp(0, 1)


def _sharpened(x: torch.Tensor, pick: torch.Tensor, amount: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Unsharp mask (σ 1 px, ``amount`` per image) on the picked images not blurred in this batch.

    Real scanners' images are sharper than renders of the generator's 1.5 mm phantom at 128 px (edge sharpness,
    docs/CNN_SHORTCUTS.md) and the renders never sharper than that: without this the CNN may read "blurred" as a
    class (real localisers blurred by 2 px became SCOUT; unblurred, T1_3D_POST).
    """
    pick = pick & allowed
    if not pick.any():
        return x
    k = torch.exp(-torch.arange(-2.0, 3.0) ** 2 / 2)
    k = k / k.sum()
    picked = x[pick]
    soft = F.conv2d(F.pad(picked, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    soft = F.conv2d(F.pad(soft, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
    x = x.clone()
    x[pick] = (picked + amount[pick].view(-1, 1, 1, 1) * (picked - soft)).clamp(0, 1.5)
    return x


# ----------------------------------------------------------------------------- training


def augmented_batch(cache: Cache, idx: np.ndarray, flippable: torch.Tensor, gen: torch.Generator,
                    strength: float = 1.0, sharpen: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Slices ``idx`` of a cache as an augmented (B,1,S,S) tensor, with their per-head targets."""
    x = torch.from_numpy(cache.images[idx].astype(np.float32) / 255.0)[:, None]
    planes = torch.from_numpy(cache.labels["orientation"][idx].astype(np.int64))
    x = augment(x, torch.isin(planes, flippable), gen, strength, sharpen)
    return x, {h: torch.from_numpy(v[idx].astype(np.int64)) for h, v in cache.labels.items()}


def flippable_planes(config: CnnConfig) -> torch.Tensor:
    """Plane indices where a left-right flip is anatomically valid (axial and coronal slices)."""
    return torch.tensor([config.orientation_classes.index(p) for p in ("AXIAL", "CORONAL")
                         if p in config.orientation_classes])


def focal_cross_entropy(logits: torch.Tensor, target: torch.Tensor, gamma: float,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy, down-weighted by (1 - p_t)^gamma (Lin et al. 2017); gamma 0 is plain CE.

    Targets of -1 (unknown) count for nothing; the mean is over the known ones.
    """
    logp = F.log_softmax(logits, dim=1)
    ce = F.nll_loss(logp, target, weight=weight, reduction="none", ignore_index=-1)
    if gamma <= 0:
        valid = target >= 0
        return ce.sum() / valid.sum().clamp(min=1)
    pt = torch.exp(-F.nll_loss(logp, target.clamp(min=0), reduction="none"))
    valid = (target >= 0).float()
    return (((1 - pt) ** gamma) * ce * valid).sum() / valid.sum().clamp(min=1)


def asymmetric_loss(logits: torch.Tensor, target: torch.Tensor, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                    clip: float = 0.05) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al. 2021) in its one-vs-all form, on the head's softmax probabilities.

    Every class c is a binary problem with p_c = softmax(logits)_c: the true class costs
    -(1 - p)^gamma_pos * log(p); every other class costs -p_m^gamma_neg * log(1 - p_m) with the shifted
    probability p_m = max(p - clip, 0), so easy negatives (p <= clip) cost nothing and the rest are
    down-weighted more steeply than the positive. Summed over the classes, averaged over the known targets.
    With gamma_pos = gamma_neg = 0 and clip = 0 it is the binary cross-entropy of the softmax
    probabilities. Why softmax and not the paper's sigmoids: the head stays a softmax, so its
    probabilities still sum to one for the aggregation, temperature scaling and the ensemble; and unlike
    the single-label variant of the authors' code (focal on the positive, gamma_neg acting only through
    label smoothing) the negatives' focusing and the clip act as in the paper.
    """
    valid = target >= 0
    logp = F.log_softmax(logits, dim=1)
    prob = logp.exp()
    y = F.one_hot(target.clamp(min=0), logits.shape[1]).to(prob.dtype)
    pos = -((1 - prob) ** gamma_pos) * logp if gamma_pos else -logp
    shifted = (prob - clip).clamp(min=0) if clip > 0 else prob
    log_not = torch.log1p(-shifted.clamp(max=1 - 1e-6))
    neg = -(shifted**gamma_neg) * log_not if gamma_neg else -log_not
    per_series = (y * pos + (1 - y) * neg).sum(dim=1)
    return (per_series * valid).sum() / valid.sum().clamp(min=1)


TASK_WEIGHTINGS = ("ours", "paper", "single")


def task_weights(config: CnnConfig, scheme: str = "ours") -> dict[str, float]:
    """Weight of each head's loss.

    ``ours``: sequence 1, orientation 0.5, each attribute 0.25 (the main task 40 % of the total);
    ``paper``: the main task 0.7 and the auxiliary heads 0.3 shared equally (the multi-task paper);
    ``single``: the sequence alone (the auxiliary heads are not trained; their softmaxes still feed the
    sequence head as untrained features, and the CNN's orientation answer is then meaningless).
    """
    aux = ["orientation", *config.attributes]
    if scheme == "ours":
        return {"sequence": LOSS_WEIGHTS["sequence"], **{h: LOSS_WEIGHTS.get(h, ATTRIBUTE_WEIGHT) for h in aux}}
    if scheme == "paper":
        return {"sequence": 0.7, **{h: 0.3 / len(aux) for h in aux}}
    if scheme == "single":
        return {"sequence": 1.0, **{h: 0.0 for h in aux}}
    raise ValueError(f"task weighting {scheme!r}: one of {', '.join(TASK_WEIGHTINGS)}")


LOSSES = ("ce", "focal", "asl")


@dataclass
class LossOptions:
    """The sequence head's loss and the heads' weights (the auxiliary heads always use cross-entropy)."""

    loss: str = "ce"  # "ce" (with the class-balanced sampler: the weighted baseline), "focal" or "asl"
    focal_gamma: float = 0.0  # focal's gamma; with loss "ce" a gamma > 0 means focal (the old option)
    asl_gamma_pos: float = 0.0
    asl_gamma_neg: float = 4.0
    asl_clip: float = 0.05
    task_weights: str = "ours"

    def sequence_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "asl":
            return asymmetric_loss(logits, target, self.asl_gamma_pos, self.asl_gamma_neg, self.asl_clip)
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r}: one of {', '.join(LOSSES)}")
        return focal_cross_entropy(logits, target, self.focal_gamma)


def multitask_loss(out: dict, targets: dict, config: CnnConfig, focal_gamma: float = 0.0,
                   loss: LossOptions | None = None) -> torch.Tensor:
    """The weighted sum of the heads' losses (``loss`` defaults to cross-entropy, focal when ``focal_gamma``)."""
    loss = loss or LossOptions(focal_gamma=focal_gamma)
    weights = task_weights(config, loss.task_weights)
    total = torch.zeros(())
    for head, w in weights.items():
        if w:
            value = loss.sequence_loss(out[head], targets[head]) if head == "sequence" else \
                focal_cross_entropy(out[head], targets[head], 0.0)
            total = total + w * value
    return total


def choose_val_profile(cache: Cache, fraction: float = 0.15) -> str:
    """The training profile whose share of series is closest to ``fraction`` (deterministic)."""
    names, counts = np.unique(cache.profiles, return_counts=True)
    share = counts / counts.sum()
    return str(names[int(np.argmin(np.abs(share - fraction)))])


def series_outputs(model: CnnModel, cache: Cache) -> list:
    """Per-slice inference over a cache, then ModelOutput per series (what predict(series) would give)."""
    slice_out = model.infer(cache.images.astype(np.float32) / 255.0, batch_size=128)
    outputs = []
    for m in range(len(cache.uids)):
        rows = cache.series_index == m
        outputs.append(model.output_from_slices({k: v[rows] for k, v in slice_out.items()}))
    return outputs


def evaluate(model: CnnModel, cache: Cache) -> dict:
    """Series-level metrics of the CNN alone on a cached corpus."""
    outputs = series_outputs(model, cache)
    classes = head_classes(model.config)
    result: dict = {"n_series": len(outputs), "n_slices": int(len(cache.images))}
    seq_classes = classes["sequence"]
    y = cache.series_labels["sequence"].astype(int)
    ok = y >= 0
    probs = np.array([[o.sequence.probabilities[c] for c in seq_classes] for o in outputs])
    pred = probs.argmax(axis=1)
    result["sequence"] = _classification_metrics(y[ok], probs[ok], seq_classes)
    yo = cache.series_labels["orientation"].astype(int)
    codes = model.config.orientation_codes
    po = np.array([[o.orientation.probabilities[c] for c in codes] for o in outputs])
    result["orientation"] = _classification_metrics(yo[yo >= 0], po[yo >= 0], codes)
    for name, values in model.config.attributes.items():
        ya = cache.series_labels[name].astype(int)
        pa = np.array([values.index(o.attributes[name].label) for o in outputs])
        result[name] = {"accuracy": float((pa[ya >= 0] == ya[ya >= 0]).mean()) if (ya >= 0).any() else None}
    result["_pred"] = pred.tolist()
    result["_true"] = y.tolist()
    return result


def _classification_metrics(y: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1, per-class recall, ECE (models/calibration.py, 15 bins) and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, f1_score

    from ..models.calibration import expected_calibration_error

    pred = probabilities.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    present = sorted(set(y.tolist()))
    recall = {classes[c]: float((pred[y == c] == c).mean()) for c in present}
    return {
        "accuracy": float((pred == y).mean()) if len(y) else None,
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)) if len(y) else None,
        "recall": recall,
        "ece": expected_calibration_error(probabilities, y),
        "confusion": confusion_matrix(y, pred, labels=list(range(len(classes)))).tolist(),
    }


def plot_confusion(matrix, classes: list[str], path: str | Path, title: str) -> None:
    import matplotlib

    matrix = np.asarray(matrix, dtype=float)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    m = matrix[keep][:, keep]
    names = [c for c, k in zip(classes, keep) if k]
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.42 * len(names) + 3, 0.42 * len(names) + 2.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _real_series(cache: Cache) -> np.ndarray:
    """Per series: is it a real scanner series (profile ``real:SOURCE``)?"""
    return np.char.startswith(cache.profiles.astype(str), REAL_PREFIX)


def sampler_weights(labels: np.ndarray, real: np.ndarray, real_share: float) -> np.ndarray:
    """Class-balanced sampling weights per slice; with ``real_share`` > 0 the real slices (``real``) are drawn
    that share of the time, balanced among themselves: a few dozen real series beside tens of thousands of
    generated slices would otherwise hardly be seen."""
    if real_share <= 0 or not real.any() or real.all():
        return _class_weights_for_sampler(labels)
    weights = np.zeros(len(labels))
    for part, share in ((real, real_share), (~real, 1.0 - real_share)):
        weights[part] = share * _class_weights_for_sampler(labels[part])
    return weights / weights.sum()


def _class_weights_for_sampler(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels[labels >= 0], minlength=int(labels.max()) + 1).astype(float)
    w = np.where(labels >= 0, 1.0 / np.sqrt(np.maximum(counts[np.clip(labels, 0, None)], 1)), 0.0)
    return w / w.sum()


def _save_checkpoint(path: Path, net, opt, epoch: int, best: float, history: list, bad_epochs: int,
                     head: SliceHead | None = None) -> None:
    state = {"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "best": best,
             "bad_epochs": bad_epochs, "history_json": json.dumps(history)}
    if head is not None:
        state["head"] = head.state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class TrainOptions(LossOptions):
    """Everything a CNN training run is told (the loss options included); recorded in the model's cnn.json."""

    test: str | Path | None = None  # held-out corpus for the final test only
    cache_dir: str | Path | None = None
    val_profile: str | None = None
    exclude_profiles: list[str] | None = None
    real: str | Path | None = None  # a corpus of real, labelled scanner series trained on beside the generated
    real_share: float = 0.0  # the share of training slices drawn from ``real`` (0: as their number gives)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    patience: int = 4
    seed: int = 0
    threads: int = 2
    workers: int = 2
    max_minutes: float = 55.0
    samples_per_epoch: int | None = None
    k: int = 8
    size: int = 128
    widths: list[int] | None = None  # five stage widths (default CnnConfig's)
    blocks: list[int] | None = None  # residual blocks of the four stages after the stem (default one each)
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    augment_strength: float = 1.0
    sharpen: float = 0.0  # share of training slices given an unsharp mask (augment)
    slice_model: str = "none"  # "gru" / "conv1d": a SliceHead trained end to end (see fit_cnn)
    series_batches: bool = False  # steps of whole series without a slice model (the batching's own effect)
    fit_gru: bool = True
    resume: bool = False
    init: str | Path | None = None  # a trained model folder to start from (its widths and weights)
    command: str = ""
    docs_dir: str | Path | None = None
    labels_csv: str | Path | None = None

    def slice_options(self) -> SliceOptions:
        return SliceOptions(k=self.k, size=self.size, clahe=self.clahe, clahe_clip=self.clahe_clip,
                            clahe_tiles=self.clahe_tiles)

    def cnn_config(self) -> CnnConfig:
        config = CnnConfig.from_vocabulary(slice_options=self.slice_options().to_dict())
        if self.init:  # the starting model's shape; its weights are loaded by fit_cnn
            start = CnnModel.load(self.init).config
            config.widths, config.blocks = list(start.widths), list(start.blocks)
        if self.widths:
            config.widths = list(self.widths)
        if self.blocks:
            config.blocks = list(self.blocks)
        return config

    def cache_tag(self) -> str:
        clahe = ""
        if self.clahe:
            clahe = "_clahe" if (self.clahe_clip, self.clahe_tiles) == (2.0, 8) else \
                f"_clahe{self.clahe_clip:g}x{self.clahe_tiles}"
        return f"k{self.k}_s{self.size}{clahe}"

    def loss_options(self) -> LossOptions:
        return LossOptions(**{f.name: getattr(self, f.name) for f in fields(LossOptions)})


def train_cnn(train: str | Path | list[str | Path], out: str | Path, options: TrainOptions | None = None,
              **overrides) -> dict:
    """Train the CNN on a corpus; write cnn.safetensors + cnn.json (+ metrics) into ``out``. Returns metrics.

    ``options`` (default ``TrainOptions()``) with any of its fields overridden by keyword.
    """
    opts = replace(options or TrainOptions(), **overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else out / "cache"
    config = opts.cnn_config()
    corpora = [train] if isinstance(train, (str, Path)) else list(train)
    train_c, val_c, val_profile = _training_caches(corpora, config, cache_dir, opts.cache_tag(), opts.workers,
                                                   opts.labels_csv, opts.exclude_profiles, opts.val_profile,
                                                   opts.real)
    model, history, best = fit_cnn(train_c, val_c, config, opts, out)
    result = {"val_profile": val_profile, "history": history}
    if opts.fit_gru and opts.slice_model == "none" and len(val_c.uids):  # an end-to-end head is the aggregator
        result["aggregation"] = _compare_aggregators(model, train_c, val_c, opts.seed)
        log.info("aggregation: %s", json.dumps(result["aggregation"]))
    model.config.version = time.strftime("%Y%m%d%H%M", time.gmtime())  # two trainings in a day differ
    model.config.training = {
        "command": opts.command, "train": [str(c) for c in corpora], "n_series": int(len(train_c.uids)),
        "n_slices": int(len(train_c.images)), "val_profile": val_profile, "epochs_run": len(history),
        "batch_size": opts.batch_size, "lr": opts.lr, "seed": opts.seed, "focal_gamma": opts.focal_gamma,
        "exclude_profiles": opts.exclude_profiles or [], "options": options_record(opts),
        "loss_weights": task_weights(config, opts.task_weights), "history": history,
    }
    model.config.metrics = {"validation_profile": {"sequence_accuracy": best}}
    if opts.test:
        test_cache = build_cache(opts.test, config, cache_dir / f"{Path(opts.test).name}_{opts.cache_tag()}.npz",
                                 opts.workers)
        docs = Path(opts.docs_dir) if opts.docs_dir else out
        result["test"] = _test_metrics(model, test_cache, str(opts.test), docs)
    model.save(out)
    (out / "cnn_metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def options_record(opts: TrainOptions) -> dict:
    """The options as JSON values (paths as text), for cnn.json and the tune log."""
    record = {}
    for f in fields(opts):
        value = getattr(opts, f.name)
        record[f.name] = str(value) if isinstance(value, Path) else value
    return record


def fit_cnn(train_c: Cache, val_c: Cache, config: CnnConfig, opts: TrainOptions,
            out: Path) -> tuple[CnnModel, list[dict], float]:
    """The optimisation: epochs of class-balanced, augmented batches; the best epoch on ``val_c`` kept in ``out``.

    A checkpoint after every epoch (``opts.resume`` continues from it). Returns (the best model, the history,
    its validation sequence accuracy).

    ``opts.slice_model`` "gru" / "conv1d": a SliceHead over the slice embeddings is trained with the network
    (the gradient of its series loss flows into the backbone). A step then takes whole series: batch_size // k
    series with all their slices (about batch_size slices, as a slice step), sampled class-balanced by series
    (1/sqrt frequency); the loss is the slice heads' weighted sum as without it plus the series head's
    sequence loss (``SERIES_LOSS_WEIGHT``). The head is the model's aggregator (cnn.json "slice_gru" /
    "slice_conv1d", its weights "agg.*"), so the best epoch is chosen on its series answers. "none": the
    slice training above, unchanged. ``opts.series_batches`` without a slice model: the whole-series steps
    with the slice heads' loss alone (mean log-probability): what the batching does without the head.
    """
    if opts.slice_model not in SLICE_MODELS:
        raise ValueError(f"slice model {opts.slice_model!r}: one of {', '.join(SLICE_MODELS)}")
    net = SeriesNet(config)
    head = None
    if opts.slice_model != "none":
        config.aggregator = f"slice_{opts.slice_model}"
        head = slice_head_for(config.aggregator, config.widths[-1], len(config.sequence_classes), config.gru_hidden)
    opt = torch.optim.AdamW(net.parameters() if head is None else [*net.parameters(), *head.parameters()],
                            lr=opts.lr, weight_decay=1e-4)
    ckpt = out / "checkpoint.pt"
    if opts.init and not (opts.resume and ckpt.exists()):
        net.load_state_dict(CnnModel.load(opts.init).net.state_dict())
        log.info("starting from the weights of %s", opts.init)
    start_epoch, best, bad_epochs, history = _restore(ckpt, net, opt, head) if opts.resume else (0, -1.0, 0, [])
    per_epoch = opts.samples_per_epoch or len(train_c.images)
    steps = max(1, per_epoch // opts.batch_size)
    # on resume the schedule continues where it was (the optimizer state carries initial_lr); the total may grow
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opts.lr,
                                                total_steps=max(opts.epochs, start_epoch + 1) * steps,
                                                pct_start=0.15, last_epoch=start_epoch * steps - 1)
    weights = sampler_weights(train_c.labels["sequence"].astype(int), _real_series(train_c)[train_c.series_index],
                              opts.real_share)
    flippable = flippable_planes(config)
    gen = torch.Generator().manual_seed(opts.seed)
    model = CnnModel(net, config, _aggregator(head))
    t_start = time.time()
    for epoch in range(start_epoch, opts.epochs):
        net.train()
        ep_rng = np.random.default_rng(opts.seed * 1000 + epoch)  # resumable: depends on the epoch only
        gen.manual_seed(opts.seed * 1000 + epoch)
        t0 = time.time()
        if head is None and not opts.series_batches:
            idx_all = ep_rng.choice(len(train_c.images), size=steps * opts.batch_size, p=weights)
            total = _train_steps(net, opt, sched, train_c, idx_all.reshape(steps, opts.batch_size), flippable,
                                 gen, config, opts)
        else:
            if head is not None:
                head.train()
            per_step = max(1, opts.batch_size // opts.k)
            series_all = ep_rng.choice(len(train_c.uids), size=steps * per_step,
                                       p=_class_weights_for_sampler(train_c.series_labels["sequence"].astype(int)))
            total = _train_series_steps(net, head, opt, sched, train_c, series_all.reshape(steps, per_step),
                                        flippable, gen, config, opts)
        model = CnnModel(net.eval(), config, _aggregator(head))
        metrics = evaluate(model, val_c) if len(val_c.uids) else {"sequence": {"accuracy": 0.0}}
        score = metrics["sequence"]["accuracy"]
        entry = {"epoch": epoch, "loss": total / steps, "val_sequence_acc": score,
                 "val_macro_f1": metrics["sequence"].get("macro_f1"),
                 "val_orientation_acc": metrics.get("orientation", {}).get("accuracy"),
                 "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        log.info("epoch %d: %s", epoch, json.dumps(entry))
        if score > best:
            best, bad_epochs = score, 0
            model.save(out)
        else:
            bad_epochs += 1
        _save_checkpoint(ckpt, net, opt, epoch, best, history, bad_epochs, head)
        if bad_epochs >= opts.patience:
            log.info("early stop: no improvement for %d epochs", opts.patience)
            break
        if (time.time() - t_start) / 60 > opts.max_minutes:
            log.info("time budget of %.0f min reached", opts.max_minutes)
            break
    return CnnModel.load(out), history, best


def _training_caches(corpora: list, config: CnnConfig, cache_dir: Path, tag: str, workers: int,
                     labels_csv: str | Path | None, exclude_profiles: list[str] | None,
                     val_profile: str | None, real: str | Path | None = None) -> tuple[Cache, Cache, str]:
    """(training cache, validation cache, validation profile): the corpora sampled once, held-out profiles out.

    ``real``'s series are never the validation profile: early stopping stays on generated data, and what the
    real series teach is measured by leaving their sources out (``benchmarks/cnn_real_folds.py``)."""
    if labels_csv is not None and len(corpora) != 1:
        raise ValueError("a labels file override needs exactly one training corpus")
    caches = [build_cache(c, config, cache_dir / f"{Path(c).name}_{tag}.npz", workers, labels_csv) for c in corpora]
    if real is not None:
        caches.append(build_cache(real, config, cache_dir / f"real_{Path(real).name}_{tag}.npz", workers, real=True))
    cache = Cache.concat(caches)
    if exclude_profiles:
        cache = cache.subset_series(~np.isin(cache.profiles, exclude_profiles))
    val_profile = val_profile or choose_val_profile(cache.subset_series(~_real_series(cache)))
    is_val = cache.profiles == val_profile
    train_c, val_c = cache.subset_series(~is_val), cache.subset_series(is_val)
    log.info("train: %d series / %d slices; validation profile %r: %d series", len(train_c.uids),
             len(train_c.images), val_profile, len(val_c.uids))
    return train_c, val_c, val_profile


def _aggregator(head: SliceHead | None) -> LearnedAggregator | None:
    return None if head is None else LearnedAggregator(head)


def _restore(ckpt: Path, net: SeriesNet, opt, head: SliceHead | None = None) -> tuple[int, float, int, list]:
    """(next epoch, best score, epochs without improvement, history) from a checkpoint; a fresh start without."""
    if not ckpt.is_file():
        return 0, -1.0, 0, []
    state = torch.load(ckpt, weights_only=True)
    net.load_state_dict(state["net"])
    if head is not None:
        head.load_state_dict(state["head"])
    opt.load_state_dict(state["opt"])
    start_epoch, best, bad_epochs = int(state["epoch"]) + 1, float(state["best"]), int(state["bad_epochs"])
    log.info("resumed from %s at epoch %d (best %.4f)", ckpt, start_epoch, best)
    return start_epoch, best, bad_epochs, json.loads(state["history_json"])


def _train_steps(net: SeriesNet, opt, sched, train_c: Cache, batches: np.ndarray, flippable, gen, config: CnnConfig,
                 opts: TrainOptions) -> float:
    """One epoch's optimisation steps over the given batches of slice indices; the summed loss."""
    total = 0.0
    loss_options = opts.loss_options()
    for batch in batches:
        x, targets = augmented_batch(train_c, batch, flippable, gen,
                                     opts.augment_strength, opts.sharpen)
        loss = multitask_loss(net(x), targets, config, loss=loss_options)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item()
    return total


def _series_rows(cache: Cache) -> list[np.ndarray]:
    """The slice rows of each series of a cache, in their stored order (along the normal)."""
    order = np.argsort(cache.series_index, kind="stable")
    counts = np.bincount(cache.series_index, minlength=len(cache.uids))
    return np.split(order, np.cumsum(counts)[:-1])


def _train_series_steps(net: SeriesNet, head: SliceHead | None, opt, sched, train_c: Cache, batches: np.ndarray,
                        flippable, gen, config: CnnConfig, opts: TrainOptions) -> float:
    """One epoch of end-to-end steps over batches of series indices (fit_cnn's ``slice_model``); the summed loss.

    The slices of the batch's series go through the network together; their embeddings, padded per series,
    through the slice head (none: the slice heads' loss alone). Augmentation is drawn per slice, as in the
    slice steps.
    """
    total = 0.0
    loss_options = opts.loss_options()
    rows_of = _series_rows(train_c)
    series_y = train_c.series_labels["sequence"].astype(np.int64)
    for batch in batches:
        rows = [rows_of[m] for m in batch]
        x, targets = augmented_batch(train_c, np.concatenate(rows), flippable, gen,
                                     opts.augment_strength, opts.sharpen)
        out = net(x)
        loss = multitask_loss(out, targets, config, loss=loss_options)
        if head is not None:
            emb, mask = pad_embeddings(out["embedding"], [len(r) for r in rows])
            series_loss = loss_options.sequence_loss(head(emb, mask), torch.from_numpy(series_y[batch]))
            loss = loss + SERIES_LOSS_WEIGHT * series_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item()
    return total


def _test_metrics(model: CnnModel, test_cache: Cache, test_name: str, docs: Path) -> dict:
    """Held-out metrics into the model's config, confusion matrices as pictures; the public metrics."""
    config = model.config
    metrics = evaluate(model, test_cache)
    config.metrics["test"] = {
        "data": test_name, "n_series": metrics["n_series"],
        "sequence_accuracy": metrics["sequence"]["accuracy"], "sequence_macro_f1": metrics["sequence"]["macro_f1"],
        "sequence_ece": metrics["sequence"]["ece"], "orientation_accuracy": metrics["orientation"]["accuracy"],
        **{f"{a}_accuracy": metrics[a]["accuracy"] for a in config.attributes},
    }
    plot_confusion(metrics["sequence"]["confusion"], config.sequence_classes, docs / "cnn_confusion_sequence.png",
                   f"CNN alone (no headers), held-out profiles: acc {metrics['sequence']['accuracy']:.3f}, "
                   f"macro-F1 {metrics['sequence']['macro_f1']:.3f}")
    plot_confusion(metrics["orientation"]["confusion"], config.orientation_codes,
                   docs / "cnn_confusion_orientation.png",
                   f"CNN orientation, held-out: acc {metrics['orientation']['accuracy']:.3f}")
    log.info("test: %s", json.dumps(config.metrics["test"]))
    return _public(metrics)


def _public(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("_")}


def fine_tune_cnn(
    base: str | Path,
    data: str | Path,
    labels_csv: str | Path,
    out: str | Path,
    *,
    epochs: int = 2,
    lr: float = 2e-4,  # gentle: 4 epochs at 1e-3 made the CNN forget classes the site did not show (SITE_ADAPTATION)
    batch_size: int = 32,
    seed: int = 0,
    workers: int = 1,
    threads: int = 2,
) -> dict:
    """Adapt a trained CNN to a site's labelled series: the heads learn, the backbone stays as it was.

    A few corrected series cannot retrain 0.9 M weights without forgetting the rest of the
    vocabulary; the heads (a few thousand weights) can move towards the site's images while the
    features learnt from thousands of series stay. BatchNorm statistics are frozen too (eval mode)
    for the same reason. Writes cnn.safetensors + cnn.json into ``out``; returns the loss per epoch.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = CnnModel.load(base)
    config, net = model.config, model.net
    with tempfile.TemporaryDirectory() as tmp:  # the site's pixels do not belong in a models folder
        cache = build_cache(data, config, Path(tmp) / "site_slices.npz", workers, labels_csv)
    heads = [*net.aux_heads.parameters(), *net.sequence_head.parameters()]
    for param in net.parameters():
        param.requires_grad_(False)
    for param in heads:
        param.requires_grad_(True)
    net.eval()
    opt = torch.optim.AdamW(heads, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    flippable = flippable_planes(config)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(cache.images))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, targets = augmented_batch(cache, idx, flippable, gen)
            loss = multitask_loss(net(x), targets, config)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(round(total / max(len(order), 1), 4))
        log.info("fine-tune epoch %d: loss %.4f", len(losses) - 1, losses[-1])
    for param in net.parameters():
        param.requires_grad_(True)
    config.training = {**config.training, "fine_tuned_from": {"bundle": str(base), "version": config.version},
                       "fine_tune": {"n_series": int(len(cache.uids)), "n_slices": int(len(cache.images)),
                                     "epochs": epochs, "lr": lr, "losses": losses, "trained": "heads only"}}
    config.version = f"{config.version}+site{time.strftime('%Y%m%d', time.gmtime())}"
    model.save(out)  # the same net and config, now adapted; the aggregator is kept
    return {"losses": losses, "n_series": int(len(cache.uids)), "n_slices": int(len(cache.images))}


def _compare_aggregators(model: CnnModel, train_c: Cache, val_c: Cache, seed: int) -> dict:
    from ..models.aggregate import fit_gru

    base = evaluate(model, val_c)["sequence"]["accuracy"]
    emb = model.infer(train_c.images.astype(np.float32) / 255.0, batch_size=128)["embedding"]
    seqs = [emb[train_c.series_index == m] for m in range(len(train_c.uids))]
    y = train_c.series_labels["sequence"].astype(int)
    ok = [i for i in range(len(seqs)) if y[i] >= 0 and len(seqs[i])]
    counts = np.bincount(y[ok], minlength=len(model.config.sequence_classes)).astype(float)
    cw = 1.0 / np.sqrt(np.maximum(counts, 1))
    gru = fit_gru([seqs[i] for i in ok], y[ok], len(model.config.sequence_classes), seed=seed,
                  hidden=model.config.gru_hidden, class_weights=cw / cw.mean())
    model.set_aggregator(gru)
    learned = evaluate(model, val_c)["sequence"]["accuracy"]
    keep = learned > base + 0.005
    if not keep:
        model.set_aggregator(None)
    return {"mean_log_prob_val_acc": base, "gru_val_acc": learned, "kept": "gru" if keep else "mean"}


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m SeriesClassifierLib.training.cnn_train",
                                description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, nargs="+", help="corpus folder(s) with labels.csv (training profiles)")
    p.add_argument("--labels", help="labels file for the (single) training corpus instead of its labels.csv")
    p.add_argument("--val", help="held-out corpus for the final test only (labels.csv inside)")
    p.add_argument("--out", required=True, help="output folder (weights, config, checkpoint, log)")
    p.add_argument("--cache-dir", help="where the slice caches go (default OUT/cache)")
    p.add_argument("--val-profile", help="training profile held out for early stopping (default: chosen)")
    p.add_argument("--exclude-profile", action="append", default=[], help="training profiles to leave out")
    p.add_argument("--real", help="a folder of real, labelled scanner series (build_real_dev.py's) to train on "
                   "as well; each series' profile is real:SOURCE, so --exclude-profile leaves a source out")
    p.add_argument("--real-share", type=float, default=0.0,
                   help="share of training slices drawn from --real's series (default 0: as their number gives)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="processes for building the cache")
    p.add_argument("--max-minutes", type=float, default=55.0)
    p.add_argument("--samples-per-epoch", type=int)
    p.add_argument("--loss", choices=LOSSES, default="ce", help="the sequence head's loss (default ce)")
    p.add_argument("--focal-gamma", type=float, default=0.0)
    p.add_argument("--asl-gamma-pos", type=float, default=0.0)
    p.add_argument("--asl-gamma-neg", type=float, default=4.0)
    p.add_argument("--asl-clip", type=float, default=0.05)
    p.add_argument("--task-weights", choices=TASK_WEIGHTINGS, default="ours")
    p.add_argument("--augment-strength", type=float, default=1.0)
    p.add_argument("--sharpen", type=float, default=0.0,
                   help="share of training slices given an unsharp mask (default 0): real scanners' images are "
                        "sharper than the generator's")
    p.add_argument("--clahe", action="store_true")
    p.add_argument("--clahe-clip", type=float, default=2.0)
    p.add_argument("--clahe-tiles", type=int, default=8)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--widths", type=int, nargs=5, help="channels of the five stages (default 16 32 48 96 128)")
    p.add_argument("--blocks", type=int, nargs=4, help="residual blocks of the four stages (default 1 1 1 1)")
    p.add_argument("--slice-model", choices=SLICE_MODELS, default="none",
                   help="series head trained end to end with the CNN: the mean-pooled slice embedding plus a "
                   "residual bidirectional GRU or 1-D convolution (default none: mean log-probability)")
    p.add_argument("--no-gru", action="store_true", help="skip fitting the learned aggregator")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", help="a trained model folder (e.g. the bundle's) to start from instead of random weights")
    p.add_argument("--docs", help="folder for the confusion pictures (default OUT)")
    p.add_argument("--log", help="progress log file (default OUT/train.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(args.log or out / "train.log")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    command = "python -m SeriesClassifierLib.training.cnn_train " + " ".join(sys.argv[1:] if argv is None else argv)
    names = {f.name for f in fields(TrainOptions)}
    given = {k: v for k, v in vars(args).items() if k in names}
    train_cnn(args.train, out, TrainOptions(**given), test=args.val, exclude_profiles=args.exclude_profile,
              fit_gru=not args.no_gru, command=command, docs_dir=args.docs, labels_csv=args.labels)
    from ..models.bundle import MANIFEST_FILE, write_manifest

    if (out / MANIFEST_FILE).is_file():  # a CNN trained into a bundle: its checksums change with it
        write_manifest(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
