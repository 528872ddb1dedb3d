"""The multi-task slice CNN and ``CnnModel``, the object the pipeline calls.

``SeriesNet``: a compact ResNet for 1×128×128 slices (about 0.5 M parameters,
~50 M multiply-adds per slice) with one shared backbone and heads for the
per-slice plane, the auxiliary attributes (contrast, 2D/3D, fat suppression,
derived) and the sequence. The auxiliary heads' softmax outputs are
concatenated with the embedding as the sequence head's input, so the main task
can lean on them. Class lists come from the vocabulary (saved in cnn.json, so
a trained model keeps the classes it was trained with).

The plane head is trained per slice on the planes only (AXIAL, SAGITTAL,
CORONAL, OBLIQUE): a single image cannot be MIXED. MIXED is decided at series
level from disagreeing slices (aggregate.orientation_from_slices). When the
headers have geometry, the ensemble should prefer the geometry rule for
orientation; the CNN's orientation is for header-less series and as a check.

``CnnModel.predict(series)`` samples K slices (slices.py), runs the network in
one batch, aggregates (aggregate.py) and returns a ``ModelOutput`` with the
per-slice sequence profile. Weights are safetensors, the rest is JSON; nothing
is unpickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..dicom.dynamics import stack_facts
from ..dicom.slices import SampledSlices, SliceOptions, SliceReadError, Stack, sample_series
from ..errors import BundleError
from ..prediction import ModelOutput, TaskPrediction
from ..vocabulary import Vocabulary, load_vocabulary
from .aggregate import (
    MIXED,
    LearnedAggregator,
    MajorityVote,
    MeanLogProb,
    SliceGRU,
    orientation_from_slices,
    slice_head_for,
)
from .novelty import EmbeddingNovelty
from .plausibility import restrict_by_facts

WEIGHTS_NAME = "cnn.safetensors"
NOVELTY_TENSOR = "novelty.reference"
CONFIG_NAME = "cnn.json"


@dataclass
class CnnConfig:
    sequence_classes: list[str]
    orientation_classes: list[str]  # per-slice planes (no MIXED)
    orientation_codes: list[str]  # every series-level orientation code (with MIXED)
    attributes: dict[str, list[str]]
    slice_options: dict = field(default_factory=lambda: SliceOptions().to_dict())
    widths: list[int] = field(default_factory=lambda: [16, 32, 48, 96, 128])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # residual blocks of layer1..layer4
    seq_hidden: int = 128
    dropout: float = 0.2
    aggregator: str = "mean"  # "mean", "vote", "gru", or "slice_gru" / "slice_conv1d" (SliceHead, end to end)
    gru_hidden: int = 64
    version: str = "untrained"
    vocabulary_version: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    novelty: dict = field(default_factory=dict)  # EmbeddingNovelty's threshold, k, percentile (reference in weights)

    @classmethod
    def from_vocabulary(cls, vocabulary: Vocabulary | None = None, **kwargs) -> CnnConfig:
        v = vocabulary or load_vocabulary()
        return cls(
            sequence_classes=v.sequence_codes,
            orientation_classes=[c for c in v.orientation_codes if c != MIXED],
            orientation_codes=v.orientation_codes,
            attributes={a.code: list(a.values) for a in v.attributes},
            vocabulary_version=v.version,
            **kwargs,
        )

    @property
    def options(self) -> SliceOptions:
        return SliceOptions.from_dict(self.slice_options)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> CnnConfig:
        d = json.loads(text)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.short(x))


def _stage(cin: int, cout: int, stride: int, blocks: int) -> nn.Module:
    """One residual block (the bundled network's layout) or a sequence of ``blocks`` of them."""
    if blocks == 1:
        return _Block(cin, cout, stride)
    return nn.Sequential(_Block(cin, cout, stride), *(_Block(cout, cout, 1) for _ in range(blocks - 1)))


class SeriesNet(nn.Module):
    """Shared backbone → plane/attribute heads → sequence head fed with their softmax."""

    def __init__(self, config: CnnConfig):
        super().__init__()
        w, n = config.widths, config.blocks
        self.stem = _conv_bn(1, w[0], 2)  # 64²
        self.layer1 = _stage(w[0], w[1], 2, n[0])  # 32²
        self.layer2 = _stage(w[1], w[2], 2, n[1])  # 16²
        self.layer3 = _stage(w[2], w[3], 2, n[2])  # 8²
        self.layer4 = _stage(w[3], w[4], 1, n[3])  # 8²: the Grad-CAM layer (8×8 keeps maps usable)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(config.dropout)
        self.aux_names = ["orientation", *config.attributes]
        sizes = [len(config.orientation_classes), *(len(v) for v in config.attributes.values())]
        self.aux_heads = nn.ModuleDict({n: nn.Linear(w[4], s) for n, s in zip(self.aux_names, sizes)})
        self.sequence_head = nn.Sequential(
            nn.Linear(w[4] + sum(sizes), config.seq_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.seq_hidden, len(config.sequence_classes)),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def heads(self, fmap: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.pool(fmap).flatten(1)
        h = self.drop(emb)
        out = {n: head(h) for n, head in self.aux_heads.items()}
        aux = torch.cat([torch.softmax(out[n], dim=1) for n in self.aux_names], dim=1)
        out["sequence"] = self.sequence_head(torch.cat([h, aux], dim=1))
        out["embedding"] = emb
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.features(x))


_MAX_WIDTH = 4096  # channels or hidden units of any layer (the bundled network has at most 176)
_MAX_CLASSES = 10_000
_MAX_BLOCKS = 16


def _check_sizes(config: CnnConfig, path: Path) -> None:
    """Refuse sizes that would allocate a huge network before any tensor is compared with them."""
    sizes = [*config.widths, config.seq_hidden, config.gru_hidden]
    if not all(isinstance(v, int) and 0 < v <= _MAX_WIDTH for v in sizes) or len(config.widths) != 5:
        raise BundleError(f"{path}: layer sizes {sizes} are not 5 widths and hidden sizes in 1..{_MAX_WIDTH}")
    if len(config.blocks) != 4 or not all(isinstance(v, int) and 0 < v <= _MAX_BLOCKS for v in config.blocks):
        raise BundleError(f"{path}: blocks {config.blocks} are not 4 counts in 1..{_MAX_BLOCKS}")
    heads = [config.sequence_classes, config.orientation_classes, *config.attributes.values()]
    if not all(0 < len(h) <= _MAX_CLASSES for h in heads):
        raise BundleError(f"{path}: a head with no classes or more than {_MAX_CLASSES}")


def _checked_state(module: nn.Module, tensors: dict, prefix: str, path: Path) -> dict:
    """The module's state from the file: every tensor there, of the module's shape and dtype, and finite.

    ``load_state_dict`` would cast int8 weights silently and accept NaN, which gives every series one answer.
    """
    state = {}
    for name, expected in module.state_dict().items():
        t = tensors.get(prefix + name)
        if t is None:
            raise BundleError(f"{path}: tensor {prefix + name} missing")
        if t.dtype != expected.dtype or t.shape != expected.shape:
            raise BundleError(f"{path}: tensor {prefix + name} is {t.dtype} {tuple(t.shape)}, "
                              f"expected {expected.dtype} {tuple(expected.shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BundleError(f"{path}: tensor {prefix + name} holds NaN or infinite values")
        state[name] = t
    extra = sorted(k for k in tensors if k.startswith(prefix) and k[len(prefix):] not in state)
    if extra:
        raise BundleError(f"{path}: tensors this network does not have: {', '.join(extra[:5])}")
    return state


def _checked_novelty(tensors: dict, config: CnnConfig, path: Path) -> EmbeddingNovelty | None:
    """The embedding novelty stored with the weights, if any: finite, one row per reference series."""
    reference = tensors.get(NOVELTY_TENSOR)
    if reference is None or not config.novelty:
        return None
    if reference.dim() != 2 or reference.shape[1] != config.widths[-1] or reference.shape[0] == 0:
        raise BundleError(f"{path}: {NOVELTY_TENSOR} is {tuple(reference.shape)}, expected (n, {config.widths[-1]})")
    try:
        threshold, k = float(config.novelty["threshold"]), int(config.novelty["k"])
        percentile = float(config.novelty["percentile"])
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{path.with_suffix('.json')}: novelty needs threshold, k and percentile ({e})") from e
    if not (bool(torch.isfinite(reference).all()) and math.isfinite(threshold) and k >= 1):
        raise BundleError(f"{path}: the embedding novelty holds NaN or infinite values, or k < 1")
    return EmbeddingNovelty(reference=reference.float().numpy(), threshold=threshold, k=k, percentile=percentile)


def head_classes(config: CnnConfig) -> dict[str, list[str]]:
    return {"sequence": config.sequence_classes, "orientation": config.orientation_classes, **config.attributes}


class CnnModel:
    """Load/save, per-slice inference and series prediction."""

    name = "cnn"

    def __init__(self, net: SeriesNet, config: CnnConfig, aggregator: LearnedAggregator | None = None,
                 novelty: EmbeddingNovelty | None = None):
        self.net = net.eval()
        self.config = config
        learned = config.aggregator == "gru" or config.aggregator.startswith("slice_")
        self.aggregator = aggregator if learned and aggregator is not None else \
            (MajorityVote() if config.aggregator == "vote" else MeanLogProb())
        self._gru = aggregator
        self.novelty = novelty
        self._last_sampled: tuple[tuple[str, ...], SampledSlices] | None = None
        self._last_features: tuple[np.ndarray, torch.Tensor] | None = None

    @classmethod
    def new(cls, vocabulary: Vocabulary | None = None, **config_kwargs) -> CnnModel:
        config = CnnConfig.from_vocabulary(vocabulary, **config_kwargs)
        return cls(SeriesNet(config), config)

    # ------------------------------------------------------------------ storage

    @classmethod
    def load(cls, path: str | Path) -> CnnModel:
        """From a folder holding cnn.safetensors + cnn.json, or the .safetensors path (JSON beside it)."""
        from safetensors.torch import load_file

        path = Path(path)
        weights = path / WEIGHTS_NAME if path.is_dir() else path
        config_path = weights.with_suffix(".json")
        if not weights.is_file() or not config_path.is_file():
            raise FileNotFoundError(f"CNN model needs {weights} and {config_path}")
        config = CnnConfig.from_json(config_path.read_text(encoding="utf-8"))
        _check_sizes(config, config_path)  # before the network is allocated from them
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 - a damaged or foreign file
            raise BundleError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {e})") from e
        net = SeriesNet(config)
        unknown = sorted(k for k in tensors if not k.startswith(("net.", "agg.")) and k != NOVELTY_TENSOR)
        if unknown:
            raise BundleError(f"{weights}: tensors this network does not have: {', '.join(unknown[:5])}")
        net.load_state_dict(_checked_state(net, tensors, "net.", weights))
        gru = None
        if any(k.startswith("agg.") for k in tensors):  # the slice head of --slice-model, or the frozen GRU
            try:
                module = slice_head_for(config.aggregator, config.widths[-1], len(config.sequence_classes),
                                        config.gru_hidden) or \
                    SliceGRU(config.widths[-1], len(config.sequence_classes), config.gru_hidden)
            except ValueError as e:
                raise BundleError(f"{config_path}: {e}") from e
            module.load_state_dict(_checked_state(module, tensors, "agg.", weights))
            gru = LearnedAggregator(module.eval())
        return cls(net, config, gru, _checked_novelty(tensors, config, weights))

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()}
        if self._gru is not None:
            tensors.update({f"agg.{k}": v.detach().contiguous() for k, v in self._gru.module.state_dict().items()})
        if self.novelty is not None:
            tensors[NOVELTY_TENSOR] = torch.from_numpy(np.ascontiguousarray(self.novelty.reference,
                                                                                 dtype=np.float32))
            self.config.novelty = {**self.config.novelty, "threshold": self.novelty.threshold,
                                   "k": self.novelty.k, "percentile": self.novelty.percentile}
        save_file(tensors, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(self.config.to_json(), encoding="utf-8")
        return folder / WEIGHTS_NAME

    def set_aggregator(self, aggregator: LearnedAggregator | None) -> None:
        self._gru = aggregator
        self.config.aggregator = "gru" if aggregator is not None else "mean"
        self.aggregator = aggregator if aggregator is not None else MeanLogProb()

    # ------------------------------------------------------------------ inference

    def infer(self, images: np.ndarray, batch_size: int = 64, keep_features: bool = False) -> dict[str, np.ndarray]:
        """(n, S, S) float 0..1 → {head: (n, C) probabilities, "embedding": (n, D)}.

        ``keep_features``: keep the last block's maps of these images for one Grad-CAM (``features_for``).
        """
        outs: dict[str, list[np.ndarray]] = {}
        self.net.eval()
        self._last_features = None
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.as_tensor(np.asarray(images[start : start + batch_size], dtype=np.float32))[:, None]
                fmap = self.net.features(x)  # what self.net(x) computes, in its two steps
                res = self.net.heads(fmap)
                if keep_features and len(images) <= batch_size:
                    self._last_features = (images, fmap)
                for k, v in res.items():
                    v = v if k == "embedding" else torch.softmax(v, dim=1)
                    outs.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    def output_from_slices(self, slice_out: dict[str, np.ndarray], reason: str = "") -> ModelOutput:
        """Aggregate per-slice outputs into a ModelOutput (what the ensemble reads)."""
        classes = head_classes(self.config)
        probs = {k: v for k, v in slice_out.items() if k != "embedding"}
        series = self.aggregator.aggregate(probs, slice_out.get("embedding"))
        seq = TaskPrediction.from_probabilities(dict(zip(classes["sequence"], series["sequence"].tolist())))
        ori = TaskPrediction.from_probabilities(
            orientation_from_slices(probs["orientation"], classes["orientation"], self.config.orientation_codes)
        )
        attrs = {
            name: TaskPrediction.from_probabilities(dict(zip(values, series[name].tolist())))
            for name, values in self.config.attributes.items()
        }
        profile = [dict(zip(classes["sequence"], (float(p) for p in row))) for row in probs["sequence"]]
        unfamiliar = None
        if self.novelty is not None and slice_out.get("embedding") is not None:
            unfamiliar = self.novelty.note(np.asarray(slice_out["embedding"]).mean(axis=0))
        return ModelOutput(model=self.name, sequence=seq, orientation=ori, attributes=attrs, reason=reason,
                           slice_profile=profile, unfamiliar=unfamiliar)

    def predict_sampled(self, sampled: SampledSlices) -> ModelOutput:
        reason = f"{len(sampled.slice_indices)} slice(s) of {len(sampled.stack)}"
        if sampled.warnings:
            reason += "; " + "; ".join(sampled.warnings[:3])
        return with_pixel_facts(self.output_from_slices(self.infer(sampled.images, keep_features=True), reason),
                                sampled.stack)

    def features_for(self, images: np.ndarray) -> torch.Tensor | None:
        """The last block's maps ``infer`` kept for exactly these images (the same array), handed over once:
        Grad-CAM right after a prediction then needs no second forward pass through the backbone."""
        last, self._last_features = self._last_features, None
        return last[1] if last is not None and last[0] is images else None

    def sample(self, series) -> SampledSlices:
        return sample_series(series.files, self.config.options)

    def take_sampled(self, files) -> SampledSlices | None:
        """The slices the last ``predict`` read, when they are of these files; handed over once.

        Grad-CAM right after a prediction (the CLI's --gradcam, the worker) explains what the network saw
        without reading and preprocessing the same K slices again (half the cost of a map).
        """
        last, self._last_sampled = self._last_sampled, None
        if last is not None and last[0] == tuple(str(f) for f in files):
            return last[1]
        return None

    def predict(self, series) -> ModelOutput:
        """One series → ModelOutput; a series without usable pixels gets no predictions and a reason."""
        label = getattr(series, "series_uid", "") or "series"
        if getattr(series, "skipped", False):
            return ModelOutput(model=self.name, reason=f"{label}: skipped ({series.skip_reason})")
        self._last_sampled = None
        try:
            sampled = self.sample(series)
            self._last_sampled = (tuple(str(f) for f in series.files), sampled)
        except SliceReadError as exc:
            return ModelOutput(model=self.name, reason=f"{label}: no CNN output: {exc}")
        except Exception as exc:  # odd pixel data must never stop the run
            return ModelOutput(model=self.name, reason=f"{label}: no CNN output: {exc.__class__.__name__}: {exc}")
        return self.predict_sampled(sampled)


def with_pixel_facts(output: ModelOutput, stack: Stack) -> ModelOutput:
    """``output`` with what the repetitions at one location prove (``dicom.dynamics``), its sequence
    restricted to the classes those facts leave: one slice of an EPI run cannot say BOLD, ASL or
    diffusion, the run can."""
    if output.sequence is None:
        return output
    try:
        facts = stack_facts(stack)
    except Exception as exc:  # noqa: BLE001 - a run that cannot be measured proves nothing; the answer stands
        output.reason += f"; repetitions not measured ({exc.__class__.__name__}: {exc})"
        return output
    if not facts:
        return output
    output.facts = facts
    sequence, why, _ = restrict_by_facts(output.sequence, facts, lambda fact: "the images")
    output.sequence = sequence
    output.reason += "; " + (why or f"the images show {' and '.join(facts)} ({next(iter(facts.values()))})")
    return output


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
