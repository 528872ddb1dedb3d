"""Streaming, partitions and scale-out (run/stream.py, ``classify --workers/--scheduler``), and a cold start's imports.

What is asserted is behaviour: the same predictions, in the same order, whether the series run in this
process, in local worker processes or on a Dask cluster; studies never split; results written as they
come; and which heavy libraries a run imports. Timings are the benchmark's (benchmarks/performance.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import SAGITTAL, recipe_headers, write_classic_series

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.labels.results import write_results
from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.prediction import SeriesPrediction
from SeriesClassifierLib.run.pipeline import classify, resolve_refs
from SeriesClassifierLib.run.stream import classify_stream, in_source_order, study_partitions
from SeriesClassifierLib.series import SeriesRef

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sklearn", "torch", "scipy", "skops", "matplotlib", "distributed")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Two studies whose series interleave in folder order (a1 a2 b1 b2 c), one of them post-contrast."""
    root = tmp_path_factory.mktemp("archive")
    study_a, study_b = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    layout = [("a1", "T1_3D_PRE", study_a, {}), ("a2", "FLAIR_2D", study_a, {}), ("b1", "DWI", study_b, {}),
              ("b2", "T2_2D", study_b, {}), ("c", "T1_3D_PRE", study_a, {"ContrastBolusAgent": "Gadovist"})]
    for i, (folder, cls, study, extra) in enumerate(layout):
        headers = dict(recipe_headers(cls, np.random.default_rng(i)), **extra)
        write_classic_series(root / folder, headers, n=4, iop=SAGITTAL, study_uid=study, description=f"s {cls}")
    return root


def _dicts(predictions) -> list[dict]:
    return [p.to_dict() for p in predictions]


def test_partitions_hold_whole_studies_in_first_appearance_order():
    refs = [SeriesRef(series_uid=f"s{i}", files=[], study_uid=study) for i, study in enumerate("ABAcB")]
    parts = study_partitions(refs, min_series=1)
    assert [[i for i, _ in p] for p in parts] == [[0, 2], [1, 4], [3]]
    assert [[i for i, _ in p] for p in study_partitions(refs, min_series=3)] == [[0, 2, 1, 4], [3]]


def test_results_come_out_in_source_order_whatever_order_partitions_finish():
    made = {i: SeriesPrediction(series_uid=f"s{i}") for i in range(6)}
    chunks = [[(3, made[3]), (5, made[5])], [(0, made[0])], [(4, made[4]), (1, made[1]), (2, made[2])]]
    assert [p.series_uid for p in in_source_order(chunks)] == [f"s{i}" for i in range(6)]


def test_headers_only_stream_equals_classify_in_one_process_and_in_workers(archive):
    bundle = load_bundle(load_cnn=False)
    reference = _dicts(classify(archive, bundle, use_cnn=False))
    assert [p["series_description"] for p in reference] == ["s T1_3D_PRE", "s FLAIR_2D", "s DWI", "s T2_2D",
                                                             "s T1_3D_PRE"]
    seen = []
    streamed = _dicts(classify_stream(archive, bundle, use_cnn=False, progress=lambda d, t, u: seen.append((d, t))))
    assert streamed == reference
    assert seen == [(i, 5) for i in range(1, 6)]
    assert _dicts(classify_stream(archive, None, use_cnn=False, workers=2)) == reference


@pytest.mark.torch
def test_full_ensemble_in_workers_equals_one_process_with_the_same_threads(archive):
    torch = pytest.importorskip("torch")
    bundle = load_bundle()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the CNN's float32 sums depend on the thread count: the same in both runs
        reference = _dicts(classify(archive, bundle))
        in_process = _dicts(classify_stream(archive, bundle, threads=1))
    finally:
        torch.set_num_threads(before)
    assert all("cnn" in p["models"] for p in reference)
    assert in_process == reference
    assert _dicts(classify_stream(archive, bundle, workers=2, threads=1)) == reference


def test_dask_local_cluster_gives_the_single_process_results(archive):
    distributed = pytest.importorskip("distributed")
    reference = _dicts(classify(archive, load_bundle(load_cnn=False), use_cnn=False))
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        on_cluster = _dicts(classify_stream(archive, None, use_cnn=False, scheduler=client))
        # The address form, as ``--scheduler tcp://...`` passes it: a client of its own, closed after.
        by_address = _dicts(classify_stream(archive, None, use_cnn=False, scheduler=cluster.scheduler_address))
    assert on_cluster == reference
    assert by_address == reference


