"""The warm worker: one process serves classification and Grad-CAM requests; Cancel stops the real process."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dicom_factory import write_series

from SeriesClassifierLib.run.worker_session import SubprocessTransport, WorkerSession

ENGINE_DIR = Path(__file__).resolve().parent.parent / "SeriesClassifier"
LAUNCHER = "import subprocess, sys; raise SystemExit(subprocess.call(sys.argv[1:]))"  # as PythonSlicer

SERVE_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {testing!r})
    from worker_stubs import stub_bundle
    from SeriesClassifierLib.run import worker

    def fake_gradcam(bundle, series, head, target):
        g = series.geometry
        return np.full((len(g.positions), g.rows, g.columns), 0.5, np.float32), g, target or "T2_2D"

    worker._gradcam = fake_gradcam
    bundle = stub_bundle(delay={delay})
    bundle.cnn = object()
    loads = []

    def load(models, load_cnn=True):
        loads.append(1)
        print("loading models", len(loads), file=sys.stderr)
        return bundle

    worker.load = load
    raise SystemExit(worker.main(sys.argv[1:], bundle=bundle))
    """
)


@pytest.fixture()
def series_dir(tmp_path):
    root = tmp_path / "study"
    uids = [write_series(root / f"s{i}", "T2_2D", n_slices=2, number=i + 1) for i in range(6)]
    return root, uids


def session_for(tmp_path: Path, delay: float, launcher: bool = False) -> WorkerSession:
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT.format(testing=str(Path(__file__).parent), delay=delay))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE_DIR), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, "-u", str(script), "--serve"]
    if launcher:
        args = [sys.executable, "-c", LAUNCHER, *args]
    return WorkerSession(SubprocessTransport(), args, env)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped by the launcher) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_one_process_serves_classification_then_gradcam_clicks(series_dir, tmp_path):
    root, uids = series_dir
    session = session_for(tmp_path, delay=0.0)
    events, done = [], []
    rid = session.request("classify", {"source": str(root), "use_cnn": False}, events.append,
                          lambda ok, cancelled, msg: done.append((ok, cancelled)))
    assert session.wait(rid, 120) and done == [(True, False)]
    assert sum(e["type"] == "prediction" for e in events) == 6
    pid = session.pid
    for uid in uids[:3]:  # three clicks: no new process, the answer is the heat map of that series
        cams = []
        options = {"source": str(root), "series_uids": [uid], "gradcam_dir": str(tmp_path / "g")}
        rid = session.request("gradcam", options, cams.append)
        assert session.wait(rid, 60)
        (cam,) = [e for e in cams if e["type"] == "gradcam"]
        assert cam["series_uid"] == uid and Path(cam["path"]).is_file()
    assert session.starts == 1 and session.pid == pid and session.isRunning()
    session.quit()
    deadline = time.monotonic() + 30
    while session.isRunning() and time.monotonic() < deadline:
        session.transport.pump(0.05)
    assert not session.isRunning()


def test_a_gradcam_click_during_classification_is_served_between_series(series_dir, tmp_path):
    root, uids = series_dir
    session = session_for(tmp_path, delay=0.4)
    order = []
    classify = session.request("classify", {"source": str(root), "use_cnn": False},
                               lambda e: order.append(("classify", e["type"])))
    while not any(t == "prediction" for _, t in order):
        session.transport.pump(0.05)
    first = session.request("gradcam", {"source": str(root), "series_uids": [uids[0]], "gradcam_dir": str(tmp_path)},
                            lambda e: order.append(("stale", e["type"])),
                            lambda *a: order.append(("stale", "on_done")))
    second = session.request("gradcam", {"source": str(root), "series_uids": [uids[5]], "gradcam_dir": str(tmp_path)},
                             lambda e: order.append(("gradcam", e["type"])))
    assert session.wait(second, 60)
    assert ("gradcam", "gradcam") in order and ("classify", "done") not in order  # not after the whole study
    assert not [o for o in order if o[0] == "stale"]  # superseded: never reaches the panel
    assert session.wait(classify, 60) and session.wait(first, 1)
    session.quit()


@pytest.mark.parametrize("launcher", [False, True], ids=["direct", "through-launcher"])
def test_cancel_before_the_first_event_stops_the_real_python_process(series_dir, tmp_path, launcher):
    root, _ = series_dir
    session = session_for(tmp_path, delay=1.0, launcher=launcher)
    seen, done = [], []
    session.on_worker_event = seen.append
    rid = session.request("classify", {"source": str(root), "use_cnn": False}, None,
                          lambda ok, cancelled, msg: done.append(cancelled))
    session.cancel()  # at once: the worker has not said its PID yet
    assert session.pid == 0
    assert session.wait(rid, 60)
    worker_pid = next(e["pid"] for e in seen if e["type"] == "worker")
    assert done == [True]
    deadline = time.monotonic() + 10
    while (session.isRunning() or _alive(worker_pid)) and time.monotonic() < deadline:
        session.transport.pump(0.05)
    assert not _alive(worker_pid), "the Python worker outlived the cancel"
    assert not session.isRunning()


def test_the_worker_ends_when_its_input_closes(tmp_path):
    session = session_for(tmp_path, delay=0.0, launcher=True)
    session._start()
    seen = []
    session.on_worker_event = seen.append
    while not any(e["type"] == "ready" for e in seen):
        session.transport.pump(0.05)
    pid = seen[-1]["pid"]
    session.transport.close_input()  # the module (or the launcher) went away
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        session.transport.pump(0.05)
    assert not _alive(pid)
