"""``seriesclassifier tune``'s machinery with a fake objective: resuming, GP proposals, top-k, trajectory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from SeriesClassifierLib.training.tune import (
    SPACES,
    Dim,
    TrialLog,
    average_probabilities,
    encode,
    gp_targets,
    in_space,
    plot_trajectory,
    propose_gp,
    run_fixed,
    sample_params,
    search,
    top_k,
    trajectory,
)

SPACE = [Dim("lr", "log", 1e-4, 1e-1), Dim("width", "float", 0.5, 1.5), Dim("epochs", "int", 1, 5),
         Dim("loss", "choice", choices=("ce", "focal", "asl")), Dim("size", "choice", choices=(64, 96, 128))]


def fake_loss(params: dict) -> float:
    """A smooth bowl: best at lr 1e-2, width 1, 3 epochs, asl."""
    return (np.log10(params["lr"]) + 2) ** 2 + (params["width"] - 1) ** 2 + 0.1 * abs(params["epochs"] - 3) + \
        {"ce": 0.3, "focal": 0.2, "asl": 0.0}[params["loss"]]


def objective(params: dict, trial: int) -> dict:
    return {"loss": fake_loss(params), "trial_seen": trial}


class Killed(Exception):
    pass


def test_an_interrupted_search_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    whole = search(objective, SPACE, tmp_path / "whole.jsonl", n_random=4, n_gp=3, seed=7)

    def dies_at_trial_5(params, trial):
        if trial == 5:
            raise Killed  # the process is killed while trial 5 runs: its start line is written, no done line
        return objective(params, trial)

    log = tmp_path / "cut.jsonl"
    with pytest.raises(Killed):
        search(dies_at_trial_5, SPACE, log, n_random=4, n_gp=3, seed=7)
    finished, pending = TrialLog(log).read()
    assert [t["trial"] for t in finished] == [0, 1, 2, 3, 4] and pending["trial"] == 5
    calls = []

    def counting(params, trial):
        calls.append(trial)
        return objective(params, trial)

    resumed = search(counting, SPACE, log, n_random=4, n_gp=3, seed=7)
    assert calls == [5, 6]  # the finished trials are not run again; the killed one is
    assert [t["params"] for t in resumed] == [t["params"] for t in whole]
    assert [t["loss"] for t in resumed] == pytest.approx([t["loss"] for t in whole])
    assert [t["stage"] for t in resumed] == ["random"] * 4 + ["gp"] * 3
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["trial"] for e in events if e["event"] == "start"].count(5) == 2
    assert [e["trial"] for e in events if e["event"] == "done"] == list(range(7))


def test_a_line_cut_by_the_kill_is_ignored(tmp_path):
    log = tmp_path / "t.jsonl"
    search(objective, SPACE, log, n_random=2, n_gp=0)
    with open(log, "a") as fp:
        fp.write('{"event": "done", "tri')
    finished, pending = TrialLog(log).read()
    assert len(finished) == 2 and pending is None


def test_gp_proposals_stay_within_the_space_and_aim_at_the_two_targets():
    rng = np.random.default_rng(0)
    done = [{"params": (p := sample_params(SPACE, rng)), "loss": fake_loss(p)} for _ in range(8)]
    best = min(t["loss"] for t in done)
    for target_index in (0, 1):
        for seed in range(3):
            params, said = propose_gp(SPACE, done, np.random.default_rng(seed), target_index, n_candidates=300)
            assert in_space(SPACE, params), params
            assert said["target"] == pytest.approx(gp_targets(best)[target_index])
            assert 0.0 <= said["pi"] <= 1.0
    assert gp_targets(2.0) == (2.0, 1.5)


def test_gp_guided_trials_improve_on_the_random_start(tmp_path):
    done = search(objective, SPACE, tmp_path / "t.jsonl", n_random=6, n_gp=6, seed=3)
    random_best = min(t["loss"] for t in done if t["stage"] == "random")
    gp_best = min(t["loss"] for t in done if t["stage"] == "gp")
    assert gp_best < random_best
    assert {t["target_kind"] for t in done if t["stage"] == "gp"} == {"best", "best-25%"}


def test_every_documented_space_samples_and_encodes_within_bounds():
    for space in SPACES.values():
        rng = np.random.default_rng(0)
        for _ in range(50):
            params = sample_params(space, rng)
            assert in_space(space, params)
            x = encode(space, params)
            assert x.min() >= 0.0 and x.max() <= 1.0
    names = {d.name for d in SPACES["reduced"]}
    assert {"width", "blocks_shallow", "blocks_deep", "size", "k", "lr", "batch_size", "epochs",
            "augment_strength", "loss", "focal_gamma", "asl_gamma_neg", "clahe", "clahe_clip"} <= names
    assert not in_space(SPACE, {**sample_params(SPACE, rng), "epochs": 9})


def test_top_k_and_averaging():
    done = [{"trial": i, "loss": loss} for i, loss in enumerate([0.5, 0.2, 0.9, 0.2, 0.4])]
    assert [t["trial"] for t in top_k(done, 3)] == [1, 3, 4]
    a = np.array([[0.6, 0.4], [0.1, 0.9]])
    b = np.array([[0.2, 0.8], [0.3, 0.7]])
    assert np.allclose(average_probabilities([a, b]), [[0.4, 0.6], [0.2, 0.8]])


def test_fixed_configurations_resume_by_name(tmp_path):
    configs = {"a": {"lr": 1e-2, "width": 1.0, "epochs": 3, "loss": "asl", "size": 64},
               "b": {"lr": 1e-3, "width": 1.0, "epochs": 3, "loss": "ce", "size": 64}}
    calls = []

    def counting(params, trial):
        calls.append(trial)
        return objective(params, trial)

    run_fixed(counting, {"a": configs["a"], "c": configs["b"]}, tmp_path / "ab.jsonl")
    # "b" added later in the middle of the list: it gets a new number, never the one "c" ran under
    done = run_fixed(counting, {"a": configs["a"], "b": configs["b"], "c": configs["b"]}, tmp_path / "ab.jsonl")
    assert calls == [0, 1, 2] and [t["name"] for t in done] == ["a", "c", "b"]
    assert [t["trial"] for t in done] == [0, 1, 2]
    assert done[0]["loss"] == pytest.approx(fake_loss(configs["a"]))


def test_trajectory_and_its_picture(tmp_path):
    done = [{"trial": i, "loss": loss, "stage": stage}
            for i, (loss, stage) in enumerate([(3, "random"), (2, "random"), (4, "random"), (1.5, "gp"), (2, "gp")])]
    t = trajectory(done)
    assert t["running_best"] == [3, 2, 2, 1.5, 1.5] and t["random_ended_after"] == 3
    plot_trajectory(done, tmp_path / "t.png", "test")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.torch
def test_the_ensemble_averages_its_members_and_chooses_the_threshold_on_validation(tmp_path):
    from SeriesClassifierLib.training.tune_trials import ensemble_figures

    y = np.array([0, 1, 1, 0])
    done = []
    for i, (loss, p1) in enumerate([(0.3, [0.9, 0.8, 0.6, 0.3]), (0.2, [0.7, 0.6, 0.9, 0.4]), (0.9, [0, 0, 0, 1])]):
        p = np.column_stack([1 - np.array(p1, float), p1])[:, ::-1]  # column 0 = class 0 probability = p1
        folder = tmp_path / str(i)
        folder.mkdir()
        np.savez(folder / "outputs.npz", val__mean=p, val__y=y, held__mean=p, held__y=y)
        done.append({"trial": i, "loss": loss, "result": {"folder": str(folder), "rare_classes": [1]}})
    fig = ensemble_figures(done, k=2, target_accuracy=0.9)
    assert fig["members"] == [1, 0]
    # averaged class-0 probabilities 0.8, 0.7, 0.75, 0.35 → predictions 0, 0, 0, 1: one of four right
    assert fig["val"]["right"] == 1 and fig["held"]["right"] == 1
    assert 0.5 <= fig["threshold"] <= 0.9 and "real" not in fig


@pytest.mark.torch
def test_derived_caches_take_k_of_the_slices_and_resize():
    from SeriesClassifierLib.training.cnn_train import Cache
    from SeriesClassifierLib.training.tune_trials import derive, trial_options

    n = [8, 3]
    index = np.repeat([0, 1], n).astype(np.int32)
    images = (np.arange(11)[:, None, None] * np.ones((1, 16, 16)) * 20).astype(np.uint8)
    labels = {"sequence": np.zeros(11, np.int16)}
    cache = Cache(images, index, labels, np.array(["a", "b"]), np.array(["p", "p"]),
                  {"sequence": np.zeros(2, np.int16)})
    small = derive(cache, k=4, size=8)
    assert small.images.shape == (7, 8, 8)  # 4 of 8, and the 3 of a short series
    assert list(small.images[:4, 0, 0] // 20) == [0, 2, 5, 7]  # spread evenly, ends kept
    assert list(small.series_index) == [0, 0, 0, 0, 1, 1, 1]
    opts = trial_options({**sample_params(SPACES["reduced"], np.random.default_rng(0)), "width": 0.5,
                          "blocks_shallow": 2, "blocks_deep": 1, "loss": "ce"}, "reduced")
    assert opts.widths == [8, 16, 24, 48, 64] and opts.blocks == [2, 2, 1, 1] and opts.focal_gamma == 0.0


def test_the_slice_model_rows_are_registered_and_can_be_chosen_alone():
    from SeriesClassifierLib.errors import TrainingError
    from SeriesClassifierLib.training.tune import ABLATION, BASELINE, ablation_configs

    assert ABLATION["slice_gru"] == {**BASELINE, "slice_model": "gru"}
    assert ABLATION["slice_conv1d"] == {**BASELINE, "slice_model": "conv1d"}
    assert ABLATION["pooled_head"] == {**BASELINE, "gru": True, "pooled_head": True}  # the baseline's network
    assert ABLATION["series_batches"] == {**BASELINE, "series_batches": True}  # the batching without a head
    assert list(ablation_configs(["pooled_head", "slice_gru"])) == ["pooled_head", "slice_gru"]
    assert ablation_configs(None) == ABLATION
    with pytest.raises(TrainingError, match="slice_lstm"):
        ablation_configs(["slice_gru", "slice_lstm"])
    # the table (benchmarks/ablation.py) has a row for each, compared with the baseline's mean log-probability
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"
    spec = importlib.util.spec_from_file_location("ablation_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    rows = {(trial, agg, base) for _, trial, agg, base in table.ROWS}
    for trial, agg in (("slice_gru", "e2e"), ("slice_conv1d", "e2e"), ("pooled_head", "pooled")):
        assert (trial, agg, ("baseline", "mean")) in rows
    assert ("pooled_head", "gru", ("pooled_head", "pooled")) in rows  # the frozen GRU against its control
    assert ("series_batches", "mean", ("baseline", "mean")) in rows
    assert all(trial in ABLATION for trial, _, _ in rows)


def test_the_command_passes_the_chosen_rows():
    import argparse

    from SeriesClassifierLib.commands.tune import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--train", "t.npz", "--held", "h.npz", "--out", "o", "--ablation", "--no-search",
                              "--ablation-rows", "slice_gru", "pooled_head"])
    assert args.ablation_rows == ["slice_gru", "pooled_head"] and args.no_search


@pytest.mark.torch
def test_the_new_rows_train_and_score_every_answer(tmp_path, monkeypatch):
    """The objective on tiny caches: the end-to-end head scored as "e2e" (and the trial's loss), the fair
    control as "pooled" beside the frozen GRU, on every set; the saved model carries its head."""
    from SeriesClassifierLib.models.cnn import CnnConfig, CnnModel
    from SeriesClassifierLib.training import tune_trials
    from SeriesClassifierLib.training.cnn_train import Cache
    from SeriesClassifierLib.training.tune import ABLATION

    config = CnnConfig.from_vocabulary()
    rng = np.random.default_rng(0)

    def cache(n, profile):
        index = np.repeat(np.arange(n), 8).astype(np.int32)
        counts = {"sequence": 3, "orientation": 2, **{a: 2 for a in config.attributes}}
        series = {h: rng.integers(0, c, n).astype(np.int16) for h, c in counts.items()}
        return Cache((rng.random((8 * n, 32, 32)) * 255).astype(np.uint8), index,
                     {h: v[index] for h, v in series.items()}, np.array([f"{profile}{i}" for i in range(n)]),
                     np.array([profile] * n), series)

    data = tune_trials.TuneData(cache(10, "a"), cache(4, "v"), cache(4, "h"), None, "v")
    monkeypatch.setitem(tune_trials.SCALE_FIXED, "reduced", {"samples_per_epoch": 32, "patience": 3})
    objective = tune_trials.CnnObjective(data, tmp_path, "reduced")
    small = {"width": 0.25, "size": 32, "epochs": 1}
    e2e = objective({**ABLATION["slice_conv1d"], **small}, 1)
    assert {"val__e2e", "held__e2e", "held__mean", "held__vote"} <= set(e2e["figures"])
    assert e2e["loss"] == e2e["figures"]["val__e2e"]["nll"] != e2e["figures"]["val__mean"]["nll"]
    assert CnnModel.load(tmp_path / "trials" / "001").config.aggregator == "slice_conv1d"
    control = objective({**ABLATION["pooled_head"], **small}, 2)
    assert {"held__pooled", "held__gru", "held__mean"} <= set(control["figures"]) and "held__e2e" not in \
        control["figures"]
    with np.load(tmp_path / "trials" / "002" / "outputs.npz") as z:
        assert z["held__pooled"].shape == (4, len(config.sequence_classes))
