"""Slice → series: turn the per-slice answers of the CNN into one answer per series.

Interchangeable aggregators with the same contract,
``aggregate(slice_probs, embeddings) -> {head: series probabilities}``:

- ``MeanLogProb`` (baseline): the normalised geometric mean of the slice
  probabilities, i.e. the mean of the log-probabilities. One confident but
  wrong slice cannot outvote the others the way a max would, and unlike a vote
  it keeps a full distribution.
- ``MajorityVote``: the commonest slice answer, its probability the share of slices that gave it (the
  ResNet paper's series rule), for comparison.
- ``LearnedAggregator``: a small bidirectional GRU over the slice embeddings
  (ordered along the normal), mean-pooled, with its own sequence head. It can
  learn that a series is e.g. a TOF when bright vessels appear on some slices
  only. Fitted on frozen CNN embeddings; kept only when it beats the baseline on
  the validation profile (see cnn_train.py, which records the comparison).
- ``SliceHead``: the series representation is the mean-pooled slice embedding plus a
  residual neck over the slices (a bidirectional GRU or a 1-D convolution, projected
  back and pooled; ``neck="none"`` is the mean alone), then a linear classifier. Trained
  end to end with the CNN (``cnn_train --slice-model gru|conv1d``) or fitted on frozen
  embeddings (``fit_slice_head``; with ``neck="none"`` the fair control of the GRU).

Orientation is special: a series whose slices disagree about the plane is MIXED
(``orientation_from_slices``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

MIXED = "MIXED"  # the orientation code for series whose images lie in several planes (vocabulary contract)


def mean_log_prob(probs: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(n_slices, C) → (C,): softmax of the mean log-probability."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0)).mean(axis=0)
    logp -= logp.max()
    p = np.exp(logp)
    return (p / p.sum()).astype(np.float32)


def orientation_from_slices(
    probs: np.ndarray, classes: list[str], all_codes: list[str], min_share: float = 0.25, max_top: float = 0.75
) -> dict[str, float]:
    """Per-slice plane probabilities (n, len(classes)) → a distribution over every orientation code.

    MIXED when at least two of the planes are each the argmax of a real share of
    the slices (>= ``min_share`` and >= 2 slices) and the commonest plane has at
    most ``max_top`` of them. Its probability is 0.5 + half the disagreement, so
    MIXED then wins; otherwise MIXED gets only the disagreement mass and the planes
    share the rest in proportion to their mean-log-prob.
    """
    probs = np.asarray(probs, dtype=np.float32)
    n = len(probs)
    top = np.bincount(probs.argmax(axis=1), minlength=len(classes)) / max(n, 1)
    counts = top * n
    strong = [(share >= min_share and count >= 2) for share, count in zip(top, counts)]
    disagreement = float(1.0 - top.max())
    mixed = sum(strong) >= 2 and top.max() <= max_top
    p_mixed = 0.5 + 0.5 * disagreement if mixed else min(disagreement, 0.49) * 0.5
    planes = mean_log_prob(probs) * (1.0 - p_mixed)
    out = {code: 0.0 for code in all_codes}
    for code, p in zip(classes, planes):
        out[code] = float(p)
    if MIXED in out:
        out[MIXED] = float(p_mixed)
    else:  # a vocabulary without MIXED: renormalise over the planes
        total = sum(out.values()) or 1.0
        out = {k: v / total for k, v in out.items()}
    return out


class MeanLogProb:
    name = "mean"

    def aggregate(self, slice_probs: dict[str, np.ndarray], embeddings: np.ndarray | None = None) -> dict:
        return {head: mean_log_prob(p) for head, p in slice_probs.items()}


def majority_vote(probs: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(n_slices, C) → (C,): each slice's top class is a vote; the series distribution is the share of votes.

    Ties go to the class with the higher mean log-probability (a 0.1 % share of the distribution), so the
    answer is the commonest slice answer and its probability the share of slices that gave it.
    """
    probs = np.asarray(probs, dtype=np.float64)
    votes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / max(len(probs), 1)
    p = 0.999 * votes + 0.001 * mean_log_prob(probs, eps)
    return (p / p.sum()).astype(np.float32)


class MajorityVote:
    """The sequence by majority vote of the slices (the other heads keep the mean log-probability)."""

    name = "vote"

    def aggregate(self, slice_probs: dict[str, np.ndarray], embeddings: np.ndarray | None = None) -> dict:
        out = MeanLogProb().aggregate(slice_probs)
        out["sequence"] = majority_vote(slice_probs["sequence"])
        return out


