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


# ----------------------------------------------------------------------------- leave one vendor out

VENDOR_OF = {"s1": "SIEMENS", "s2": "SIEMENS", "g1": "GE", "p1": "PHILIPS"}


def vendor_cache(counts=(("s1", 3), ("s2", 5), ("g1", 6), ("p1", 6)), size=16):
    """A tiny cache of series of several profiles (s1 holds 15 % of the series: the main rows' validation)."""
    from SeriesClassifierLib.models.cnn import CnnConfig
    from SeriesClassifierLib.training.cnn_train import Cache

    config = CnnConfig.from_vocabulary()
    profiles = np.array([p for p, n in counts for _ in range(n)])
    n = len(profiles)
    rng = np.random.default_rng(0)
    index = np.repeat(np.arange(n), 2).astype(np.int32)
    classes = {"sequence": 3, "orientation": 2, **{a: 2 for a in config.attributes}}
    series = {h: rng.integers(0, c, n).astype(np.int16) for h, c in classes.items()}
    return Cache((rng.random((2 * n, size, size)) * 255).astype(np.uint8), index,
                 {h: v[index] for h, v in series.items()}, np.array([f"{p}_{i}" for i, p in enumerate(profiles)]),
                 profiles, series)


@pytest.mark.torch
def test_a_vendor_split_leaves_out_exactly_that_vendor_and_never_trains_or_validates_on_it():
    from SeriesClassifierLib.errors import TrainingError
    from SeriesClassifierLib.training.cnn_train import choose_val_profile
    from SeriesClassifierLib.training.tune_trials import TuneData, corpus_vendors, vendor_split

    full = vendor_cache()
    assert choose_val_profile(full) == "s1"  # the main rows' validation profile
    assert corpus_vendors(full, VENDOR_OF) == ["GE", "PHILIPS", "SIEMENS"]
    vendors = np.array([VENDOR_OF[p] for p in full.profiles])
    for vendor in ("GE", "PHILIPS", "SIEMENS"):
        train, val, out, val_profile = vendor_split(full, VENDOR_OF, vendor)
        assert (out == (vendors == vendor)).all()  # exactly the vendor's series are held out
        assert not (train & val).any() and not (train & out).any() and not (val & out).any()
        assert (train | val | out).all()
        assert vendor not in set(vendors[train]) | set(vendors[val])
        assert train.any() and val.any()
        # the main rows' validation profile unless it is the held-out vendor's, then the same rule on the others
        assert val_profile == ("s1" if vendor != "SIEMENS" else "g1")
        assert set(full.profiles[val]) == {val_profile}
        data = TuneData.leave_vendor_out(full, VENDOR_OF, vendor)
        assert vendor not in {VENDOR_OF[p] for p in data.train.profiles} | {VENDOR_OF[p] for p in data.val.profiles}
        assert {VENDOR_OF[p] for p in data.lovo.profiles} == {vendor}
        assert sorted(data.lovo.uids) == sorted(full.uids[vendors == vendor])
        assert len(data.lovo.images) == 2 * int((vendors == vendor).sum())
        assert data.describe()["held_out_vendor"] == vendor and data.held is None
    with pytest.raises(TrainingError, match="CANON"):
        vendor_split(full, VENDOR_OF, "CANON")
    with pytest.raises(TrainingError, match="p1"):
        vendor_split(full, {k: v for k, v in VENDOR_OF.items() if k != "p1"}, "GE")
    with pytest.raises(TrainingError, match="nothing left"):
        vendor_split(vendor_cache((("s1", 3), ("s2", 4))), VENDOR_OF, "SIEMENS")


def test_the_generators_table_gives_every_training_profile_a_vendor():
    from SeriesClassifierLib.synth.profiles import PROFILES, TRAINING_PROFILES

    assert {PROFILES[p].vendor for p in TRAINING_PROFILES} >= {"SIEMENS", "GE", "PHILIPS"}
    assert PROFILES["anonymised_research"].vendor == "SIEMENS"  # the corpus's fourth Siemens profile


