"""What the repetitions at one location prove: steady runs and label/control pairs, read from pixels."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import numbered_volume, write_classic, write_enhanced, write_mosaic

from SeriesClassifierLib.dicom.dynamics import measure, pixel_facts
from SeriesClassifierLib.dicom.slices import build_stack, read_repeats
from SeriesClassifierLib.models.bundle import ModelBundle
from SeriesClassifierLib.models.ensemble import EnsembleParams
from SeriesClassifierLib.prediction import ModelOutput, TaskPrediction
from SeriesClassifierLib.run.pipeline import decide
from SeriesClassifierLib.series import Series


def _run(levels, noise: float = 0.002, seed: int = 0) -> list[np.ndarray]:
    """A head (a disc of fixed texture on a dark background) whose brightness follows ``levels``, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 144).astype(float)
    head = disc * (0.6 + 0.4 * np.random.default_rng(99).random(disc.shape))  # the same anatomy every time
    return [1000 * level * head * (1 + noise * rng.standard_normal(head.shape)) + 5 for level in levels]


def _facts(levels, **kw) -> set[str]:
    return set(pixel_facts(measure(_run(levels, **kw))))


def test_a_bold_run_is_steady_even_as_it_drifts():
    rng = np.random.default_rng(1)
    levels = 1 + 0.0005 * np.arange(60) + 0.002 * rng.standard_normal(60)  # 3 % drift over the run
    assert _facts(levels) == {"steady_run"}


def test_label_control_pairs_are_found_with_or_without_an_m0_first():
    rng = np.random.default_rng(2)
    pairs = 1 + 0.01 * (np.arange(40) % 2 == 0) + 0.002 * rng.standard_normal(40)  # control 1 % above label
    assert _facts(pairs) == {"steady_run", "label_control_pairs"}
    assert "label_control_pairs" in _facts(np.concatenate([[2.5], pairs]))  # an M0 volume opens the run


def test_multi_delay_pairs_step_between_pairs_and_still_count():
    delays = np.repeat([1.3, 1.1, 0.97, 0.87, 0.83, 0.84], 2)  # each delay's label, then control
    levels = np.tile(delays + 0.015 * (np.arange(12) % 2), 4)
    assert "label_control_pairs" in _facts(levels)


def test_echoes_and_diffusion_weighting_prove_nothing():
    echoes = np.exp(-np.arange(8) * 5.0 / 40.0)  # T2* decay over 8 echoes: each pair falls the same way
    assert _facts(echoes) == set()
    dwi = np.concatenate([[1.0], np.full(20, 0.3)]) + 0.003 * np.random.default_rng(3).standard_normal(21)
    assert _facts(dwi) == set()
    assert _facts(np.ones(5)) == set()  # too few repetitions to call a run


def test_an_alternation_too_large_for_labelling_is_not_asl():
    dual_echo = np.tile([1.0, 0.6], 10)  # interleaved echoes: 40 % apart
    assert "label_control_pairs" not in _facts(dual_echo)


def test_a_magnitude_beside_a_phase_image_is_not_a_label_control_pair():
    rng = np.random.default_rng(5)
    magnitude = _run([1.0] * 8, seed=6)
    inside = magnitude[0] > 100
    phase = [np.where(inside, m[inside].mean() * (0.88 + 0.2 * rng.random(m.shape)), 5.0)  # ~2 % lower, no anatomy
             for m in magnitude]
    interleaved = [image for pair in zip(magnitude, phase) for image in pair]
    d = measure(interleaved)
    assert abs(d.pair_t) >= 6 and d.pair_size <= 0.15  # the levels alone would pass
    assert d.likeness < 0.5 and pixel_facts(d) == {}


def test_an_empty_image_proves_nothing():
    d = measure([np.zeros((8, 8))] * 12)
    assert pixel_facts(d) == {} and d.repetitions == 12


def test_the_stack_keeps_the_repetitions_of_the_central_location_in_time_order(tmp_path):
    n_pos, n_time = 5, 12
    volumes, positions = [], []
    for t in range(n_time):
        v = numbered_volume(n_pos)
        v[:, 0, 0] = 100 * t + np.arange(n_pos)  # marker: time * 100 + slice
        volumes.append(v)
        positions += [[0.0, 0.0, 5.0 * i] for i in range(n_pos)]
    files = write_classic(tmp_path / "run", np.concatenate(volumes), positions=positions, shuffle_seed=4)
    stack = build_stack(files)
    markers = [int(image[0, 0]) for image in read_repeats(stack.repeats)]
    assert markers == [100 * t + 2 for t in range(n_time)]  # slice 2 of 0..4, every time point in order
    assert len(read_repeats(stack.repeats, limit=4)) == 4


def test_a_mosaic_run_gives_one_tile_per_volume(tmp_path):
    volumes = [numbered_volume(4, 16, 16) for _ in range(9)]
    for t, v in enumerate(volumes):
        v[:, 0, 0] = 50 + t
    stack = build_stack(write_mosaic(tmp_path / "m", volumes, [0] * 9))
    assert [int(i[0, 0]) for i in read_repeats(stack.repeats)] == [50 + t for t in range(9)]


def test_frames_of_one_enhanced_file_at_one_location_are_its_repetitions(tmp_path):
    frames = numbered_volume(10)
    frames[:, 0, 0] = 70 + np.arange(10)
    stack = build_stack([write_enhanced(tmp_path / "e", frames, spacing=0.0)])  # every frame at one place
    markers = [int(i[0, 0]) for i in read_repeats(stack.repeats)]
    assert markers == [79 - i for i in range(10)]  # stored from the last: the file's frame order


