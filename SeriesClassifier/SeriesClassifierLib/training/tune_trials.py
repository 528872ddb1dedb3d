"""The CNN objective of ``seriesclassifier tune``: one trial = train on the cache, score every data set.

Data (``TuneData``), each a slice cache (training/cnn_train.Cache) sampled once at K = 8, 128 × 128:

- ``train``: generated training profiles; one profile (cnn_train.choose_val_profile) is held out as the
  validation set whose series cross-entropy is the search's loss and on which the ensemble's threshold is
  chosen;
- ``held``: generated held-out profiles (scored, never chosen on);
- ``real``: the real development set read as the product reads it (``run.pipeline.read_all_series`` and the
  model's slice sampler), pixels only; scored, never trained or chosen on here;
- ``lovo`` (leave one vendor out, ``TuneData.leave_vendor_out``): one vendor's series of the training corpus,
  scored by a model trained on the other vendors' series only. The caches know each series' profile, not its
  vendor: the caller maps profile → vendor (the generator's table, synth/profiles.py, given by the command,
  since training may not import synth). The validation profile is the main rows' (``choose_val_profile`` on
  the whole corpus) unless it is the held-out vendor's; then the same rule over the other vendors' profiles.

A trial's K, input size and CLAHE are derived from those caches (``derive``): K of the 8 slices evenly
spread, images resized by area, CLAHE on the 128 × 128 image. At inference the product applies CLAHE to the
native image before resizing, so a CLAHE trial sees slightly different images in training here than it
would in use; every trial and every data set is derived the same way, so the comparison stays fair.

Per trial: the model (trials/NNN/cnn.safetensors + cnn.json), the series probabilities of each set under
mean log-probability and majority vote in trials/NNN/outputs.npz, and the figures: sequence accuracy,
macro-F1, the rare classes' recall, ECE (models/calibration.py, 15 bins), inference cost. Asked by the
trial's parameters, also: "gru" (a bidirectional GRU fitted on the frozen embeddings), "pooled" ("pooled_head":
a linear head fitted the same way on the mean-pooled frozen embeddings, the GRU's fair control) and "e2e"
("slice_model" gru / conv1d: the series head trained end to end with the CNN, which is then the model's
answer and its loss).
"""

from __future__ import annotations

import csv
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dicom.slices import SliceOptions, clahe
from ..errors import TrainingError
from ..models.aggregate import majority_vote, mean_log_prob
from ..models.calibration import expected_calibration_error, review_threshold
from ..models.cnn import CnnConfig, CnnModel, count_parameters
from .cnn_train import Cache, TrainOptions, build_cache, choose_val_profile, fit_cnn, options_record

log = logging.getLogger("tune")

BASE_K, BASE_SIZE = 8, 128
DEFAULT_WIDTHS = (16, 32, 48, 96, 128)
# fixed per scale (not searched): slices per epoch, patience
SCALE_FIXED = {"reduced": {"samples_per_epoch": 2048, "patience": 3}, "full": {"samples_per_epoch": None,
                                                                            "patience": 5}}
SETS = ("val", "held", "real", "lovo")


# ----------------------------------------------------------------------------- data


def base_options() -> SliceOptions:
    return SliceOptions(k=BASE_K, size=BASE_SIZE)


def load_cache(source: str | Path, cache_dir: Path, name: str) -> Cache:
    """A slice cache file (.npz) as it is, or a labelled corpus folder cached at K = 8, 128² (reused when built)."""
    source = Path(source)
    if source.is_file():
        try:
            return Cache.load(source)
        except (ValueError, KeyError, EOFError, OSError) as exc:  # not an npz, or not one of ours
            raise TrainingError(f"{source}: not a slice cache ({type(exc).__name__}: {exc})") from exc
    if not (source / "labels.csv").is_file():
        raise TrainingError(f"{source}: neither a slice cache (.npz) nor a corpus folder with labels.csv")
    config = CnnConfig.from_vocabulary(slice_options=base_options().to_dict())
    return build_cache(source, config, cache_dir / f"{name}_k{BASE_K}_s{BASE_SIZE}.npz", workers=1)


