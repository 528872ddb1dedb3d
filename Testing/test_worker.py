"""The worker process the Slicer module runs: manifest, JSON-lines protocol, per-series errors, SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import write_series
from worker_stubs import stub_bundle

from SeriesClassifierLib.prediction import SeriesPrediction
from SeriesClassifierLib.run import worker
from SeriesClassifierLib.series import Geometry

ENGINE_DIR = Path(worker.__file__).resolve().parent.parent.parent  # SeriesClassifier/ (worker is in run/)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("study")
    uids = {
        "T2_2D": write_series(root / "s1", "T2_2D", number=1),
        "FLAIR_2D": write_series(root / "s2", "FLAIR_2D", iop=(0, 1, 0, 0, 0, -1), number=2),
        "BROKEN": write_series(root / "s3", "BROKEN", number=3),
    }
    return root, uids


def args_for(*argv: str) -> argparse.Namespace:
    return worker.build_parser().parse_args(list(argv))


# ----------------------------------------------------------------------------------------------- pieces


def test_manifest_round_trip_keeps_gone_files_as_missing(tmp_path, study):
    root, uids = study
    files = sorted(str(p) for p in (root / "s1").glob("*.dcm"))
    path = worker.write_manifest(
        tmp_path / "m.json",
        [{"series_uid": uids["T2_2D"], "study_uid": "1.2", "patient_id": "P1", "series_description": "x",
          "files": files + [str(tmp_path / "gone.dcm")]}],
        source="/db",
    )
    assert worker.is_manifest(path)
    (ref,) = worker.read_manifest(path)
    assert ref.series_uid == uids["T2_2D"] and ref.study_uid == "1.2" and ref.source == "/db"
    assert [str(f) for f in ref.files] == files
    assert ref.missing == [tmp_path / "gone.dcm"]


def test_other_json_is_not_a_manifest(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"series": []}))
    assert not worker.is_manifest(other)
    with pytest.raises(ValueError, match="not a SeriesClassifier series manifest"):
        worker.read_manifest(other)
    with pytest.raises(ValueError, match="without series_uid"):
        worker.write_manifest(tmp_path / "m.json", [{"files": []}])


def test_event_reader_reassembles_chunks_and_wraps_stray_text():
    reader = worker.EventReader()
    line = json.dumps({"type": "progress", "done": 1, "total": 2}) + "\n"
    events = []
    for i in range(0, len(line), 5):  # QProcess delivers arbitrary chunks
        events += reader.feed(line[i:i + 5].encode())
    assert events == [{"type": "progress", "done": 1, "total": 2}]
    assert reader.feed(b'Warning: something\n\n{"type": "do') == [{"type": "log", "message": "Warning: something"}]
    assert reader.feed(b'ne"}') == []
    assert reader.flush() == [{"type": "done"}]
    assert reader.feed("[1, 2]\n") == [{"type": "log", "message": "[1, 2]"}]


def test_command_round_trips_through_the_parser():
    cmd = worker.command("PythonSlicer", "/tmp/m.json", series_uids=["1.2", "1.3"], models="/m", gradcam_dir="/g",
                         gradcam_head="orientation", gradcam_class="SAGITTAL", gradcam_only=True, use_cnn=False,
                         device="cpu", threads=2)
    assert cmd[:4] == ["PythonSlicer", "-u", "-m", "SeriesClassifierLib.run.worker"]
    args = worker.build_parser().parse_args(cmd[4:])
    assert args.source == "/tmp/m.json" and args.series_uids == ["1.2", "1.3"] and args.models == "/m"
    assert (args.gradcam_dir, args.gradcam_head, args.gradcam_class) == ("/g", "orientation", "SAGITTAL")
    assert args.gradcam_only and args.no_cnn and args.device == "cpu" and args.threads == 2
    plain = worker.build_parser().parse_args(worker.command("py", "/d")[4:])
    assert not plain.no_cnn and plain.series_uids is None and plain.gradcam_head == "sequence"


def test_heatmap_file_round_trip(tmp_path):
    geometry = Geometry(rows=4, columns=3, pixel_spacing=(0.5, 0.7), orientations=[(1, 0, 0, 0, 0.8, 0.6)],
                        positions=[(0, 0, 0), (0, -3, 4)], slice_thickness=5.0)
    heat = np.random.default_rng(0).random((2, 4, 3)).astype(np.float32)
    path = worker.heatmap_path(tmp_path, "1.2.3", "sequence", "T2_2D")
    worker.save_heatmap(path, heat, geometry, series_uid="1.2.3", head="sequence", target="T2_2D")
    got, geometry2, meta = worker.load_heatmap(path)
    np.testing.assert_array_equal(got, heat)
    assert geometry2 == geometry
    assert meta == {"series_uid": "1.2.3", "head": "sequence", "target": "T2_2D"}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


# ----------------------------------------------------------------------------------------------- run()


def test_run_streams_one_prediction_per_series_and_reports_failures(study, tmp_path):
    root, uids = study
    manifest = worker.write_manifest(
        tmp_path / "m.json",
        [{"series_uid": uid, "files": sorted(str(p) for p in (root / d).glob("*.dcm"))}
         for uid, d in ((uids["T2_2D"], "s1"), (uids["BROKEN"], "s3"), (uids["FLAIR_2D"], "s2"))],
    )
    events: list[dict] = []
    code = worker.run(args_for(str(manifest), "--series-uids", uids["FLAIR_2D"], uids["BROKEN"], uids["T2_2D"],
                               "1.9.9.9"), events.append, bundle=stub_bundle())
    assert code == worker.EXIT_OK
    kinds = [e["type"] for e in events]
    assert kinds[0] == "error" and events[0]["series_uid"] == "1.9.9.9"  # asked for, not in the source
    assert kinds[1] == "start" and events[1]["total"] == 3
    predictions = [worker.prediction_from_event(e) for e in events if e["type"] == "prediction"]
    assert all(isinstance(p, SeriesPrediction) for p in predictions)
    # the requested order, each as soon as it finished, the broken one included with its error
    assert [p.series_uid for p in predictions] == [uids["FLAIR_2D"], uids["BROKEN"], uids["T2_2D"]]
    assert predictions[0].sequence.label == "FLAIR_2D" and predictions[2].sequence.label == "T2_2D"
    assert "cannot classify this one" in predictions[1].error
    assert predictions[0].model_version == "stub-1"
    progress = [(e["done"], e["total"]) for e in events if e["type"] == "progress"]
    assert progress == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert events[-1] == {"type": "done", "classified": 3, "errors": 1, "total": 3}


def test_a_selection_is_read_with_its_study_siblings_but_only_it_is_classified(study, tmp_path, monkeypatch):
    import SeriesClassifierLib.run.pipeline as pipeline

    root, uids = study
    entries = [{"series_uid": uid, "study_uid": "1.2.study", "files": sorted(str(p) for p in (root / d).glob("*.dcm")),
                "context_only": uid != uids["T2_2D"]}
               for uid, d in ((uids["T2_2D"], "s1"), (uids["FLAIR_2D"], "s2"), (uids["BROKEN"], "s3"))]
    manifest = worker.write_manifest(tmp_path / "m.json", entries)
    refs, context, unknown = worker.select_series(manifest)
    assert [r.series_uid for r in refs] == [uids["T2_2D"]] and len(context) == 3 and unknown == []
    pools = []
    real = pipeline.read_all_series
    monkeypatch.setattr(pipeline, "read_all_series", lambda pool: pools.append(len(pool)) or real(pool))
    events: list[dict] = []
    assert worker.run(args_for(str(manifest)), events.append, bundle=stub_bundle()) == 0
    assert pools == [3]  # the forest's study context saw the siblings
    assert [e["series_uid"] for e in events if e["type"] == "prediction"] == [uids["T2_2D"]]


def test_run_reads_a_folder_and_refuses_a_missing_source(study, tmp_path):
    root, uids = study
    events: list[dict] = []
    assert worker.run(args_for(str(root), "--no-cnn"), events.append, bundle=stub_bundle()) == 0
    got = {e["series_uid"] for e in events if e["type"] == "prediction"}
    assert got == set(uids.values())
    events.clear()
    assert worker.run(args_for(str(tmp_path / "nowhere")), events.append, bundle=stub_bundle()) == worker.EXIT_USAGE
    assert events == [{"type": "error", "message": f"{tmp_path / 'nowhere'}: no such file or folder"}]


def test_gradcam_maps_are_written_for_the_predicted_class(study, tmp_path, monkeypatch):
    root, uids = study
    calls = []

    def fake_gradcam(bundle, series, head, target):
        calls.append((series.series_uid, head, target))
        g = series.geometry
        return np.full((len(g.positions), g.rows, g.columns), 0.5, np.float32), g, target

    monkeypatch.setattr(worker, "_gradcam", fake_gradcam)
    bundle = stub_bundle()
    bundle.cnn = object()  # present: the worker only hands it to Grad-CAM (the stub forest does the predicting)
    events: list[dict] = []
    args = args_for(str(root / "s1"), "--gradcam-dir", str(tmp_path / "cams"))
    assert worker.run(args, events.append, bundle=bundle) == 0
    (cam,) = [e for e in events if e["type"] == "gradcam"]
    assert cam["series_uid"] == uids["T2_2D"] and cam["class"] == "T2_2D" and cam["head"] == "sequence"
    heat, geometry, meta = worker.load_heatmap(cam["path"])
    assert heat.shape == (3, 4, 4) and geometry.rows == 4 and meta["target"] == "T2_2D"
    assert calls == [(uids["T2_2D"], "sequence", "T2_2D")]
    # a class asked for explicitly, without classifying again
    events.clear()
    args = args_for(str(root / "s1"), "--gradcam-dir", str(tmp_path / "cams"), "--gradcam-only",
                    "--gradcam-head", "sequence", "--gradcam-class", "FLAIR_2D")
    assert worker.run(args, events.append, bundle=bundle) == 0
    assert [e["type"] for e in events] == ["start", "progress", "gradcam", "progress", "done"]
    assert Path(events[2]["path"]).name.endswith("_sequence_FLAIR_2D.npz")


# ----------------------------------------------------------------------------------------------- real process


SCRIPT = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    sys.path.insert(0, {testing!r})
    from worker_stubs import stub_bundle
    from SeriesClassifierLib.run import worker
    raise SystemExit(worker.main(sys.argv[1:], bundle=stub_bundle(delay={delay}, noisy=True)))
    """
)


