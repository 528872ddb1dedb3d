from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time

import pytest

from SeriesClassifierLib.labels.review import ReviewSession, parse_answer, resolve_code, review_order
from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.vocabulary import load_vocabulary

VOCAB = load_vocabulary()


def prediction(uid, sequence, p, needs_review=False, number=1):
    seq = TaskPrediction.from_probabilities({sequence: p, "OTHER": (1 - p) / 2, "ADC": (1 - p) / 2})
    return SeriesPrediction(
        uid, "st", "pat", number, f"desc {uid}", n_images=20, sequence=seq,
        orientation=TaskPrediction.from_probabilities({"AXIAL": 0.9, "OBLIQUE": 0.1}),
        needs_review=needs_review, reasons=["forest and cnn disagree"] if needs_review else [],
        models={"forest": ModelOutput("forest", sequence=seq), "cnn": ModelOutput("cnn", reason="no pixels")},
    )


@pytest.fixture
def store(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as s:
        s.record_predictions([
            prediction("a", "T1_3D_PRE", 0.95, number=1),
            prediction("b", "FLAIR_2D", 0.60, number=2),
            prediction("c", "T2_2D", 0.80, needs_review=True, number=3),
            prediction("d", "PD", 0.40, needs_review=True, number=4),
        ])
        yield s


def run_session(store, script, **kw):
    out = io.StringIO()
    records = review_order(store.records(), **kw)
    summary = ReviewSession(store, records, io.StringIO(script), out, user="rev").run()
    return summary, out.getvalue()


def test_resolve_code_exact_prefix_ambiguous_unknown():
    codes = VOCAB.sequence_codes
    assert resolve_code("flair_2", codes) == ("FLAIR_2D", None)
    assert resolve_code("SWI", codes) == ("SWI", None)  # exact wins over being a prefix of SWI_MAG …
    assert resolve_code("swi_m", codes)[1].startswith("'swi_m' is ambiguous: SWI_MAG, SWI_MINIP")
    code, error = resolve_code("t3", codes)
    assert code is None and "valid codes: SCOUT" in error


def test_parse_answer_keys():
    assert parse_answer("\n", VOCAB).kind == "accept"
    assert parse_answer("Y", VOCAB).kind == "accept"
    assert parse_answer("s", VOCAB).kind == "skip"  # a command, not the prefix of SCOUT/SWI…
    assert parse_answer("b", VOCAB).kind == "back"
    assert parse_answer("q", VOCAB).kind == "quit"
    assert (parse_answer("o sag", VOCAB).kind, parse_answer("o sag", VOCAB).value) == ("orientation", "SAGITTAL")
    assert parse_answer("o", VOCAB).kind == "invalid"
    assert parse_answer("other", VOCAB).value == "OTHER"
    assert parse_answer("n motion artefact", VOCAB).value == "motion artefact"
    assert parse_answer("t1", VOCAB).kind == "invalid"


def test_order_needs_review_first_then_confidence(store):
    assert [r.series_uid for r in review_order(store.records())] == ["d", "c", "b", "a"]
    store.accept("d", user="x")
    assert [r.series_uid for r in review_order(store.records())] == ["c", "b", "a"]
    assert [r.series_uid for r in review_order(store.records(), include_reviewed=True)][0] == "d"


def test_scripted_session_writes_every_answer(store):
    # d: accept · c: ambiguous, then correct by prefix · b: orientation, then accept · a: skip
    summary, out = run_session(store, "\nt1\nt2_3\no cor\ny\ns\n")
    assert (summary.accepted, summary.corrected, summary.skipped) == (2, 1, 1)
    assert "is ambiguous: T1_2D_PRE, T1_2D_POST, T1_3D_PRE, T1_3D_POST" in out
    assert "top-3: PD 0.40 · ADC 0.30 · OTHER 0.30" in out and "why: forest and cnn disagree" in out
    assert "cnn: — · —  (no pixels)" in out and "NEEDS REVIEW" in out
    assert store.current("d").state == "accepted"
    c = store.current("c")
    assert (c.sequence, c.state, c.source, c.corrected_by) == ("T2_3D", "corrected", "review", "rev")
    b = store.current("b")
    assert (b.sequence, b.orientation, b.state) == ("FLAIR_2D", "CORONAL", "corrected")
    assert store.current("a").state == "unreviewed"
    assert out.rstrip().endswith("done: 2 accepted, 1 corrected, 1 skipped, 0 notes")


def test_back_quit_and_end_of_input(store):
    summary, out = run_session(store, "b\nflair_3\nb\npd\nq\n")
    # back at the first series stays; correct d; back to d; correct it again; quit at c
    assert "already at the first series" in out
    assert [e.sequence for e in store.history("d")] == ["FLAIR_3D", "PD"]
    assert summary.quit and store.current("c").state == "unreviewed"
    assert "current label: FLAIR_3D" in out  # d shown again after b, with its correction
    summary, _ = run_session(store, "")  # end of input quits at once
    assert summary.quit and summary.seen == ["c"]


def test_notes_and_help(store):
    _, out = run_session(store, "?\nn call the referrer\nq\n")
    assert "orientation codes: AXIAL" in out
    assert store.current("d").note == "call the referrer" and store.current("d").state == "unreviewed"


def test_nothing_to_review(tmp_path):
    with LabelStore(tmp_path / "empty.sqlite") as s:
        summary, out = run_session(s, "")
    assert "nothing to review" in out and not summary.seen


@pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX")
def test_review_command_in_a_real_terminal(store):
    """The CLI on a pseudo-terminal, typed key by key, as a person would."""
    import pty

    store.close()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "SeriesClassifierLib", "review", "--store", str(store.path), "--user", "tty"],
        stdin=follower, stdout=follower, stderr=follower, close_fds=True,
    )
    os.close(follower)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(leader, 4096)
                except OSError:
                    break
        assert marker in seen, seen.decode(errors="replace")[-2000:]

    try:
        for answer, marker in [(b"\r", b"[1/4]"), (b"swi_ph\r", b"[2/4]"), (b"q\r", b"[3/4]")]:
            read_until(marker)
            read_until(b"> ")
            os.write(leader, answer)
        read_until(b"stopped: 1 accepted, 1 corrected")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    with LabelStore(store.path) as s:
        assert s.current("d").state == "accepted" and s.current("d").corrected_by == "tty"
        assert s.current("c").sequence == "SWI_PHASE"


def test_invalid_answers_do_not_repeat_the_series_but_changes_do(store):
    _, out = run_session(store, "t1\nzz\no ax\nq\n")
    assert out.count("[1/4]") == 2  # shown, not again after two bad answers, again after the orientation changed
    assert "unknown sequence code 'zz'" in out


def test_describe_names_the_study_and_counts_frames():
    from SeriesClassifierLib.labels.review import describe
    from SeriesClassifierLib.labels.store import derive_record

    p = prediction("1.9", "FLAIR_2D", 0.8, number=2)
    p.study_uid, p.patient_id, p.n_images, p.n_frames = "1.2.3.4.5.6.7.8.9", "P7", 1, 48
    text = describe(derive_record("1.9", p, "", []), "[1/1]")
    assert "series 2 “" in text and "of study ….6.7.8.9 (patient P7)" in text and "48 frames in 1 file" in text
    p.n_images = p.n_frames = 1
    assert "  1 image  " in describe(derive_record("1.9", p, "", []))
