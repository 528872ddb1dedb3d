"""No Python traceback reaches a user from any command on any bad input (issue 17, item 8).

Every command is run on each bad-input kind the tests can build cheaply; each run must end in an exit code
(0 when the command could still do its job, otherwise non-zero with a message), never an exception.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from dicom_factory import write_series

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.run.worker import main as worker_main


def _inputs(root: Path) -> dict[str, Path]:
    """Bad inputs, each a path a user could hand to a command."""
    kinds = {}
    kinds["missing"] = root / "does-not-exist"
    kinds["zeros"] = root / "zeros.dcm"
    with open(kinds["zeros"], "wb") as f:
        f.truncate(1 << 20)
    kinds["text"] = root / "notes.txt"
    kinds["text"].write_text("=1+1\n\x1b[31m")
    kinds["broken-db"] = root / "db"
    kinds["broken-db"].mkdir()
    (kinds["broken-db"] / "ctkDICOM.sql").write_bytes(b"SQLite format 3\x00" + b"\xee" * 2000)
    kinds["foreign-sqlite"] = root / "foreign.sqlite"
    with sqlite3.connect(kinds["foreign-sqlite"]) as c:
        c.execute("CREATE TABLE t (x)")
    c.close()
    kinds["empty-file"] = root / "empty.sqlite"
    kinds["empty-file"].write_bytes(b"")
    kinds["folder"] = root / "a-folder"
    kinds["folder"].mkdir()
    return kinds


def _commands(bad: Path, good: Path, out_dir: Path) -> dict[str, list[str]]:
    out = str(out_dir / "out.csv")
    return {
        "classify": ["classify", str(bad), "--out", out, "--no-cnn", "--quiet"],
        "classify-out": ["classify", str(good), "--out", str(bad / "x.csv"), "--no-cnn", "--quiet"],
        "evaluate": ["evaluate", str(good), "--labels", str(bad), "--out", str(out_dir / "ev"), "--no-cnn"],
        "label": ["label", "1.2.3", "--sequence", "PD", "--store", str(bad)],
        "label-import": ["label", "--import", str(bad), "--store", str(out_dir / "s.sqlite")],
        "review": ["review", "--store", str(bad)],
        "export": ["export", "--store", str(bad), "--format", "csv", "--out", out],
        "report": ["report", str(bad), "--out", str(out_dir / "r.html")],
        "train": ["train", "--data", str(bad), "--labels", str(bad), "--out", str(out_dir / "m"), "--no-cnn"],
        "synth": ["synth", str(bad / "sub"), "--headers-only"],
        "tune": ["tune", "--train", str(bad), "--held", str(bad), "--out", str(out_dir / "t")],
    }


KINDS = ["missing", "zeros", "text", "broken-db", "foreign-sqlite", "empty-file", "folder"]
COMMANDS = ["classify", "classify-out", "evaluate", "label", "label-import", "review", "export", "report", "train",
            "synth", "tune"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    write_series(root / "s", "T2", n_slices=2, size=4)
    return root


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_on_every_bad_input_ends_in_an_exit_code(tmp_path, good, capsys, monkeypatch, command, kind):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("q\n"))
    bad = _inputs(tmp_path)[kind]
    argv = _commands(bad, good, tmp_path)[command]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors are messages too
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert isinstance(code, int)
    assert code != 70, err  # the last-resort handler: a bug, not a message
    if kind in ("missing", "broken-db", "foreign-sqlite", "empty-file") and command in ("label", "review", "export"):
        assert code != 0 and err.strip(), err
    if command == "label-import":  # no input here is a labels CSV: nothing imported is a failure, not exit 0
        assert code != 0 and err.strip(), err


@pytest.mark.parametrize("manifest", [
    {"format": "seriesclassifier-series-manifest", "version": 1, "series": [{"files": []}]},
    {"format": "seriesclassifier-series-manifest", "version": 1, "series": [{"series_uid": "1", "files": "x"}]},
    {"format": "seriesclassifier-series-manifest", "version": "1", "series": []},
], ids=["no series_uid", "files not a list", "version not a number"])
def test_a_bad_worker_manifest_is_an_error_event(tmp_path, manifest, capsys):
    path = tmp_path / "selection.json"
    path.write_text(json.dumps(manifest))
    events = tmp_path / "events.jsonl"
    with open(events, "w") as out:
        code = worker_main([str(path), "--no-cnn"], out=out)
    assert code != 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert any(e["type"] == "error" and "selection.json" in e["message"] for e in lines), lines
    assert "Traceback" not in capsys.readouterr().err


def test_train_with_a_code_outside_the_vocabulary_is_told_before_any_work(tmp_path, good, capsys):
    uid = write_series(tmp_path / "data" / "s", "T2", n_slices=2, size=4)
    (tmp_path / "labels.csv").write_text(f"series_uid,sequence\n{uid},T1_MPRAGE\n")
    code = main(["train", "--data", str(tmp_path / "data"), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "m"), "--no-cnn"])
    err = capsys.readouterr().err
    assert code == 2 and "labels.csv" in err and "T1_MPRAGE" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_evaluate_with_only_unknown_codes_fails_and_names_them(tmp_path, good, capsys):
    uid = write_series(tmp_path / "data" / "s", "T2", n_slices=2, size=4)
    (tmp_path / "labels.csv").write_text(f"series_uid,sequence\n{uid},T1_MPRAGE\n")
    code = main(["evaluate", str(tmp_path / "data"), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "ev"), "--no-cnn"])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 1 labels not in the vocabulary" in err and "T1_MPRAGE" in err


def test_the_event_reader_keeps_long_lines_bounded_and_the_events_around_them(monkeypatch):
    """Issue 17 item 10: a 20 MB line took 10 s (every chunk re-joined and re-split the whole buffer) and
    held it all in memory. Chunks without a newline are now only kept, and a line beyond the cap is dropped."""
    from SeriesClassifierLib.run import worker

    monkeypatch.setattr(worker, "MAX_EVENT_LINE", 1 << 20)
    reader = worker.EventReader()
    events = reader.feed(b'{"type": "start", "to')
    events += reader.feed(b'tal": 2}\n{"type": "log", "message": "')
    for _ in range(40):  # 2.5 MB of one line in 64 kB chunks, as QProcess delivers them
        events += reader.feed(b"x" * 65536)
    assert reader._pending_size == 0  # dropped at the cap, not kept
    events += reader.feed(b'"}\n{"type": "result", "series_uid": "1"}\n{"type": "done"}')
    events += reader.flush()
    assert [e["type"] for e in events] == ["start", "log", "result", "done"]
    assert events[0]["total"] == 2 and "dropped" in events[1]["message"]