def real_cache(folder: str | Path, out: Path) -> Cache:
    """The real development set's K slices read the product's way (as benchmarks/cnn_real_probe.py does).

    Series without readable pixels are left out (logged). Only the sequence label is known; the source
    repository is the "profile". Cached in ``out`` (npz).
    """
    if out.is_file():
        return Cache.load(out)
    from ..run.pipeline import read_all_series, resolve_refs

    folder = Path(folder)
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fp:
        labels = {r["series_uid"]: r for r in csv.DictReader(fp)}
    config = CnnConfig.from_vocabulary(slice_options=base_options().to_dict())
    model = CnnModel.new(slice_options=config.slice_options)
    images, index, uids, profiles, seq = [], [], [], [], []
    for s in read_all_series(resolve_refs(folder)):
        if s.series_uid not in labels or s.skipped:
            continue
        try:
            sampled = model.sample(s)
        except Exception as exc:  # noqa: BLE001 - a series without pixels is left out, said once
            log.info("real series %s left out: %s", labels[s.series_uid].get("case", s.series_uid), exc)
            continue
        images.append(np.round(sampled.images * 255).astype(np.uint8))
        index += [len(uids)] * len(sampled.images)
        uids.append(s.series_uid)
        profiles.append(labels[s.series_uid].get("source", ""))
        code = labels[s.series_uid]["sequence"]
        seq.append(config.sequence_classes.index(code) if code in config.sequence_classes else -1)
    n = len(index)
    heads = ["orientation", *config.attributes]
    cache = Cache(np.concatenate(images), np.asarray(index, dtype=np.int32),
                  {"sequence": np.asarray(seq, dtype=np.int16)[index], **{h: np.full(n, -1, np.int16) for h in heads}},
                  np.asarray(uids), np.asarray(profiles),
                  {"sequence": np.asarray(seq, dtype=np.int16), **{h: np.full(len(uids), -1, np.int16) for h in heads}})
    out.parent.mkdir(parents=True, exist_ok=True)
    cache.save(out)
    return cache