class SliceGRU(nn.Module):
    """Bidirectional GRU over slice embeddings → sequence logits."""

    def __init__(self, embed_dim: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * hidden, n_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h, _ = self.gru(x)
        if mask is None:
            pooled = h.mean(dim=1)
        else:
            m = mask.unsqueeze(-1).float()
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


@dataclass
class LearnedAggregator:
    """A learned module (SliceGRU or SliceHead) replaces the sequence aggregation; the other heads keep the
    mean log-prob."""

    module: nn.Module
    name: str = "gru"

    def aggregate(self, slice_probs: dict[str, np.ndarray], embeddings: np.ndarray | None = None) -> dict:
        out = MeanLogProb().aggregate(slice_probs)
        if embeddings is not None and len(embeddings):
            self.module.eval()
            with torch.no_grad():
                logits = self.module(torch.as_tensor(embeddings, dtype=torch.float32)[None])
            out["sequence"] = torch.softmax(logits[0], dim=0).numpy().astype(np.float32)
        return out


def _pad(batch: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(b) for b in batch)
    x = torch.zeros(len(batch), n, batch[0].shape[1])
    mask = torch.zeros(len(batch), n, dtype=torch.bool)
    for i, b in enumerate(batch):
        x[i, : len(b)] = torch.as_tensor(b)
        mask[i, : len(b)] = True
    return x, mask


class SliceHead(nn.Module):
    """Slice embeddings (B, L, D) → sequence logits, through a residual neck.

    r = mean(e) + mean(proj(neck(e))): the neck is a bidirectional GRU (``hidden`` units each way) or a
    1-D convolution over the slices (kernel 3, ``2 * hidden`` channels, ReLU), projected back to D; the
    projection starts at zero, so an untrained neck leaves the mean-pooled embedding (the head then starts
    as a linear classifier on the mean). ``neck="none"``: r = mean(e). Then dropout and a linear classifier.
    ``mask`` (B, L) marks the real slices of padded series; without it every position counts.
    """

    NECKS = ("gru", "conv1d", "none")

    def __init__(self, embed_dim: int, n_classes: int, neck: str = "gru", hidden: int = 64, dropout: float = 0.2):
        super().__init__()
        if neck not in self.NECKS:
            raise ValueError(f"slice head neck {neck!r}: one of {', '.join(self.NECKS)}")
        self.neck = neck
        if neck == "gru":
            self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        elif neck == "conv1d":
            self.conv = nn.Conv1d(embed_dim, 2 * hidden, kernel_size=3, padding=1)
        if neck != "none":
            self.proj = nn.Linear(2 * hidden, embed_dim)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, n_classes)

    def _neck(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if self.neck == "conv1d":  # padded positions are zeros: the convolution's own zero padding
            return torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        if lengths is None or bool((lengths == x.shape[1]).all()):
            return self.gru(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        return h

    def represent(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) → (B, D): the series representation before the classifier."""
        m = torch.ones(x.shape[:2], dtype=x.dtype) if mask is None else mask.to(x.dtype)
        m = m.unsqueeze(-1)
        x = x * m
        count = m.sum(dim=1).clamp(min=1.0)
        r = x.sum(dim=1) / count
        if self.neck != "none":
            lengths = None if mask is None else mask.sum(dim=1)
            r = r + (self.proj(self._neck(x, lengths)) * m).sum(dim=1) / count
        return r

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.drop(self.represent(x, mask)))


SLICE_MODELS = ("none", "gru", "conv1d")  # cnn_train --slice-model; "none" is the mean log-probability


def slice_head_for(aggregator: str, embed_dim: int, n_classes: int, hidden: int) -> SliceHead | None:
    """The SliceHead a CnnConfig.aggregator names ("slice_gru", "slice_conv1d"), else None."""
    if not aggregator.startswith("slice_"):
        return None
    return SliceHead(embed_dim, n_classes, aggregator[len("slice_"):], hidden)


def pad_embeddings(embeddings: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The slices of consecutive series (sum(lengths), D) → padded (B, max L, D) and the mask (B, max L).

    Differentiable (the end-to-end training's gradient flows through it into the backbone).
    """
    parts = list(torch.split(embeddings, lengths))
    x = nn.utils.rnn.pad_sequence(parts, batch_first=True)
    mask = torch.arange(x.shape[1])[None] < torch.as_tensor(lengths)[:, None]
    return x, mask


def _fit_module(
    make: Callable[[], nn.Module],
    embeddings: list[np.ndarray],
    labels: np.ndarray,
    epochs: int,
    seed: int,
    class_weights: np.ndarray | None,
) -> LearnedAggregator:
    """The frozen-embedding fit shared by the GRU and the slice heads: AdamW, batches of 64 series, 20 % of
    the slices dropped at random, class-weighted cross-entropy."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = make()
    opt = torch.optim.AdamW(module.parameters(), lr=2e-3, weight_decay=1e-3)
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    for _ in range(epochs):
        module.train()
        order = rng.permutation(len(embeddings))
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            # random slice dropout so the GRU does not rely on exactly K slices
            batch = []
            for i in idx:
                e = embeddings[i]
                keep = rng.random(len(e)) > 0.2
                batch.append(e[keep] if keep.any() else e)
            x, mask = _pad(batch)
            loss = loss_fn(module(x, mask), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    module.eval()
    return LearnedAggregator(module)


def fit_gru(
    embeddings: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    *,
    epochs: int = 30,
    seed: int = 0,
    hidden: int = 64,
    class_weights: np.ndarray | None = None,
) -> LearnedAggregator:
    """Fit the GRU on per-series embedding sequences (each (n_slices, D)) and their sequence labels."""
    return _fit_module(lambda: SliceGRU(embeddings[0].shape[1], n_classes, hidden), embeddings, labels, epochs,
                       seed, class_weights)


def fit_slice_head(
    embeddings: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    neck: str = "none",
    *,
    epochs: int = 30,
    seed: int = 0,
    hidden: int = 64,
    class_weights: np.ndarray | None = None,
) -> LearnedAggregator:
    """A SliceHead fitted on frozen embeddings exactly as ``fit_gru`` fits the GRU (same epochs, optimiser,
    slice dropout, class weights). ``neck="none"``: a linear head on the mean-pooled embeddings."""
    return _fit_module(lambda: SliceHead(embeddings[0].shape[1], n_classes, neck, hidden), embeddings, labels,
                       epochs, seed, class_weights)