@pytest.mark.torch
def test_lovo_mode_trains_each_row_once_per_vendor_without_that_vendor_and_resumes(tmp_path, monkeypatch):
    from SeriesClassifierLib.training import tune, tune_trials

    full = vendor_cache(size=32)
    full.save(tmp_path / "train.npz")
    monkeypatch.setitem(tune_trials.SCALE_FIXED, "reduced", {"samples_per_epoch": 16, "patience": 3})
    small = {"width": 0.25, "size": 32, "epochs": 1, "batch_size": 16}
    monkeypatch.setitem(tune.ABLATION, "baseline", {**tune.ABLATION["baseline"], **small})
    monkeypatch.setitem(tune.ABLATION, "focal", {**tune.ABLATION["focal"], **small})
    seen = []
    fit = tune_trials.fit_cnn

    def recording(train_c, val_c, config, opts, out):
        seen.append((set(train_c.profiles), set(val_c.profiles), opts.loss))
        return fit(train_c, val_c, config, opts, out)

    monkeypatch.setattr(tune_trials, "fit_cnn", recording)
    run = tune.TuneRun(train=str(tmp_path / "train.npz"), held=None, out=str(tmp_path / "run"), ablation=True,
                       ablation_rows=["baseline", "focal"], lovo=[], vendor_of=VENDOR_OF)
    summary = tune.run_tune(run)
    lovo = summary["lovo"]
    assert lovo["vendors"] == ["GE", "PHILIPS", "SIEMENS"]
    # rows outer, vendors inner: the baseline for every vendor first
    assert list(lovo["rows"]) == [f"{r}@{v}" for r in ("baseline", "focal") for v in lovo["vendors"]]
    assert len(seen) == 6
    for (train_profiles, val_profiles, _), name in zip(seen, lovo["rows"]):
        vendor = name.split("@")[1]
        assert vendor not in {VENDOR_OF[p] for p in train_profiles | val_profiles}
        fig = lovo["rows"][name]["figures"]["lovo__mean"]
        assert fig["n"] == sum(VENDOR_OF[p] == vendor for p in full.profiles)
        assert lovo["rows"][name]["split"]["held_out_vendor"] == vendor
        assert "held__mean" not in lovo["rows"][name]["figures"]  # no --held given: the vendor's series only
    assert [loss for *_, loss in seen] == ["ce"] * 3 + ["focal"] * 3
    assert not (tmp_path / "run" / "trials.jsonl").exists()  # no search in this mode
    again = tune.run_tune(run)  # resumed by name: nothing trained twice
    assert len(seen) == 6 and list(again["lovo"]["rows"]) == list(lovo["rows"])
    # a row added later in the same folder: trained for the vendor named; the summary keeps the earlier rows
    monkeypatch.setitem(tune.ABLATION, "asl", {**tune.ABLATION["asl"], **small})
    more = tune.run_tune(tune.TuneRun(**{**vars(run), "ablation_rows": ["asl"], "lovo": ["GE"]}))
    assert len(seen) == 7 and seen[-1][2] == "asl" and "GE" not in {VENDOR_OF[p] for p in seen[-1][0]}
    assert list(more["lovo"]["rows"]) == [*lovo["rows"], "asl@GE"]
    with pytest.raises(Exception, match="--ablation"):
        tune.run_tune(tune.TuneRun(train=run.train, held=None, out=run.out, lovo=[], vendor_of=VENDOR_OF))


def test_the_command_wires_lovo_to_the_run(monkeypatch, tmp_path, capsys):
    import argparse
    import importlib.util

    from SeriesClassifierLib.commands import cli
    from SeriesClassifierLib.commands.tune import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--train", "t.npz", "--out", "o", "--ablation", "--lovo"]).lovo == []
    assert parser.parse_args(["--train", "t.npz", "--out", "o", "--ablation", "--lovo", "GE"]).lovo == ["GE"]
    assert parser.parse_args(["--train", "t.npz", "--held", "h", "--out", "o"]).lovo is None
    # refused before anything loads: --lovo without --ablation, no --held without --lovo
    assert cli.main(["tune", "--train", "t.npz", "--out", str(tmp_path), "--lovo"]) == 2
    assert "--ablation" in capsys.readouterr().err
    assert cli.main(["tune", "--train", "t.npz", "--out", str(tmp_path)]) == 2
    assert "--held" in capsys.readouterr().err
    if importlib.util.find_spec("torch") is None:
        return
    from SeriesClassifierLib.training import tune

    runs = []
    monkeypatch.setattr(tune, "run_tune", lambda run: runs.append(run) or {"lovo": {"rows": {}}})
    assert cli.main(["tune", "--train", "t.npz", "--out", str(tmp_path), "--ablation", "--lovo", "GE",
                     "--ablation-rows", "baseline", "focal"]) == 0
    (run,) = runs
    assert run.lovo == ["GE"] and run.ablation and not run.search and run.held is None
    assert run.ablation_rows == ["baseline", "focal"]
    assert run.vendor_of["siemens_skyra_3t"] == "SIEMENS" and run.vendor_of["ge_optima_15t"] == "GE"


def test_the_lovo_table_pairs_each_row_with_the_baseline_trained_without_the_same_vendor(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"
    spec = importlib.util.spec_from_file_location("ablation_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    log = TrialLog(tmp_path / "lovo_ablation.jsonl")
    y = {"GE": np.array([0, 1, 1, 0]), "PHILIPS": np.array([1, 1, 0])}
    right = {("baseline", "GE"): [1, 0, 0, 0], ("baseline", "PHILIPS"): [1, 1, 0],
             ("focal", "GE"): [1, 1, 1, 0], ("focal", "PHILIPS"): [0, 1, 0]}
    for trial, ((row, vendor), ok) in enumerate(right.items()):
        folder = tmp_path / f"{trial}"
        folder.mkdir()
        pred = np.where(ok, y[vendor], 1 - y[vendor])
        np.savez(folder / "outputs.npz", lovo__mean=np.eye(2)[pred], lovo__y=y[vendor])
        fig = {"n": len(ok), "right": sum(ok), "accuracy": sum(ok) / len(ok), "macro_f1": 0.5, "rare_recall": None,
               "rare_n": 0, "ece": 0.1}
        split = {"lovo_profiles": [vendor.lower()], "val_profile": "s1", "n_train": 9, "n_val": 2,
                 "n_lovo": len(ok)}
        log.write({"event": "start", "trial": trial, "name": f"{row}@{vendor}", "params": {}})
        log.write({"event": "done", "trial": trial, "loss": 1.0, "result": {
            "figures": {"lovo__mean": fig}, "folder": str(folder), "split": split, "train_seconds": 5.0}})
    lines = table.lovo_lines(tmp_path)
    focal = next(line for line in lines if line.startswith("| focal loss"))
    # GE: 3 against 1 (+2); PHILIPS: 1 against 2 (−1); pooled 4/7 against 3/7 (+1); mean of 0.75 and 0.333
    assert "3/4 (0.750) (+2, p 0.50)" in focal and "1/3 (0.333) (-1, p 1.00)" in focal
    assert "| 0.542 |" in focal and "4/7 (0.571) (+1, p 1.00)" in focal
    assert any(line.startswith("| GE | ge | s1 | 9 / 2 / 4 |") for line in lines)