def _even(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def derive(cache: Cache, k: int, size: int, use_clahe: bool = False, clip: float = 2.0, tiles: int = 8) -> Cache:
    """The cache as if sampled with K ≤ 8 slices, ``size``² images and CLAHE (see the module's note)."""
    keep = np.zeros(len(cache.images), dtype=bool)
    for m in range(len(cache.uids)):
        rows = np.flatnonzero(cache.series_index == m)
        keep[rows[_even(len(rows), k)]] = True
    images = cache.images[keep]
    if use_clahe:
        images = np.stack([np.round(clahe(im / 255.0, tiles, clip) * 255) for im in images]).astype(np.uint8)
    if size != images.shape[-1]:
        x = torch.from_numpy(images.astype(np.float32))[:, None]
        images = F.interpolate(x, size=(size, size), mode="area")[:, 0].round().clamp(0, 255).numpy().astype(np.uint8)
    return Cache(images, cache.series_index[keep], {h: v[keep] for h, v in cache.labels.items()}, cache.uids,
                 cache.profiles, cache.series_labels, cache.n_labels)


def series_vendors(cache: Cache, vendor_of: dict[str, str]) -> np.ndarray:
    """(M,) the vendor of each series of ``cache``, from its profile; a profile not in ``vendor_of`` is an error."""
    unknown = sorted(set(cache.profiles.tolist()) - set(vendor_of))
    if unknown:
        raise TrainingError(f"profiles {', '.join(unknown)}: vendor unknown (not in the generator's profile table)")
    return np.asarray([vendor_of[p] for p in cache.profiles.tolist()], dtype=object)


def vendor_split(full: Cache, vendor_of: dict[str, str], vendor: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Leave ``vendor`` out: boolean masks over the series (train, val, held-out vendor) and the validation profile.

    The three masks are disjoint and cover every series; neither train nor val holds a series of ``vendor``.
    Validation: the main rows' profile (``choose_val_profile`` on the whole corpus) when it is another vendor's,
    else the same rule over the other vendors' profiles.
    """
    from types import SimpleNamespace

    vendors = series_vendors(full, vendor_of)
    out = vendors == vendor
    if not out.any():
        raise TrainingError(f"vendor {vendor}: no series in the training corpus (vendors: "
                            f"{', '.join(sorted(set(vendors.tolist())))})")
    if out.all():
        raise TrainingError(f"vendor {vendor}: every series of the corpus is its, nothing left to train on")
    val_profile = choose_val_profile(full)
    if vendor_of[val_profile] == vendor:
        val_profile = choose_val_profile(SimpleNamespace(profiles=full.profiles[~out]))
    is_val = full.profiles == val_profile
    if (~out & ~is_val).sum() == 0:
        raise TrainingError(f"vendor {vendor} left out: only the validation profile {val_profile} remains")
    return ~out & ~is_val, is_val & ~out, out, val_profile


def corpus_vendors(full: Cache, vendor_of: dict[str, str]) -> list[str]:
    """The vendors of a corpus, sorted."""
    return sorted(set(series_vendors(full, vendor_of).tolist()))


@dataclass
class TuneData:
    """The sets (see the module's note), the training cache without its validation profile (and, leaving a
    vendor out, without that vendor's series, which are ``lovo``)."""

    train: Cache
    val: Cache
    held: Cache | None
    real: Cache | None
    val_profile: str
    lovo: Cache | None = None
    held_out_vendor: str | None = None
    _derived: OrderedDict = field(default_factory=OrderedDict)

    @classmethod
    def load(cls, train: str | Path, held: str | Path, real: str | Path | None, cache_dir: Path) -> TuneData:
        full = load_cache(train, cache_dir, "train")
        val_profile = choose_val_profile(full)
        is_val = full.profiles == val_profile
        real_c = real_cache(real, cache_dir / f"real_k{BASE_K}_s{BASE_SIZE}.npz") if real else None
        return cls(full.subset_series(~is_val), full.subset_series(is_val), load_cache(held, cache_dir, "held"),
                   real_c, val_profile)

    @classmethod
    def leave_vendor_out(cls, full: Cache, vendor_of: dict[str, str], vendor: str, held: Cache | None = None,
                         real: Cache | None = None) -> TuneData:
        """Train on the other vendors' series, score ``vendor``'s as ``lovo`` (``vendor_split``)."""
        train, val, out, val_profile = vendor_split(full, vendor_of, vendor)
        return cls(full.subset_series(train), full.subset_series(val), held, real, val_profile,
                   lovo=full.subset_series(out), held_out_vendor=vendor)

    def describe(self) -> dict:
        """The split's sizes (series), for the log."""
        sets = {"train": self.train, "val": self.val, "held": self.held, "real": self.real, "lovo": self.lovo}
        out: dict = {"val_profile": self.val_profile, **{f"n_{n}": int(len(c.uids)) for n, c in sets.items()
                                                          if c is not None}}
        if self.held_out_vendor is not None:
            out["held_out_vendor"] = self.held_out_vendor
            out["train_profiles"] = sorted(set(self.train.profiles.tolist()))
            out["lovo_profiles"] = sorted(set(self.lovo.profiles.tolist()))
        return out

    def sets(self, k: int, size: int, use_clahe: bool, clip: float, tiles: int) -> dict[str, Cache]:
        """The derived train/val/held/real caches of one preprocessing (the last two kept in memory)."""
        key = (k, size, use_clahe, round(clip, 3) if use_clahe else 0, tiles if use_clahe else 0)
        if key not in self._derived:
            base = {"train": self.train, "val": self.val, "held": self.held, "real": self.real, "lovo": self.lovo}
            self._derived[key] = {n: derive(c, k, size, use_clahe, clip, tiles) for n, c in base.items()
                                  if c is not None}
            while len(self._derived) > 2:
                self._derived.popitem(last=False)
        return self._derived[key]


# ----------------------------------------------------------------------------- one trial


def trial_options(params: dict, scale: str, threads: int = 1, seed: int = 0) -> TrainOptions:
    """TrainOptions from a point of the search space (the loss parameters of other losses are ignored)."""
    widths = [max(4, int(round(w * params["width"] / 4)) * 4) for w in DEFAULT_WIDTHS]
    shallow, deep = int(params["blocks_shallow"]), int(params["blocks_deep"])
    loss = params["loss"]
    return TrainOptions(
        loss=loss, focal_gamma=float(params["focal_gamma"]) if loss == "focal" else 0.0,
        asl_gamma_pos=float(params["asl_gamma_pos"]), asl_gamma_neg=float(params["asl_gamma_neg"]),
        asl_clip=float(params["asl_clip"]), task_weights=params["task_weights"],
        epochs=int(params["epochs"]), batch_size=int(params["batch_size"]), lr=float(params["lr"]),
        seed=int(params.get("seed", seed)), threads=threads, k=int(params["k"]), size=int(params["size"]),
        widths=widths, blocks=[shallow, shallow, deep, deep], clahe=bool(params["clahe"]),
        clahe_clip=float(params["clahe_clip"]), clahe_tiles=int(params["clahe_tiles"]),
        augment_strength=float(params["augment_strength"]), fit_gru=bool(params.get("gru", False)),
        slice_model=str(params.get("slice_model", "none")),
        series_batches=bool(params.get("series_batches", False)),
        max_minutes=1e9, **SCALE_FIXED[scale],
    )


def series_probabilities(model: CnnModel, cache: Cache) -> dict[str, np.ndarray]:
    """(series, classes) sequence probabilities by mean log-probability and by majority vote; the embeddings."""
    out = model.infer(cache.images.astype(np.float32) / 255.0, batch_size=128)
    mean, vote, emb = [], [], []
    for m in range(len(cache.uids)):
        rows = cache.series_index == m
        mean.append(mean_log_prob(out["sequence"][rows]))
        vote.append(majority_vote(out["sequence"][rows]))
        emb.append(out["embedding"][rows])
    return {"mean": np.stack(mean), "vote": np.stack(vote), "_embeddings": emb}


def rare_classes(train: Cache, n_classes: int, share: float = 1 / 3) -> list[int]:
    """The classes in the rarest third by training series (classes absent from training count as rarest)."""
    counts = np.bincount(train.series_labels["sequence"][train.series_labels["sequence"] >= 0].astype(int),
                         minlength=n_classes)
    return [int(c) for c in np.argsort(counts, kind="stable")[: max(1, int(n_classes * share))]]


def scores(p: np.ndarray, y: np.ndarray, rare: list[int]) -> dict:
    """Sequence accuracy, macro-F1 over the classes present, mean recall of the rare classes present, ECE."""
    from sklearn.metrics import f1_score

    ok = y >= 0
    p, y = p[ok], y[ok].astype(int)
    pred = p.argmax(axis=1)
    present = sorted(set(y.tolist()))
    rare_present = [c for c in rare if c in present]
    return {
        "n": int(len(y)), "right": int((pred == y).sum()), "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "rare_recall": float(np.mean([(pred[y == c] == c).mean() for c in rare_present])) if rare_present else None,
        "rare_n": int(np.isin(y, rare_present).sum()), "ece": expected_calibration_error(p, y),
        "nll": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-4, 1.0)))),
    }


