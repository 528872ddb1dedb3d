"""Hyper-parameter search for the slice CNN: random, then Gaussian-process-guided; a top-k ensemble.

``seriesclassifier tune`` (commands/tune.py) calls ``run_tune``. The machinery here knows nothing of the CNN:
a search space, an objective ``(params, trial) -> {"loss": float, ...}`` and a JSONL trial log. The CNN
objective (caches, training, scores on the held-out and real sets) is in ``tune_trials.py``.

The search, as the papers did it:

1. ``n_random`` trials drawn uniformly from the space (log-uniform for the learning rate);
2. ``n_gp`` trials proposed by a Gaussian process (scikit-learn's GaussianProcessRegressor, Matern 5/2 with
   one length per dimension plus white noise) fitted on the finished trials' losses: of 2000 random
   candidates the one with the highest probability of improvement toward a target, the target alternating
   between the best loss so far and a 25 % improvement on it (the first exploits, the second explores);
3. the ``top_k`` trials with the lowest loss form an ensemble (their series probabilities averaged) whose
   review threshold is chosen on the validation data (``models.calibration.review_threshold``).

Leave one vendor out (``run_lovo``, ``tune --ablation --lovo``): the ablation's rows trained once per vendor
of the training corpus on the other vendors' series and scored on that vendor's (tune_trials.TuneData
.leave_vendor_out), instead of the validation split; no search.

Resuming: every trial writes a ``start`` line (with its parameters) and a ``done`` line (with its loss) to
the log. Run again with the same log and the finished trials are kept; a trial that started and never
finished (killed) is run again with the parameters it was started with; the rest continue. Proposals are
deterministic (trial index and the finished trials), so an interrupted search ends as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Dim:
    """One searched parameter: ``float`` / ``log`` (uniform / log-uniform in [low, high]), ``int`` (inclusive),
    or ``choice`` among ``choices``."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple = ()

    def sample(self, rng: np.random.Generator) -> float | int | str | bool:
        if self.kind == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "log":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def encode(self, value) -> list[float]:
        """Into [0, 1] (one column per choice for choices without order)."""
        if self.kind == "choice":
            if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in self.choices):
                return [self.choices.index(value) / max(len(self.choices) - 1, 1)]  # ordered numbers
            return [float(value == c) for c in self.choices]
        if self.kind == "log":
            return [(math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))]
        return [(float(value) - self.low) / max(self.high - self.low, 1e-12)]

    def contains(self, value) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            return False
        return self.low <= value <= self.high


# The documented space (docs/ABLATION.md). "width" multiplies the default stage widths 16…128; "blocks_shallow"
# and "blocks_deep" are the residual blocks of the first two and last two stages (the network's depth);
# "size" and "k" the input size and slices per series; loss parameters count only for their loss.
_COMMON = [
    Dim("width", "float", 0.5, 1.25),
    Dim("blocks_shallow", "int", 1, 2),
    Dim("size", "choice", choices=(64, 96, 128)),
    Dim("k", "choice", choices=(4, 6, 8)),
    Dim("lr", "log", 3e-4, 5e-3),
    Dim("batch_size", "choice", choices=(16, 32, 64)),
    Dim("augment_strength", "float", 0.3, 1.3),
    Dim("loss", "choice", choices=("ce", "focal", "asl")),
    Dim("focal_gamma", "float", 0.5, 3.0),
    Dim("asl_gamma_pos", "float", 0.0, 1.0),
    Dim("asl_gamma_neg", "float", 1.0, 6.0),
    Dim("asl_clip", "float", 0.0, 0.1),
    Dim("clahe", "choice", choices=(False, True)),
    Dim("clahe_clip", "float", 1.0, 4.0),
    Dim("clahe_tiles", "choice", choices=(4, 8)),
    Dim("task_weights", "choice", choices=("ours", "paper", "single")),
]
SPACES: dict[str, list[Dim]] = {
    # 2 shared CPU cores, a few minutes a trial: up to 3 epochs of 2048 slices
    "reduced": [*_COMMON, Dim("blocks_deep", "int", 1, 2), Dim("epochs", "int", 1, 3)],
    # more cores or a GPU: whole passes over the corpus
    "full": [*_COMMON, Dim("blocks_deep", "int", 1, 3), Dim("epochs", "int", 8, 30)],
}


