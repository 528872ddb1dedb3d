"""How the images at one location change across a series' repetitions: what pixels alone say of a run.

A single slice of an EPI run looks the same whether the run is BOLD, ASL or a diffusion b = 0: the
CNN, which sees one image per location, cannot tell them apart. The repetitions at one location can:

- a **steady run** (many time points whose in-head mean barely moves) is a functional or perfusion
  time series, never a structural image;
- **label/control pairs** (odd and even time points differing by about one per cent, always the
  same way round) are arterial spin labelling and nothing else;
- **weighted levels** (repetitions whose in-head mean falls by a third or more, as diffusion
  weighting or later echoes do) are not a steady run;
- and none of it holds unless consecutive repetitions show one anatomy (a series interleaving
  magnitude and phase images alternates in level too).

``measure(images)`` turns the repetitions at the central location (``slices.Stack.repeats``, in
acquisition order) into these few numbers; ``pixel_facts`` names the facts they prove, the same
way ``models.physics.hard_facts`` names a header's; ``stack_facts`` does both for a series' stack.
Nothing here knows about models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .slices import Stack, read_repeats

STEADY_MIN_REPETITIONS = 8  # fewer time points than this is an exported volume or a test, not a run
STEADY_MAX_VARIATION = 0.05  # coefficient of variation of the in-head mean (BOLD ~0.5 %, DSC dip < 40 %)
PAIRS_MIN = 3  # label/control pairs needed to trust a consistent sign
PAIRS_MIN_T = 6.0  # t statistic of the pair differences (BOLD drift gives |t| well below)
PAIRS_MAX_SIZE = 0.15  # label − control: ~1 % of the signal, up to ~8 % under background suppression
MIN_LIKENESS = 0.5  # consecutive repetitions show one anatomy (a magnitude beside a phase image correlates ~0)
FEWEST = min(STEADY_MIN_REPETITIONS, 2 * PAIRS_MIN)  # below this no fact can be proved: nothing to read


@dataclass(frozen=True)
class Dynamics:
    """Figures of the repetitions at one location; NaN where there are too few to tell."""

    repetitions: int
    level_ratio: float  # lowest / highest in-head mean
    variation: float  # coefficient of variation of the in-head mean
    pair_t: float  # t statistic of the alternation between consecutive time points (``_pairs``)
    pair_size: float  # its mean size relative to the mean level
    likeness: float = math.nan  # median correlation of consecutive repetitions inside the head

    def describe(self) -> str:
        parts = [f"{self.repetitions} repetitions read at one location"]
        if not math.isnan(self.variation):
            parts.append(f"in-head mean varies {100 * self.variation:.1f} %")
        if not math.isnan(self.pair_t):
            parts.append(f"alternate time points differ {100 * self.pair_size:.2f} % (t = {self.pair_t:.1f})")
        return ", ".join(parts)


def _head_mask(mean_image: np.ndarray) -> np.ndarray:
    """Pixels well above the background: the object the images show (a head, a phantom)."""
    top = float(np.percentile(mean_image, 99))
    return mean_image > 0.2 * top if top > 0 else np.zeros(mean_image.shape, bool)


def measure(images: list[np.ndarray]) -> Dynamics:
    """The figures of ``images`` (the repetitions at one location, in acquisition order, same shape)."""
    n = len(images)
    nan = math.nan
    if n < 2:
        return Dynamics(n, nan, nan, nan, nan)
    stack = np.stack([np.asarray(i, np.float64) for i in images])
    mask = _head_mask(stack.mean(axis=0))
    if mask.sum() < 16:
        return Dynamics(n, nan, nan, nan, nan)
    inside = stack[:, mask]
    levels = inside.mean(axis=1)
    top = float(levels.max())
    if top <= 0:
        return Dynamics(n, nan, nan, nan, nan)
    ratio = float(levels.min()) / top
    variation = float(levels.std() / levels.mean())
    # a run may open with an M0 or a dummy volume: pairs are tried from the first and from the second
    pair_t, pair_size = max((_pairs(levels[start:]) for start in (0, 1)), key=lambda ts: abs(ts[0]))
    return Dynamics(n, ratio, variation, pair_t, pair_size, _likeness(inside))


def _likeness(inside: np.ndarray) -> float:
    """Median correlation between consecutive repetitions' in-head pixels (1 for identical images)."""
    centred = inside - inside.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    if np.any(norms == 0):
        return 1.0 if np.all(norms == 0) else 0.0
    unit = centred / norms[:, None]
    return float(np.median(np.sum(unit[:-1] * unit[1:], axis=1)))


def _t(values: np.ndarray) -> float:
    mean, spread = float(values.mean()), float(values.std(ddof=1))
    if spread > 0:
        return mean / (spread / math.sqrt(len(values)))
    return math.copysign(math.inf, mean) if mean else 0.0


def _pairs(levels: np.ndarray) -> tuple[float, float]:
    """(t statistic, relative size) of the alternation of consecutive time points; NaN with too few.

    Two readings, the stronger kept: the differences within consecutive pairs (right for multi-delay
    runs, whose level steps from one pair to the next), counted only when the steps between pairs go
    the other way on average (a decay, such as echoes of rising TE, goes the same way in both); and
    each point against the mean of its two neighbours, sign flipped every other point (right for runs
    that drift)."""
    if len(levels) < 2 * PAIRS_MIN:
        return math.nan, math.nan
    pairs = len(levels) // 2
    within = levels[0 : 2 * pairs : 2] - levels[1 : 2 * pairs : 2]
    between = levels[1 : 2 * pairs - 1 : 2] - levels[2 : 2 * pairs : 2]
    signs = np.where(np.arange(1, len(levels) - 1) % 2 == 0, 1.0, -1.0)
    readings = [signs * (levels[1:-1] - 0.5 * (levels[:-2] + levels[2:]))]
    if np.sign(within.mean()) != np.sign(between.mean()):
        readings.append(within)
    t, values = max(((_t(v), v) for v in readings), key=lambda tv: abs(tv[0]))
    return t, abs(float(values.mean())) / float(levels.mean())


def pixel_facts(d: Dynamics) -> dict[str, str]:
    """{fact: evidence} of what the repetitions prove; the facts are named in the vocabulary's physics rules."""
    facts: dict[str, str] = {}
    if not d.likeness >= MIN_LIKENESS:  # NaN too: images that are not one anatomy repeated prove no run
        return facts
    if d.repetitions >= STEADY_MIN_REPETITIONS and d.variation <= STEADY_MAX_VARIATION:
        facts["steady_run"] = d.describe()
    if abs(d.pair_t) >= PAIRS_MIN_T and d.pair_size <= PAIRS_MAX_SIZE:
        facts["label_control_pairs"] = d.describe()
    return facts


def stack_facts(stack: Stack) -> dict[str, str]:
    """What the repetitions at the stack's central location prove; {} (nothing read) with too few."""
    if len(stack.repeats) < FEWEST:
        return {}
    return pixel_facts(measure(read_repeats(stack.repeats)))