def inference_cost(model: CnnModel, k: int, size: int, repeats: int = 5) -> dict:
    """Per series of K slices on one thread: multiply-adds, parameters, and the median milliseconds.

    The network and the model's own aggregation (a slice head's when it has one; the mean log-probability
    has no multiply-adds worth counting); parameters of the network and of a learned aggregator.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = np.random.default_rng(0).random((k, size, size)).astype(np.float32)
    with FlopCounterMode(display=False) as counter:
        model.output_from_slices(model.infer(x))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.output_from_slices(model.infer(x))
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(threads)
    module = getattr(model.aggregator, "module", None)
    parameters = count_parameters(model.net) + (count_parameters(module) if module is not None else 0)
    return {"mmac_per_series": round(counter.get_total_flops() / 2e6, 1), "parameters": parameters,
            "ms_per_series": round(1000 * float(np.median(times)), 1)}


class CnnObjective:
    """``(params, trial) -> result``: train one CNN into ``out/trials/NNN`` and score it on every set."""

    def __init__(self, data: TuneData, out: Path, scale: str, threads: int = 1):
        self.data, self.out, self.scale, self.threads = data, Path(out), scale, threads

    def __call__(self, params: dict, trial: int) -> dict:
        opts = trial_options(params, self.scale, self.threads)
        folder = self.out / "trials" / f"{trial:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for stale in ("checkpoint.pt", "cnn.safetensors"):  # a trial killed mid-way starts again
            (folder / stale).unlink(missing_ok=True)
        torch.set_num_threads(self.threads)
        torch.manual_seed(opts.seed)
        sets = self.data.sets(opts.k, opts.size, opts.clahe, opts.clahe_clip, opts.clahe_tiles)
        config = opts.cnn_config()
        t0 = time.time()
        model, history, _ = fit_cnn(sets["train"], sets["val"], config, opts, folder)
        train_seconds = time.time() - t0
        return self._score(model, sets, opts, folder, history, train_seconds, bool(params.get("pooled_head")))

    def _score(self, model: CnnModel, sets: dict[str, Cache], opts: TrainOptions, folder: Path,
               history: list, train_seconds: float, pooled_head: bool = False) -> dict:
        n_classes = len(model.config.sequence_classes)
        rare = rare_classes(sets["train"], n_classes)
        probs = {name: series_probabilities(model, sets[name]) for name in SETS if name in sets}
        learned = {}
        if opts.fit_gru:
            learned["gru"] = _fit_gru(model, sets["train"], opts.seed)
        if pooled_head:
            learned["pooled"] = _fit_gru(model, sets["train"], opts.seed, neck="none")
        if opts.slice_model != "none":
            learned["e2e"] = model.aggregator
        for agg, aggregator in learned.items():
            for p in probs.values():
                p[agg] = np.stack([_gru_series(aggregator, e) for e in p["_embeddings"]])
        answer = "e2e" if opts.slice_model != "none" else "mean"
        arrays = {f"{name}__{agg}": p for name, ps in probs.items() for agg, p in ps.items()
                  if not agg.startswith("_")}
        arrays.update({f"{name}__y": sets[name].series_labels["sequence"] for name in probs})
        np.savez(folder / "outputs.npz", **arrays)
        figures = {f"{name}__{agg}": scores(p, sets[name].series_labels["sequence"], rare)
                   for name, ps in probs.items() for agg, p in ps.items() if not agg.startswith("_")}
        model.config.training = {"tune": options_record(opts), "history": history,
                                 "val_profile": self.data.val_profile}
        if self.data.held_out_vendor is not None:
            model.config.training["held_out_vendor"] = self.data.held_out_vendor
        model.save(folder)
        result = {"loss": figures[f"val__{answer}"]["nll"], "figures": figures, "rare_classes": rare,
                  "cost": inference_cost(model, opts.k, opts.size), "train_seconds": round(train_seconds, 1),
                  "epochs_run": len(history), "folder": str(folder)}
        if self.data.held_out_vendor is not None:
            result["split"] = self.data.describe()
        return result


def _fit_gru(model: CnnModel, train: Cache, seed: int, neck: str | None = None):
    """The GRU on the model's frozen training embeddings; with ``neck`` a SliceHead fitted the same way."""
    from ..models.aggregate import fit_gru, fit_slice_head

    emb = model.infer(train.images.astype(np.float32) / 255.0, batch_size=128)["embedding"]
    y = train.series_labels["sequence"].astype(int)
    seqs = [emb[train.series_index == m] for m in range(len(train.uids))]
    ok = [i for i in range(len(seqs)) if y[i] >= 0 and len(seqs[i])]
    counts = np.bincount(y[ok], minlength=len(model.config.sequence_classes)).astype(float)
    cw = 1.0 / np.sqrt(np.maximum(counts, 1))
    if neck is not None:
        return fit_slice_head([seqs[i] for i in ok], y[ok], len(model.config.sequence_classes), neck, seed=seed,
                              hidden=model.config.gru_hidden, class_weights=cw / cw.mean())
    return fit_gru([seqs[i] for i in ok], y[ok], len(model.config.sequence_classes), seed=seed,
                   hidden=model.config.gru_hidden, class_weights=cw / cw.mean())