def sample_params(space: list[Dim], rng: np.random.Generator) -> dict:
    return {d.name: d.sample(rng) for d in space}


def encode(space: list[Dim], params: dict) -> np.ndarray:
    return np.array([v for d in space for v in d.encode(params[d.name])], dtype=float)


def in_space(space: list[Dim], params: dict) -> bool:
    return all(d.name in params and d.contains(params[d.name]) for d in space)


def probability_of_improvement(mu: np.ndarray, sd: np.ndarray, target: float) -> np.ndarray:
    """P(loss < target) under the GP's normal predictive distribution."""
    from scipy.stats import norm

    return norm.cdf((target - mu) / np.maximum(sd, 1e-9))


def gp_targets(best: float) -> tuple[float, float]:
    """The two targets: the best loss so far, and a 25 % improvement on it."""
    return best, best - 0.25 * abs(best)


def propose_gp(space: list[Dim], done: list[dict], rng: np.random.Generator, target_index: int,
               n_candidates: int = 2000) -> tuple[dict, dict]:
    """The candidate with the highest probability of improvement toward target ``target_index`` (0 or 1).

    ``done``: finished trials ({"params", "loss"}). Returns (params, what the GP said of them).
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    x = np.stack([encode(space, t["params"]) for t in done])
    y = np.array([t["loss"] for t in done], dtype=float)
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.ones(x.shape[1]), (1e-2, 1e2), nu=2.5) + \
        WhiteKernel(1e-2, (1e-6, 1.0))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0, n_restarts_optimizer=2)
    import warnings

    with warnings.catch_warnings():  # few points: the length scales often sit at a bound, which is fine
        warnings.simplefilter("ignore")
        gp.fit(x, y)
    candidates = [sample_params(space, rng) for _ in range(n_candidates)]
    mu, sd = gp.predict(np.stack([encode(space, c) for c in candidates]), return_std=True)
    target = gp_targets(float(y.min()))[target_index]
    pi = probability_of_improvement(mu, sd, target)
    i = int(np.argmax(pi))
    return candidates[i], {"target": target, "target_kind": ["best", "best-25%"][target_index],
                           "pi": float(pi[i]), "predicted_loss": float(mu[i]), "predicted_sd": float(sd[i])}


class TrialLog:
    """The JSONL log: ``start`` and ``done`` lines per trial; read back to resume."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> tuple[list[dict], dict | None]:
        """(finished trials in order, the started-but-unfinished trial or None)."""
        started: dict[int, dict] = {}
        done: dict[int, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the kill
                    continue
                (done if entry.get("event") == "done" else started)[entry["trial"]] = entry
        finished = [{**started.get(i, {}), **done[i]} for i in sorted(done)]
        pending = [started[i] for i in sorted(started) if i not in done]
        return finished, (pending[0] if pending else None)

    def write(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fp:
            fp.write(json.dumps(entry) + "\n")
            fp.flush()


Objective = Callable[[dict, int], dict]


def _run_trial(log: TrialLog, objective: Objective, trial: int, params: dict, meta: dict) -> dict:
    log.write({"event": "start", "trial": trial, "params": params, **meta})
    t0 = time.time()
    result = objective(params, trial)
    entry = {"event": "done", "trial": trial, "loss": float(result["loss"]), "result": result,
             "seconds": round(time.time() - t0, 1)}
    log.write(entry)
    return {"trial": trial, "params": params, **meta, **entry}


def search(objective: Objective, space: list[Dim], log_path: str | Path, n_random: int, n_gp: int,
           seed: int = 0, max_minutes: float | None = None) -> list[dict]:
    """Random then GP-guided trials, resumed from ``log_path``; the finished trials in order."""
    log = TrialLog(log_path)
    done, pending = log.read()
    if pending is not None:  # killed mid-way: the same trial again, with the parameters it was started with
        meta = {k: v for k, v in pending.items() if k not in ("event", "trial", "params")}
        done.append(_run_trial(log, objective, pending["trial"], pending["params"], meta))
    t0 = time.time()
    for trial in range(len(done), n_random + n_gp):
        if max_minutes is not None and (time.time() - t0) / 60 > max_minutes:
            break
        rng = np.random.default_rng([seed, trial])
        if trial < n_random or len(done) < 2:
            params, meta = sample_params(space, rng), {"stage": "random"}
        else:
            gp_index = trial - n_random
            params, said = propose_gp(space, done, rng, gp_index % 2)
            meta = {"stage": "gp", **said}
        done.append(_run_trial(log, objective, trial, params, meta))
    return done


def run_fixed(objective: Objective, configs: dict[str, dict], log_path: str | Path) -> list[dict]:
    """Named fixed configurations (an ablation) through the same resumable log.

    A finished name is not run again; one started and never finished runs again under its number; a name new
    to the log (a configuration added later) gets the next free number, so no trial's folder is reused.
    """
    log = TrialLog(log_path)
    done, _ = log.read()
    finished = {t.get("name") for t in done}
    numbers: dict[str, int] = {}
    if log.path.is_file():
        for line in log.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == "start":
                numbers.setdefault(entry.get("name"), entry["trial"])
    for name in configs:
        if name in finished:
            continue
        trial = numbers.get(name, max([-1, *numbers.values()]) + 1)
        numbers[name] = trial
        done.append(_run_trial(log, objective, trial, configs[name], {"stage": "fixed", "name": name}))
    return done


def top_k(done: list[dict], k: int) -> list[dict]:
    """The k finished trials with the lowest loss (ties: the earlier trial)."""
    return sorted(done, key=lambda t: (t["loss"], t["trial"]))[:k]


def average_probabilities(members: list[np.ndarray]) -> np.ndarray:
    """The ensemble's series probabilities: the mean of its members' (rows renormalised)."""
    p = np.mean(np.stack(members), axis=0)
    return p / p.sum(axis=1, keepdims=True)


def trajectory(done: list[dict]) -> dict:
    """Loss per trial, the running best, and where random search ended (for the picture and the docs)."""
    losses = [t["loss"] for t in sorted(done, key=lambda t: t["trial"])]
    stages = [t.get("stage", "random") for t in sorted(done, key=lambda t: t["trial"])]
    running = list(np.minimum.accumulate(losses)) if losses else []
    last_random = max((i for i, s in enumerate(stages) if s == "random"), default=-1)
    return {"loss": losses, "running_best": [float(v) for v in running], "stage": stages,
            "random_ended_after": last_random + 1}


def plot_trajectory(done: list[dict], path: str | Path, title: str = "") -> None:
    """Loss per trial (random and GP marked), the running best, a line where random search ended."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = trajectory(done)
    x = np.arange(1, len(t["loss"]) + 1)
    kinds = np.array([d.get("target_kind", d.get("stage", "random")) for d in sorted(done, key=lambda d: d["trial"])])
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, marker, face, label in (("random", "o", "tab:blue", "random trial"),
                                      ("best", "s", "tab:orange", "GP trial, target: best so far"),
                                      ("best-25%", "s", "none", "GP trial, target: 25 % better")):
        m = kinds == kind
        ax.scatter(x[m], np.array(t["loss"])[m], marker=marker, facecolors=face, edgecolors="tab:orange"
                   if kind != "random" else "tab:blue", label=label, zorder=3)
    ax.step(x, t["running_best"], where="post", color="black", label="running best")
    if 0 < t["random_ended_after"] < len(x):
        ax.axvline(t["random_ended_after"] + 0.5, color="grey", ls="--", label="random search ended")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss (series cross-entropy)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- the command's run

# The ablation (docs/ABLATION.md): the reduced-scale baseline (the product's defaults: CE with the
# class-balanced sampler, our task weights, no CLAHE, mean log-probability) and one change per row.
BASELINE = {"width": 1.0, "blocks_shallow": 1, "blocks_deep": 1, "size": 128, "k": 8, "lr": 2e-3, "batch_size": 32,
            "epochs": 3, "augment_strength": 1.0, "loss": "ce", "focal_gamma": 2.0, "asl_gamma_pos": 0.0,
            "asl_gamma_neg": 4.0, "asl_clip": 0.05, "clahe": False, "clahe_clip": 2.0, "clahe_tiles": 8,
            "task_weights": "ours"}
ABLATION = {
    "baseline": {**BASELINE, "gru": True},  # also scored with majority vote and a GRU on its embeddings
    "baseline_seed1": {**BASELINE, "seed": 1},  # the same recipe, another seed: the noise floor of a row
    "focal": {**BASELINE, "loss": "focal", "focal_gamma": 2.0},
    "asl": {**BASELINE, "loss": "asl", "asl_gamma_pos": 0.0, "asl_gamma_neg": 4.0, "asl_clip": 0.05},
    "clahe": {**BASELINE, "clahe": True, "clahe_clip": 2.0, "clahe_tiles": 8},
    "clahe_seed1": {**BASELINE, "clahe": True, "clahe_clip": 2.0, "clahe_tiles": 8, "seed": 1},
    "paper_weights": {**BASELINE, "task_weights": "paper"},
    "single_task": {**BASELINE, "task_weights": "single"},
    # a second seed of the two rows that led the leave-one-vendor-out table (compared with baseline_seed1)
    "focal_seed1": {**BASELINE, "loss": "focal", "focal_gamma": 2.0, "seed": 1},
    "paper_weights_seed1": {**BASELINE, "task_weights": "paper", "seed": 1},
    # issue 16's slice models, trained end to end with the CNN: mean-pooled embedding + a residual GRU / 1-D
    # convolution neck (models/aggregate.SliceHead); and the fair control of the frozen GRU: the baseline
    # again (the same seed, so the same network) with a linear head fitted on its mean-pooled frozen
    # embeddings as the GRU is fitted on them (the GRU refitted too, to check the pairing)
    "slice_gru": {**BASELINE, "slice_model": "gru"},
    "slice_conv1d": {**BASELINE, "slice_model": "conv1d"},
    "pooled_head": {**BASELINE, "gru": True, "pooled_head": True},
    # the end-to-end rows' batching alone (4 whole series a step instead of 32 slices of 32 series), no head
    "series_batches": {**BASELINE, "series_batches": True},
}


def ablation_configs(rows: list[str] | None = None) -> dict[str, dict]:
    """The ablation's configurations, all or the named ``rows`` (in the order given)."""
    if not rows:
        return dict(ABLATION)
    unknown = [r for r in rows if r not in ABLATION]
    if unknown:
        from ..errors import TrainingError

        raise TrainingError(f"ablation rows {', '.join(unknown)}: not among {', '.join(ABLATION)}")
    return {r: ABLATION[r] for r in rows}


@dataclass
class TuneRun:
    """What ``seriesclassifier tune`` was asked (see commands/tune.py for each)."""

    train: str
    held: str | None  # may be None only with lovo
    out: str
    real: str | None = None
    scale: str = "reduced"
    n_random: int = 8
    n_gp: int = 8
    top_k: int = 3
    seed: int = 0
    threads: int = 1
    max_minutes: float | None = None
    ablation: bool = False
    ablation_rows: list[str] | None = None  # only these rows of ABLATION (default all)
    search: bool = True
    # leave one vendor out: None = off; [] = every vendor of the training corpus; else these vendors. With it the
    # ablation rows are trained once per held-out vendor (run_lovo) and nothing else runs.
    lovo: list[str] | None = None
    vendor_of: dict[str, str] | None = None  # profile → vendor (the generator's table; the command gives it)


def run_lovo(run: TuneRun, configs: dict[str, dict]) -> dict:
    """Leave one vendor out: each ablation row trained on the other vendors' series, scored on the vendor's.

    Rows outer, vendors inner (a cut run has its first rows, the baseline first, for every vendor). One log,
    ``out/lovo_ablation.jsonl``, names ``row@VENDOR`` (resumed by name as ``run_fixed`` does); models and
    outputs in ``out/lovo/VENDOR/trials/NNN``. The generated held-out profiles and the real set are scored
    too when given. Returns {name: result}, and per vendor the split (``TuneData.describe``).
    """
    from ..errors import TrainingError
    from .tune_trials import CnnObjective, TuneData, corpus_vendors, load_cache, real_cache

    if not run.vendor_of:
        raise TrainingError("leave-one-vendor-out needs the profile → vendor table")
    out = Path(run.out)
    full = load_cache(run.train, out / "cache", "train")
    present = corpus_vendors(full, run.vendor_of)
    vendors = list(run.lovo) if run.lovo else present
    missing = [v for v in vendors if v not in present]
    if missing:
        raise TrainingError(f"vendors {', '.join(missing)}: not in the training corpus ({', '.join(present)})")
    held = load_cache(run.held, out / "cache", "held") if run.held else None
    real = real_cache(run.real, out / "cache" / "real_k8_s128.npz") if run.real else None
    results: dict = {}
    splits: dict = {}
    for name, config in configs.items():
        # the networks' own answer (mean log-probability) only: the frozen GRU and linear head are not refitted
        # per vendor (they do not change the network: fit_cnn never sees these keys)
        config = {k: v for k, v in config.items() if k not in ("gru", "pooled_head")}
        for vendor in vendors:
            data = TuneData.leave_vendor_out(full, run.vendor_of, vendor, held, real)
            splits[vendor] = data.describe()
            objective = CnnObjective(data, out / "lovo" / vendor, run.scale, run.threads)
            done = run_fixed(objective, {f"{name}@{vendor}": config}, out / "lovo_ablation.jsonl")
            results[f"{name}@{vendor}"] = next(t["result"] for t in done if t.get("name") == f"{name}@{vendor}")
            del data, objective
    return {"vendors": vendors, "splits": splits, "rows": results}


def run_tune(run: TuneRun) -> dict:
    """The ablation (optional), the search, the trajectory picture and the top-k ensemble; a summary."""
    import torch

    from .tune_trials import CnnObjective, TuneData, ensemble_figures

    configs = ablation_configs(run.ablation_rows) if run.ablation else {}  # a wrong name fails before the data
    torch.set_num_threads(run.threads)
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    if run.lovo is not None:
        if not run.ablation:
            from ..errors import TrainingError

            raise TrainingError("leave-one-vendor-out trains the ablation's rows: give --ablation with it")
        lovo = run_lovo(run, configs)
        path = out / "summary.json"  # rows run earlier into the same folder (other --ablation-rows) are kept
        earlier = json.loads(path.read_text(encoding="utf-8")).get("lovo", {}) if path.is_file() else {}
        lovo = {"vendors": sorted({*earlier.get("vendors", []), *lovo["vendors"]}),
                "splits": {**earlier.get("splits", {}), **lovo["splits"]},
                "rows": {**earlier.get("rows", {}), **lovo["rows"]}}
        return _write_summary(out, {"lovo": lovo})
    data = TuneData.load(run.train, run.held, run.real, out / "cache")
    objective = CnnObjective(data, out, run.scale, run.threads)
    summary: dict = {"val_profile": data.val_profile, "n_train_series": int(len(data.train.uids)),
                     "n_val_series": int(len(data.val.uids)), "n_held_series": int(len(data.held.uids)),
                     "n_real_series": int(len(data.real.uids)) if data.real is not None else 0}
    if run.ablation:
        fixed = run_fixed(lambda p, t: objective(p, 900 + t), configs, out / "ablation.jsonl")
        summary["ablation"] = {t["name"]: t["result"] for t in fixed}
    if run.search:
        done = search(objective, SPACES[run.scale], out / "trials.jsonl", run.n_random, run.n_gp, run.seed,
                      run.max_minutes)
        summary["trajectory"] = trajectory(done)
        plot_trajectory(done, out / "search_trajectory.png",
                        f"tune --scale {run.scale}: {len(done)} trials, validation profile {data.val_profile}")
        if done:
            summary["ensemble"] = ensemble_figures(done, run.top_k)
    return _write_summary(out, summary)


def _write_summary(out: Path, summary: dict) -> dict:
    path = out / "summary.json"  # an ablation-only or search-only run keeps what the other part wrote
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    summary = {**earlier, **summary}
    path.write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
    return summary
