"""The module's side of the warm worker: one process per Slicer session, requests routed by id.

No Qt here: the process is reached through a small *transport* (start, write, terminate, kill, timers,
and three callbacks), which the Slicer module implements with ``QProcess`` (events arrive in the GUI
thread, nothing ever waits) and ``SubprocessTransport`` below implements for tests and benchmarks.

- ``request(op, options, on_event, on_done)`` starts the worker when none runs and writes one JSON
  line; the models stay loaded between requests, so a Grad-CAM click costs only the Grad-CAM.
- Every event with ``"request": id`` goes to that request's ``on_event``; its ``done`` event, or the
  worker's end, calls ``on_done(ok, cancelled, message)`` exactly once.
- A new Grad-CAM request supersedes the previous one: the old one's callbacks are dropped, so a late
  or cancelled answer never writes over the status of the new one.
- ``cancel()`` stops the real Python process: SIGTERM to the worker's own PID (its first event; the
  PythonSlicer launcher would not pass a signal on). Before that PID is known the cancel is held and
  sent the moment it arrives; a process still alive 5 s later is killed. The worker also ends by itself
  when its stdin closes, so a killed launcher leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Optional

from .worker import EventReader

KILL_AFTER_SECONDS = 5.0
STDERR_TAIL_LINES = 40


class _Request:
    def __init__(self, rid: int, op: str, on_event: Optional[Callable], on_done: Optional[Callable]) -> None:
        self.id, self.op, self.on_event, self.on_done = rid, op, on_event, on_done
        self.errors: list = []
        self.finished = False


class WorkerSession:
    def __init__(self, transport: Any, arguments: list, environment: dict) -> None:
        self.transport = transport
        self.arguments = list(arguments)
        self.environment = dict(environment)
        self.pid = 0
        self.cancelRequested = False
        self.stderrTail: list = []
        self.starts = 0  # how many processes this session started (1 while the worker stays warm)
        self._reader = EventReader()
        self._requests: dict = {}
        self._next_id = 1
        self._latest_gradcam = 0
        self.on_worker_event: Optional[Callable] = None  # events without a request (ready, worker, stray errors)
        transport.on_stdout = self._stdout
        transport.on_stderr = self._stderr
        transport.on_finished = self._finished

    # ------------------------------------------------------------------ requests

    def isRunning(self) -> bool:
        return self.transport.is_running()

    def busy(self, op: Optional[str] = None) -> bool:
        return any(not r.finished and (op is None or r.op == op) for r in self._requests.values())

    def request(self, op: str, options: dict, on_event: Optional[Callable] = None,
                on_done: Optional[Callable] = None) -> int:
        if not self.transport.is_running():
            self._start()
        rid = self._next_id
        self._next_id += 1
        if op == "gradcam":
            old = self._requests.get(self._latest_gradcam)
            if old is not None and not old.finished:
                old.on_event = old.on_done = None  # superseded: its answer must not reach the panel
            self._latest_gradcam = rid
        self._requests[rid] = _Request(rid, op, on_event, on_done)
        self.transport.write((json.dumps({"id": rid, "op": op, **options}) + "\n").encode("utf-8"))
        return rid

    def _start(self) -> None:
        self.pid = 0
        self.cancelRequested = False
        self._reader = EventReader()
        self.stderrTail = []
        self.starts += 1
        self.transport.start(self.arguments, self.environment)

    def quit(self) -> None:
        """Ask the worker to finish (end of the session); it also ends when its stdin closes."""
        if self.transport.is_running():
            self.transport.write(b'{"op": "quit"}\n')
            self.transport.close_input()

    # ------------------------------------------------------------------ cancel

    def cancel(self) -> None:
        if not self.transport.is_running():
            return
        self.cancelRequested = True
        if self.pid:
            self._signal(signal.SIGTERM)
        # else: held until the worker's first event names its PID (see _event)
        self.transport.later(KILL_AFTER_SECONDS, self._kill_if_running)

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)  # on Windows: TerminateProcess, immediate
        except OSError:
            self.transport.terminate()

    def _kill_if_running(self) -> None:
        if not self.transport.is_running():
            return
        if self.pid:
            with contextlib.suppress(OSError):
                os.kill(self.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        self.transport.kill()

    # ------------------------------------------------------------------ transport callbacks

    def _stdout(self, data: bytes) -> None:
        for event in self._reader.feed(data):
            self._event(event)

    def _stderr(self, text: str) -> None:
        self.stderrTail.extend(text.splitlines())
        del self.stderrTail[:-STDERR_TAIL_LINES]

    def _event(self, event: dict) -> None:
        if event.get("type") in ("worker", "ready") and event.get("pid"):
            self.pid = int(event["pid"])
            if self.cancelRequested:
                self._signal(signal.SIGTERM)
        request = self._requests.get(event.get("request"))
        if request is None:
            if self.on_worker_event is not None:
                self.on_worker_event(event)
            return
        if event.get("type") == "error":
            request.errors.append(event.get("message", ""))
        if request.on_event is not None:
            request.on_event(event)
        if event.get("type") == "done":
            ok = not event.get("superseded") and event.get("code", 0) == 0
            self._finish(request, ok, False, "\n".join(request.errors))

    def _finish(self, request: _Request, ok: bool, cancelled: bool, message: str) -> None:
        if request.finished:
            return
        request.finished = True
        if request.on_done is not None:
            request.on_done(ok, cancelled, message)

    def _finished(self, exit_code: int, crashed: bool) -> None:
        for event in self._reader.flush():
            self._event(event)
        tail = "\n".join(self.stderrTail)
        for request in list(self._requests.values()):
            if not request.finished:
                self._finish(request, False, self.cancelRequested,
                             tail or f"the worker ended (exit code {exit_code})")
        self._requests = {k: r for k, r in self._requests.items() if not r.finished}
        self.pid = 0

    # ------------------------------------------------------------------ for tests and scripts

    def wait(self, rid: int, timeout: float = 600.0) -> bool:
        """Block until request ``rid`` is done (tests, benchmarks and batch scripts only)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            request = self._requests.get(rid)
            if request is None or request.finished:
                return True
            self.transport.pump(0.05)
        return False