# PythonSlicer is a launcher: it runs the interpreter as a child with the same stdout and returns its exit code.
LAUNCHER = "import subprocess, sys; raise SystemExit(subprocess.call(sys.argv[1:]))"


def _start(tmp_path: Path, source: Path, delay: float, launcher: bool = False) -> subprocess.Popen:
    script = tmp_path / "run_worker.py"
    script.write_text(SCRIPT.format(testing=str(Path(__file__).parent), delay=delay))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE_DIR), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-u", str(script), str(source), "--no-cnn"]
    if launcher:
        cmd = [sys.executable, "-c", LAUNCHER, *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)


def test_process_stdout_is_only_json_lines(study, tmp_path):
    root, uids = study
    proc = _start(tmp_path, root, delay=0.0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    events = [json.loads(line) for line in lines]  # every line parses: the library's print went elsewhere
    assert [e["type"] for e in events].count("prediction") == 3
    assert events[-1]["type"] == "done"
    assert b"a library printing to stdout" in err


@pytest.mark.parametrize("launcher", [False, True], ids=["direct", "through-launcher"])
def test_sigterm_stops_the_worker_cleanly(tmp_path, study, launcher):
    """The module signals the PID of the worker's first event; through a launcher too (as PythonSlicer)."""
    root, _ = study
    many = tmp_path / "many"
    for i in range(12):
        write_series(many / f"s{i}", "T2_2D", n_slices=1, number=i + 1)
    proc = _start(tmp_path, many, delay=0.5, launcher=launcher)
    reader, events = worker.EventReader(), []
    while not any(e["type"] == "prediction" for e in events):
        chunk = proc.stdout.readline()
        assert chunk, proc.stderr.read().decode()
        events += reader.feed(chunk)
    pid = events[0]["pid"]
    assert events[0]["type"] == "worker" and (pid != proc.pid) == launcher
    os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    events += reader.feed(out) + reader.flush()
    assert proc.returncode == worker.EXIT_CANCELLED, err.decode()
    assert events[-1]["type"] == "cancelled"
    assert sum(e["type"] == "prediction" for e in events) < 12
    assert b"Traceback" not in err


# ----------------------------------------------------------------------------------------------- real models


@pytest.mark.torch
def test_worker_process_with_forest_and_cnn_writes_gradcam_on_the_series_grid(tmp_path):
    """As the module runs it: a real process, a real bundle (toy forest + untrained CNN), Grad-CAM files."""
    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.models.forest import ForestModel
    from SeriesClassifierLib.slicer import mrml

    slicer = pytest.importorskip("slicer")
    study = tmp_path / "study"
    oblique = (0.866, 0.5, 0.0, -0.354, 0.612, 0.707)  # 45° about the row axis after 30° in-plane
    uids = [write_series(study / "ax", "T2_2D", n_slices=5, size=32, number=1),
            write_series(study / "obl", "FLAIR_2D", n_slices=6, iop=oblique, size=24, number=2)]
    series = [read_series(r) for r in iter_series_refs(study)]
    models = tmp_path / "models"
    ForestModel(n_estimators=5).fit(series, {"sequence": [s.series_description for s in series]}).save(
        models, extra={"version": "toy"})
    CnnModel.new().save(models)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE_DIR), os.environ.get("PYTHONPATH", "")]))
    cmd = worker.command(sys.executable, study, models=models, gradcam_dir=tmp_path / "cams", device="cpu",
                         threads=1)
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    reader = worker.EventReader()
    events = reader.feed(proc.stdout) + reader.flush()
    assert all(e["type"] != "log" for e in events), "stdout carried something that is not an event"
    assert events[0] == {"type": "worker", "pid": events[0]["pid"]} and events[0]["pid"] > 0
    assert events[1]["type"] == "start" and events[1]["device"].startswith("cpu")
    predictions = {e["series_uid"]: worker.prediction_from_event(e) for e in events if e["type"] == "prediction"}
    assert set(predictions) == set(uids)
    for p in predictions.values():
        assert set(p.models) == {"forest", "cnn"} and p.sequence is not None and not p.error
    cams = {e["series_uid"]: e for e in events if e["type"] == "gradcam"}
    assert set(cams) == set(uids)
    by_uid = {s.series_uid: s for s in series}
    scene = slicer.vtkMRMLScene()
    for uid, cam in cams.items():
        assert (cam["head"], cam["class"]) == ("sequence", predictions[uid].sequence.label)  # the predicted class
        heat, geometry, meta = worker.load_heatmap(cam["path"])
        g = by_uid[uid].geometry
        assert heat.shape == (len(g.positions), g.rows, g.columns)
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        np.testing.assert_allclose(geometry.positions, g.positions)
        np.testing.assert_allclose(mrml.ijk_to_ras(geometry), mrml.ijk_to_ras(g))
        node = mrml.create_overlay_volume(scene, heat, geometry)  # what the module shows
        assert node.GetImageData().GetDimensions() == (g.columns, g.rows, len(g.positions))
