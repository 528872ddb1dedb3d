"""Several processes write corrections to one store at once; two are killed with SIGKILL,
one of them while it holds an open write transaction. Every acknowledged correction must be
there afterwards, exactly once, and the file must be sound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from SeriesClassifierLib.labels.store import LabelStore

WRITER = textwrap.dedent(
    """
    import sys, time, uuid
    from SeriesClassifierLib.labels.store import LabelStore
    path, name, n, hang_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = LabelStore(path)
    codes = store.vocabulary.sequence_codes
    real_insert = store._insert_event
    done = 0

    def insert_then_maybe_hang(c, event):
        ok = real_insert(c, event)
        if hang_after >= 0 and done >= hang_after:
            # inside BEGIN IMMEDIATE, row written, not committed: the parent kills us here
            print("INTXN", event.event_id, flush=True)
            time.sleep(600)
        return ok

    store._insert_event = insert_then_maybe_hang
    for i in range(n):
        event_id = f"{name}-{i}-{uuid.uuid4().hex}"
        print("TRY", event_id, flush=True)
        store.correct(f"1.2.{i % 17}", sequence=codes[i % len(codes)], user=name, source="cli", event_id=event_id)
        done += 1
        print("ACK", event_id, flush=True)  # only after commit returned
    print("DONE", flush=True)
    """
)


def _start(path, name: str, n: int, hang_after: int = -1) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(n), str(hang_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _acks(lines: list[str]) -> set[str]:
    return {line.split()[1] for line in lines if line.startswith("ACK ")}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_concurrent_writers_survive_sigkill(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()  # schema created once, so the writers race on data, not on the migration

    hanger = _start(path, "hanger", 1000, hang_after=20)
    writers = [_start(path, f"w{k}", 150) for k in range(3)]
    random_victim = _start(path, "victim", 100000)

    # kill one while it holds the write lock with an uncommitted row (the others queue behind it meanwhile)
    hanger_lines: list[str] = []
    while not hanger_lines or not hanger_lines[-1].startswith("INTXN"):
        line = hanger.stdout.readline()
        assert line, hanger.stderr.read()
        hanger_lines.append(line)
    uncommitted = hanger_lines[-1].split()[1]
    hanger.send_signal(signal.SIGKILL)

    # then kill another at an arbitrary point of its write loop
    victim_lines: list[str] = []
    while len(_acks(victim_lines)) < 60:
        line = random_victim.stdout.readline()
        assert line, random_victim.stderr.read()
        victim_lines.append(line)
    random_victim.send_signal(signal.SIGKILL)

    # read through the same buffered reader: communicate() would skip what readline() already buffered
    victim_lines += random_victim.stdout.read().splitlines()
    hanger_lines += hanger.stdout.read().splitlines()
    random_victim.wait(timeout=60)
    hanger.wait(timeout=60)
    assert random_victim.returncode == -signal.SIGKILL and hanger.returncode == -signal.SIGKILL

    acked = _acks(victim_lines) | _acks(hanger_lines)
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        lines = out.splitlines()
        assert lines[-1] == "DONE"
        assert len(_acks(lines)) == 150
        acked |= _acks(lines)

    with LabelStore(path, create=False) as store:
        assert store.integrity_check() == "ok"
        rows = store._conn.execute("SELECT event_id FROM events").fetchall()
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), "a correction was recorded twice"
        missing = acked - set(ids)
        assert not missing, f"acknowledged corrections lost: {sorted(missing)[:5]}"
        assert uncommitted not in ids, "a row from a killed, uncommitted transaction became visible"
        # the only rows beyond the acknowledged ones: a victim's last write, committed before its ack was printed
        assert len(set(ids) - acked) <= 1, sorted(set(ids) - acked)
        # the store still takes writes after the crashes
        store.correct("1.2.0", sequence="PD", user="after")
        assert store.current("1.2.0").sequence == "PD"
    print(f"acknowledged and present: {len(acked)}")


def test_processes_creating_the_same_new_store_at_once(tmp_path):
    """The schema creation/migration is itself a race: every process must end up with one sound store."""
    path = tmp_path / "fresh" / "labels.sqlite"
    code = textwrap.dedent(
        """
        import sys
        from SeriesClassifierLib.labels.store import LabelStore
        with LabelStore(sys.argv[1]) as s:
            for i in range(5):
                s.correct(f"uid.{i}", sequence="PD", user=sys.argv[2], source="cli", event_id=f"{sys.argv[2]}-{i}")
        print("ok")
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"p{k}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    with LabelStore(path, create=False) as store:
        assert store.integrity_check() == "ok"
        assert store._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 20