def _gru_series(gru, embeddings: np.ndarray) -> np.ndarray:
    return gru.aggregate({"sequence": np.ones((len(embeddings), 1))}, embeddings)["sequence"]


# ----------------------------------------------------------------------------- the top-k ensemble


def ensemble_figures(done: list[dict], k: int, target_accuracy: float = 0.95) -> dict:
    """The top-k trials' series probabilities averaged; the review threshold chosen on the validation set.

    Figures per set: the ensemble's scores, and of the series at or above the threshold their share and
    accuracy.
    """
    from .tune import average_probabilities, top_k

    members = top_k(done, k)
    outputs = [np.load(Path(t["result"]["folder"]) / "outputs.npz", allow_pickle=False) for t in members]
    rare = members[0]["result"]["rare_classes"]
    result: dict = {"members": [t["trial"] for t in members], "losses": [t["loss"] for t in members]}
    threshold = None
    for name in SETS:
        if f"{name}__mean" not in outputs[0].files:
            continue
        p = average_probabilities([o[f"{name}__mean"] for o in outputs])
        y = outputs[0][f"{name}__y"].astype(int)
        if threshold is None:  # the validation set comes first
            ok = y >= 0
            threshold = review_threshold(p[ok].max(axis=1), p[ok].argmax(axis=1) == y[ok], target_accuracy)
        fig = scores(p, y, rare)
        ok = y >= 0
        accepted = p[ok].max(axis=1) >= threshold
        fig["accepted_share"] = float(accepted.mean())
        fig["accepted_accuracy"] = float((p[ok].argmax(axis=1) == y[ok])[accepted].mean()) if accepted.any() else None
        result[name] = fig
    result["threshold"] = threshold
    return result