class SubprocessTransport:
    """The transport on ``subprocess`` (tests, benchmarks): reader threads queue the output and
    ``pump`` delivers it in the caller's thread, as Qt's event loop does in Slicer."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.on_stdout: Callable = lambda data: None
        self.on_stderr: Callable = lambda text: None
        self.on_finished: Callable = lambda code, crashed: None
        self._queue: queue.Queue = queue.Queue()
        self._timers: list = []

    def start(self, arguments: list, environment: dict) -> None:
        self.proc = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=environment)
        proc = self.proc

        def pipe(stream: Any, kind: str) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                self._queue.put((kind, chunk))
            self._queue.put((kind, None))

        threads = [threading.Thread(target=pipe, args=(proc.stdout, "out"), daemon=True),
                   threading.Thread(target=pipe, args=(proc.stderr, "err"), daemon=True)]
        for t in threads:
            t.start()

        def finished() -> None:
            for t in threads:
                t.join()
            self._queue.put(("end", proc.wait()))

        threading.Thread(target=finished, daemon=True).start()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_input(self) -> None:
        self.proc.stdin.close()

    def terminate(self) -> None:
        self.proc.terminate()

    def kill(self) -> None:
        self.proc.kill()

    def later(self, seconds: float, callback: Callable) -> None:
        self._timers.append((time.monotonic() + seconds, callback))

    def pump(self, timeout: float = 0.05) -> None:
        now = time.monotonic()
        due = [t for t in self._timers if t[0] <= now]
        self._timers = [t for t in self._timers if t[0] > now]
        for _when, callback in due:
            callback()
        try:
            kind, data = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if kind == "out" and data:
                self.on_stdout(data)
            elif kind == "err" and data:
                self.on_stderr(data.decode("utf-8", errors="replace"))
            elif kind == "end":
                self.on_finished(data, data < 0)
            try:
                kind, data = self._queue.get_nowait()
            except queue.Empty:
                return