def test_cli_workers_write_the_same_file_as_one_process(archive, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    # each run its own label store: both classify every series (classify once would reuse the first's)
    assert main(["classify", str(archive), "--out", str(one), "--no-cnn", "--quiet",
                 "--store", str(tmp_path / "one.sqlite")]) == 0
    assert main(["classify", str(archive), "--out", str(two), "--no-cnn", "--quiet", "--workers", "2",
                 "--store", str(tmp_path / "two.sqlite")]) == 0
    assert one.read_bytes() == two.read_bytes()
    assert len(json.loads(one.read_text())["series"]) == 5
    # and what the workers classified is in the store: a third run reuses it, the same file again
    three = tmp_path / "three.json"
    assert main(["classify", str(archive), "--out", str(three), "--no-cnn", "--quiet", "--workers", "2",
                 "--store", str(tmp_path / "two.sqlite")]) == 0
    assert three.read_bytes() == one.read_bytes()


def test_cli_workers_classify_only_what_the_store_lacks(archive, tmp_path, capsys):
    import shutil

    copy = tmp_path / "archive"
    shutil.copytree(archive, copy, ignore=shutil.ignore_patterns(".seriesclassifier"))
    store = str(tmp_path / "s.sqlite")
    assert main(["classify", str(copy), "--no-cnn", "--store", store, "--workers", "2"]) == 0
    assert "5 classified now" in capsys.readouterr().err
    shutil.rmtree(copy / "b2")
    b2 = next(iter(sorted((archive / "b2").glob("*.dcm"))))
    (copy / "b2").mkdir()
    shutil.copy(b2, copy / "b2" / b2.name)  # the series changed (one file of four left)
    out = tmp_path / "r.csv"
    assert main(["classify", str(copy), "--no-cnn", "--store", store, "--workers", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "classifying 1 series (4 unchanged, from the store)" in err and "1 classified now" in err
    assert out.read_text().count("\n") == 6 and not (tmp_path / "r.csv.partial").exists()


def test_streamed_json_is_laid_out_as_json_dumps(tmp_path):
    predictions = [SeriesPrediction(series_uid=f"s{i}", n_images=i) for i in range(3)]
    for items in (predictions, []):
        out = tmp_path / "r.json"
        assert write_results(iter(items), out) == len(items)
        expected = {"series": [dict(p.to_dict(), outcome=p.outcome, predicted_top3=[]) for p in items]}
        assert out.read_text() == json.dumps(expected, indent=1)


def test_results_are_written_before_the_stream_ends(tmp_path):
    """A row per prediction as it comes: nothing waits for the whole archive. The rows go to a .partial
    beside the file, renamed onto it at the end: never half a results file."""
    out = tmp_path / "r.csv"
    partial = tmp_path / "r.csv.partial"

    def predictions():
        yield SeriesPrediction(series_uid="first")
        yield SeriesPrediction(series_uid="second")

    lines_seen = []

    def watching():
        for p in predictions():
            yield p
            assert not out.exists()
            lines_seen.append(partial.read_text().count("\n") if partial.exists() else 0)

    write_results(watching(), out)
    assert out.read_text().count("first") == 1 and not partial.exists()
    assert lines_seen[0] == 2  # header and first row on disk before the second prediction was asked for


def test_a_stopped_stream_leaves_the_partial_file_not_a_half_results_file(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("the previous results")

    def stopped():
        yield SeriesPrediction(series_uid="first")
        raise OSError("worker lost")

    with pytest.raises(OSError, match="worker lost"):
        write_results(stopped(), out)
    assert out.read_text() == "the previous results"
    assert '"series_uid": "first"' in (tmp_path / "r.json.partial").read_text()


def _imports_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('imported:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=str(ROOT)).stdout.strip().splitlines()[-1]
    return [m for m in out.removeprefix("imported:").split(",") if m]


def test_an_empty_run_and_version_import_no_heavy_library(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "r.csv"
    run = f"from SeriesClassifierLib.commands.cli import main; main(['classify', {str(tmp_path / 'empty')!r}, " \
          f"'--out', {str(out)!r}, '--quiet'])"
    assert _imports_after(run) == []
    assert out.read_text().startswith("series_uid,")
    # the Slicer worker process starts with these too; scikit-learn is for training only
    assert _imports_after("import SeriesClassifierLib.commands.cli, SeriesClassifierLib.run.stream, "
                          "SeriesClassifierLib.run.worker, SeriesClassifierLib.models.bundle") == []


def test_headers_only_classification_needs_neither_scikit_learn_nor_torch(archive, tmp_path):
    run = f"from SeriesClassifierLib.commands.cli import main; main(['classify', {str(archive)!r}, " \
          f"'--out', {str(tmp_path / 'r.csv')!r}, '--no-cnn', '--quiet'])"
    assert _imports_after(run) == []
    assert (tmp_path / "r.csv").read_text().count("\n") == 6


def test_workers_need_a_models_folder():
    from SeriesClassifierLib.models.bundle import ModelBundle

    with pytest.raises(ValueError, match="folder"):
        list(classify_stream([SeriesRef(series_uid="x", files=[])], ModelBundle(), workers=1))



def test_a_partition_asks_the_forest_once_and_falls_back_to_one_by_one_when_that_fails(archive):
    bundle = load_bundle(load_cnn=False)
    reference = _dicts(classify(archive, bundle, use_cnn=False))
    calls = []

    class Counting:
        def __init__(self, forest, fail_batches):
            self.forest, self.fail_batches = forest, fail_batches

        def predict_many(self, series):
            calls.append(len(series))
            if self.fail_batches and len(series) > 1:
                raise ValueError("one odd series")
            return self.forest.predict_many(series)

        def predict(self, series):
            return self.predict_many([series])[0]

    from dataclasses import replace

    for fail in (False, True):
        calls.clear()
        counted = replace(bundle, forest=Counting(bundle.forest, fail))
        assert _dicts(classify_stream(archive, counted, use_cnn=False)) == reference
        parts = [len(p) for p in study_partitions(resolve_refs(archive))]
        # one call per partition; when the batch fails, each series of it once more on its own
        expected = [c for n in parts for c in ([n] + [1] * n if fail and n > 1 else [n])]
        assert calls == expected


def test_a_scheduler_out_of_reach_is_an_error_message_not_a_traceback(archive, tmp_path, capsys, monkeypatch):
    import SeriesClassifierLib.run.stream as stream

    def unreachable(partitions, scheduler, task_args):
        raise OSError(f"Timed out trying to connect to {scheduler}")
        yield  # a generator, as the real one

    monkeypatch.setattr(stream, "_dask_results", unreachable)
    code = main(["classify", str(archive), "--out", str(tmp_path / "r.csv"), "--no-cnn", "--quiet",
                 "--store", str(tmp_path / "s.sqlite"), "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "classification stopped: OSError: Timed out trying to connect to tcp://127.0.0.1:1" in err