def test_a_single_volume_has_no_repetitions(tmp_path):
    assert build_stack(write_classic(tmp_path / "t1", numbered_volume(6))).repeats == []


def test_pixel_facts_restrict_the_decision_and_say_the_images_did():
    forest = ModelOutput(model="forest", sequence=TaskPrediction.from_probabilities(
        {"T2STAR_GRE": 0.6, "FMRI_BOLD": 0.25, "PERFUSION_ASL": 0.15}))
    cnn = ModelOutput(model="cnn", sequence=TaskPrediction.from_probabilities(
        {"PERFUSION_ASL": 0.7, "DWI": 0.3}), facts={"label_control_pairs": "40 repetitions read at one location"})
    bundle = ModelBundle(ensemble=EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 0.0},
                                                 review_threshold=0.5), version="test")
    header = {"Manufacturer": "SIEMENS", "MRAcquisitionType": "2D", "ScanningSequence": ["EP"],
              "SequenceName": "*epfid2d1_64", "RepetitionTime": 4000.0, "EchoTime": 12.0}
    series = Series(series_uid="1.2.3", study_uid="1.2", files=[], header=header)
    p = decide(series, {"forest": forest, "cnn": cnn}, bundle)
    assert p.sequence.label == "PERFUSION_ASL" and p.needs_review
    assert any("the images rule out T2STAR_GRE" in r and "labelled and control" in r for r in p.reasons)


@pytest.mark.torch
def test_the_cnn_output_is_restricted_by_what_the_run_proves(tmp_path):
    from SeriesClassifierLib.models.cnn import with_pixel_facts

    n_pos = 3
    levels = 1 + 0.01 * (np.arange(16) % 2 == 0)
    images = np.concatenate([np.stack([level * numbered_volume(n_pos)[i] for i in range(n_pos)])
                             for level in levels])
    positions = [[0.0, 0.0, 5.0 * i] for i in range(n_pos)] * len(levels)
    stack = build_stack(write_classic(tmp_path / "asl", images * 10, positions=positions))
    out = ModelOutput(model="cnn", sequence=TaskPrediction.from_probabilities(
        {"DWI": 0.5, "T2_2D": 0.3, "PERFUSION_ASL": 0.2}), reason="8 slice(s) of 3")
    out = with_pixel_facts(out, stack)
    assert out.sequence.label == "PERFUSION_ASL" and out.sequence.probability == pytest.approx(1.0)
    assert set(out.facts) == {"label_control_pairs", "steady_run"}
    assert "the images rule out DWI" in out.reason
    already = ModelOutput(model="cnn", sequence=TaskPrediction.from_probabilities({"PERFUSION_ASL": 0.9, "DWI": 0.1}))
    already = with_pixel_facts(already, stack)
    assert already.sequence.probabilities["PERFUSION_ASL"] == pytest.approx(0.9)  # an allowed answer stands
    assert "the images show steady_run and label_control_pairs (16 repetitions read" in already.reason


@pytest.mark.torch
def test_a_run_that_cannot_be_measured_leaves_the_answer_and_says_why(tmp_path, monkeypatch):
    from SeriesClassifierLib.dicom import dynamics
    from SeriesClassifierLib.models import cnn

    def broken(refs):
        raise MemoryError("no room for the run")

    monkeypatch.setattr(dynamics, "read_repeats", broken)
    volumes = [numbered_volume(3) for _ in range(8)]
    stack = build_stack(write_classic(tmp_path / "run", np.concatenate(volumes),
                                      positions=[[0.0, 0.0, 5.0 * i] for i in range(3)] * 8))
    answer = TaskPrediction.from_probabilities({"DWI": 0.6, "FMRI_BOLD": 0.4})
    out = cnn.with_pixel_facts(ModelOutput(model="cnn", sequence=answer, reason="8 slice(s) of 3"), stack)
    assert out.sequence == answer and out.facts == {}
    assert "repetitions not measured (MemoryError: no room for the run)" in out.reason


def test_a_steady_run_yields_to_a_header_that_says_diffusion():
    """A diffusion run exported without its b = 0 images is steady too: its header, which says so, wins."""
    forest = ModelOutput(model="forest", sequence=TaskPrediction.from_probabilities({"DWI": 0.8, "ADC": 0.2}))
    cnn = ModelOutput(model="cnn", sequence=TaskPrediction.from_probabilities({"FMRI_BOLD": 0.6, "DWI": 0.4}),
                      facts={"steady_run": "48 repetitions read at one location, in-head mean varies 1.2 %"})
    bundle = ModelBundle(ensemble=EnsembleParams(method="log_linear", weights={"forest": 1.0, "cnn": 0.0},
                                                 review_threshold=0.5), version="test")
    header = {"Manufacturer": "SIEMENS", "MRAcquisitionType": "2D", "ScanningSequence": ["EP"],
              "SequenceName": "*ep_b1000#12", "BValues": [1000.0], "RepetitionTime": 8000.0, "EchoTime": 90.0}
    p = decide(Series(series_uid="1.2.4", study_uid="1.2", files=[], header=header), {"forest": forest, "cnn": cnn},
               bundle)
    assert p.sequence.label == "DWI"
    assert not any("rule out" in r for r in p.reasons)
