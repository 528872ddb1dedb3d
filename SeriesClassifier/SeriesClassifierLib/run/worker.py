"""The classification worker the Slicer module runs in a separate ``PythonSlicer`` process.

    python -m SeriesClassifierLib.run.worker SOURCE [--series-uids UID ...] [--models DIR]
        [--gradcam-dir DIR] [--gradcam-head HEAD] [--gradcam-class CODE] [--gradcam-only]
        [--no-cnn] [--device auto|cpu|cuda] [--threads N]

SOURCE is a folder of DICOM files, a Slicer DICOM database folder (``ctkDICOM.sql``), or a series
manifest written by ``write_manifest`` (the Slicer module's choice: see below).

Protocol: stdout carries only JSON lines, one event per line, flushed as it happens:

- ``{"type": "worker", "pid": p}`` first: the interpreter's own process ID. Inside Slicer the module starts
  the ``PythonSlicer`` launcher, which runs Python as a child; cancelling signals this PID, since a signal
  to the launcher does not reach the child (MONAIAuto3DSeg kills the process tree for the same reason);
- ``{"type": "start", "total": n, "device": "cpu", ...}`` once the series are listed and the models loaded;
- ``{"type": "prediction", ...SeriesPrediction.to_dict()}`` as each series finishes;
- ``{"type": "gradcam", "series_uid", "head", "class", "path"}`` when a heat map was written;
- ``{"type": "progress", "done": i, "total": n}`` after each series;
- ``{"type": "error", "series_uid"?, "message"}`` for a series (or a setup step) that failed — the rest go on;
- ``{"type": "done", "classified": k, "errors": e}`` at the end; ``{"type": "cancelled"}`` on SIGTERM/SIGINT.

Anything else a library prints goes to stderr, so stdout stays parseable. Exit codes: 0 finished (per-series
errors are events, not failures), 2 bad arguments or unusable source, 143 cancelled, anything else a crash
the module reports with the stderr tail.

Why a manifest from Slicer rather than the database folder: the module already has the file list of
each chosen series from ``slicer.dicomDatabase.filesForSeries``; passing it makes the worker independent of
the database schema version, works for in-memory/temporary databases, never reads the SQLite file while
Slicer writes to it, and classifies exactly the selection.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..errors import Cancelled
from ..series import Geometry, SeriesRef

MANIFEST_FORMAT = "seriesclassifier-series-manifest"
MANIFEST_VERSION = 1
EXIT_OK, EXIT_USAGE, EXIT_CANCELLED = 0, 2, 143
HEADS_DEFAULT = "sequence"

Emit = Callable[[dict], None]


# --------------------------------------------------------------------------- manifest


def write_manifest(path: str | os.PathLike, series: Iterable[dict], source: str = "") -> Path:
    """Write the series to classify: dicts with ``series_uid``, ``files`` and optionally ``study_uid``,
    ``patient_id``, ``series_description``, and ``context_only`` (True: a sibling in the same study whose
    headers the forest's study context reads, but which is not classified itself)."""
    entries = []
    for s in series:
        if not s.get("series_uid"):
            raise ValueError("manifest entry without series_uid")
        entries.append(
            {
                "series_uid": str(s["series_uid"]),
                "study_uid": str(s.get("study_uid") or ""),
                "patient_id": str(s.get("patient_id") or ""),
                "series_description": str(s.get("series_description") or ""),
                "files": [str(f) for f in s.get("files") or []],
                "context_only": bool(s.get("context_only", False)),
            }
        )
    path = Path(path)
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "source": source, "series": entries}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def is_manifest(path: str | os.PathLike) -> bool:
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(path: str | os.PathLike) -> list[SeriesRef]:
    """Every series of the manifest (context-only ones included)."""
    return read_manifest_selection(path)[0]


def read_manifest_selection(path: str | os.PathLike) -> tuple[list[SeriesRef], list[str]]:
    """(every series, the UIDs to classify) of a manifest."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable series manifest ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: not a SeriesClassifier series manifest (format {got!r})")
    if not isinstance(doc.get("version", 0), int) or doc.get("version", 0) > MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {doc.get('version')!r} is not one this worker understands")
    entries = doc.get("series", [])
    problem = _entries_problem(entries)
    if problem:
        raise ValueError(f"{path}: {problem}")
    source = str(doc.get("source") or path)
    refs, selected = [], []
    for entry in entries:
        if not entry.get("context_only"):
            selected.append(entry["series_uid"])
        files = [Path(f) for f in entry.get("files", [])]
        refs.append(
            SeriesRef(
                series_uid=entry["series_uid"],
                files=[f for f in files if f.is_file()],
                study_uid=entry.get("study_uid", ""),
                patient_id=entry.get("patient_id", ""),
                source=source,
                series_description=entry.get("series_description", ""),
                missing=[f for f in files if not f.is_file()],
            )
        )
    return refs, selected


def _entries_problem(entries: object) -> str | None:
    """Why the manifest's series list cannot be read (a hand-made or damaged manifest), or None."""
    if not isinstance(entries, list):
        return "'series' must be a list"
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("series_uid"), str) or not entry["series_uid"]:
            return f"series entry {i} has no series_uid"
        files = entry.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            return f"series entry {i} ({entry['series_uid']}): 'files' must be a list of paths"
    return None


def select_series(
    source: str | os.PathLike, series_uids: Sequence[str] | None = None
) -> tuple[list[SeriesRef], list[SeriesRef], list[str]]:
    """(the series to classify in order, every series of their studies the source has, requested UIDs the
    source does not have). The siblings feed the forest's study context (pre/post order, agents)."""
    if not os.path.exists(source):
        raise ValueError("no such file or folder")
    if is_manifest(source):
        everything, selected = read_manifest_selection(source)
    else:
        from ..dicom.sources import iter_series_refs

        everything = list(iter_series_refs(source))
        selected = [r.series_uid for r in everything]
    by_uid = {r.series_uid: r for r in everything}
    wanted = list(dict.fromkeys(series_uids)) if series_uids else selected
    refs = [by_uid[u] for u in wanted if u in by_uid]
    studies = {r.study_uid for r in refs if r.study_uid}
    context = [r for r in everything if r.study_uid in studies or (not r.study_uid and r in refs)]
    return refs, context, [u for u in wanted if u not in by_uid]


def read_with_context(refs: Sequence[SeriesRef], context: Sequence[SeriesRef]) -> dict[str, Any]:
    """Headers of ``refs`` (by UID) read together with their studies' other series, as ``pipeline.classify``
    does, so a selection is classified as it would be with its whole study."""
    from .pipeline import read_all_series

    wanted = {r.series_uid for r in refs}
    pool = list(context) + [r for r in refs if r not in context]
    return {s.series_uid: s for s in read_all_series(pool) if s.series_uid in wanted}

# --------------------------------------------------------------------------- heat map files


def heatmap_path(gradcam_dir: str | os.PathLike, series_uid: str, head: str, target: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{series_uid}_{head}_{target}")
    return Path(gradcam_dir) / f"{safe}.npz"


def save_heatmap(path: str | os.PathLike, heatmap: np.ndarray, geometry: Geometry, **meta: str) -> Path:
    """Heat map + the geometry it lies on, as a plain npz (no pickles: read with allow_pickle=False)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(
        tmp,
        heatmap=np.asarray(heatmap, dtype=np.float32),
        rows=np.int64(geometry.rows),
        columns=np.int64(geometry.columns),
        pixel_spacing=np.asarray(geometry.pixel_spacing, dtype=float),
        orientations=np.asarray(geometry.orientations, dtype=float).reshape(-1, 6),
        positions=np.asarray(geometry.positions, dtype=float).reshape(-1, 3),
        slice_thickness=np.float64(geometry.slice_thickness or 0.0),
        spacing_between_slices=np.float64(geometry.spacing_between_slices or 0.0),
        meta=np.array(json.dumps(meta)),
    )
    os.replace(tmp, path)  # the module may poll for the file: never show it half written
    return path


def load_heatmap(path: str | os.PathLike) -> tuple[np.ndarray, Geometry, dict]:
    with np.load(path, allow_pickle=False) as z:
        geometry = Geometry(
            rows=int(z["rows"]),
            columns=int(z["columns"]),
            pixel_spacing=tuple(float(v) for v in z["pixel_spacing"]),
            orientations=[tuple(float(v) for v in o) for o in z["orientations"]],
            positions=[tuple(float(v) for v in p) for p in z["positions"]],
            slice_thickness=float(z["slice_thickness"]) or None,
            spacing_between_slices=float(z["spacing_between_slices"]) or None,
        )
        return np.array(z["heatmap"]), geometry, json.loads(str(z["meta"]))


# --------------------------------------------------------------------------- reading the stream (module side)


MAX_EVENT_LINE = 16 << 20  # bytes; the worker's events are a few hundred bytes, a longer line is not one


class EventReader:
    """Turns the worker's stdout, in whatever chunks QProcess delivers, into events.

    A line that is not JSON (a stray print from a library) becomes ``{"type": "log", "message": line}``.
    Chunks without a newline are only kept, never re-scanned (re-joining and splitting the whole buffer on
    every chunk made a 20 MB line cost 10 s inside Slicer), and a line beyond MAX_EVENT_LINE is dropped
    with a log event instead of growing without bound.
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._overflow = False  # inside a line that was too long: dropped up to its newline

    def feed(self, data: bytes | str) -> list[dict]:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if b"\n" not in data:
            return self._hold(data)
        head, *middle, tail = data.split(b"\n")
        events = self._end_line(head)
        events += [e for e in (self._parse(line) for line in middle) if e is not None]
        return events + self._hold(tail)

    def flush(self) -> list[dict]:
        return self._end_line(b"")

    def _hold(self, chunk: bytes) -> list[dict]:
        if self._overflow or not chunk:
            return []
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size <= MAX_EVENT_LINE:
            return []
        self._pending, self._pending_size, self._overflow = [], 0, True
        return [{"type": "log", "message": f"worker output line longer than {MAX_EVENT_LINE} bytes dropped"}]

    def _end_line(self, head: bytes) -> list[dict]:
        """The line that ``head`` completes (held chunks first); nothing for the end of a dropped line."""
        line = b"".join(self._pending) + head
        dropped = self._overflow
        self._pending, self._pending_size, self._overflow = [], 0, False
        if dropped:
            return []
        event = self._parse(line)
        return [event] if event is not None else []

    @staticmethod
    def _parse(line: bytes) -> dict | None:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return None
        try:
            event = json.loads(text)
        except ValueError:
            return {"type": "log", "message": text}
        return event if isinstance(event, dict) and "type" in event else {"type": "log", "message": text}


def command(
    python: str,
    source: str | os.PathLike,
    *,
    series_uids: Sequence[str] | None = None,
    models: str | os.PathLike | None = None,
    gradcam_dir: str | os.PathLike | None = None,
    gradcam_head: str | None = None,
    gradcam_class: str | None = None,
    gradcam_only: bool = False,
    use_cnn: bool = True,
    device: str = "auto",
    threads: int | None = None,
) -> list[str]:
    """The argument list that starts the worker with ``python`` (PythonSlicer inside Slicer)."""
    cmd = [python, "-u", "-m", "SeriesClassifierLib.run.worker", str(source), "--device", device]
    if series_uids:
        cmd += ["--series-uids", *series_uids]
    if models:
        cmd += ["--models", str(models)]
    if gradcam_dir:
        cmd += ["--gradcam-dir", str(gradcam_dir)]
    if gradcam_head:
        cmd += ["--gradcam-head", gradcam_head]
    if gradcam_class:
        cmd += ["--gradcam-class", gradcam_class]
    if gradcam_only:
        cmd.append("--gradcam-only")
    if not use_cnn:
        cmd.append("--no-cnn")
    if threads:
        cmd += ["--threads", str(int(threads))]
    return cmd


# --------------------------------------------------------------------------- the worker itself


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m SeriesClassifierLib.run.worker", description=__doc__.splitlines()[0])
    p.add_argument("source", help="DICOM folder, Slicer DICOM database folder, or series manifest (.json)")
    p.add_argument("--series-uids", nargs="+", metavar="UID", help="classify only these series")
    p.add_argument("--models", help="model bundle folder (default: the bundled models)")
    p.add_argument("--gradcam-dir", help="write a Grad-CAM heat map per series here (needs the CNN)")
    p.add_argument("--gradcam-head", default=HEADS_DEFAULT, help="head to explain (default: sequence)")
    p.add_argument("--gradcam-class", help="class to explain (default: the predicted class)")
    p.add_argument("--gradcam-only", action="store_true", help="only write heat maps; do not classify")
    p.add_argument("--no-cnn", action="store_true", help="forest only (no pixels read)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p


def build_serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m SeriesClassifierLib.worker --serve",
                                description="the warm worker: requests as JSON lines on stdin")
    p.add_argument("--serve", action="store_true", required=True)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p


def _setup_torch(device: str, threads: int | None, use_cnn: bool) -> str:
    """Apply the thread choice and describe the device; torch is imported only when the CNN runs (importing
    it costs seconds a forest-only run does not need). CUDA_VISIBLE_DEVICES is set before any import."""
    if not use_cnn:
        return "cpu (forest only)"
    try:
        import torch
    except ImportError:
        return "no torch (forest only)"
    if threads:
        torch.set_num_threads(int(threads))
    where = f"cpu ({torch.get_num_threads()} threads)"
    # CnnModel runs where its weights are: on the CPU (small enough for seconds per study). Say so
    # rather than name a GPU that is not used.
    if device != "cpu" and torch.cuda.is_available():
        return f"{where}; CUDA {torch.cuda.get_device_name(0)} present but the CNN runs on the CPU"
    if device == "cuda":
        return f"{where}; no CUDA device available"
    return where


def _gradcam(bundle: Any, series: Any, head: str, target: str | None) -> tuple[np.ndarray, Geometry, str]:
    """Heat map on the series' voxel grid via the engine's Grad-CAM; returns (heat, geometry, class)."""
    from ..models.gradcam import gradcam_series

    result = gradcam_series(bundle.cnn, series, head=head, target=target)
    return np.asarray(result.heatmap), result.geometry, result.target


def prediction_from_event(event: dict) -> Any:
    """The SeriesPrediction a ``prediction`` event carries."""
    from ..prediction import SeriesPrediction

    return SeriesPrediction.from_dict({k: v for k, v in event.items() if k not in ("type", "request")})


def run(args: argparse.Namespace, emit: Emit, bundle: Any = None, between: Callable[[], None] | None = None) -> int:
    """Classify the listed series, emitting events; ``bundle`` defaults to the one ``--models`` names.
    ``between`` runs after each series (the warm worker serves Grad-CAM clicks there)."""
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # as MONAIAuto3DSeg does: torch then sees no GPU
    try:
        refs, context, unknown = select_series(args.source, args.series_uids)
    except (OSError, ValueError) as e:
        emit({"type": "error", "message": f"{args.source}: {e}"})
        return EXIT_USAGE
    for uid in unknown:
        emit({"type": "error", "series_uid": uid, "message": f"series {uid} is not in {args.source}"})
    total = len(refs)

    if bundle is None:
        from ..models.bundle import load_bundle

        try:
            bundle = load_bundle(args.models, load_cnn=not args.no_cnn)
        except Exception as e:  # a broken bundle is the user's file: say which and stop
            emit({"type": "error", "message": f"cannot load models from {args.models or 'the bundled models'}: {e}"})
            return EXIT_USAGE
    for problem in getattr(bundle, "problems", []):
        emit({"type": "error", "message": f"model not loaded: {problem}"})
    use_cnn = not args.no_cnn and getattr(bundle, "cnn", None) is not None
    device = _setup_torch(args.device, args.threads, use_cnn)
    emit({"type": "start", "total": total, "device": device, "source": str(args.source), "pid": os.getpid()})
    want_gradcam = bool(args.gradcam_dir) and use_cnn
    if args.gradcam_dir and not use_cnn:
        emit({"type": "error", "message": "Grad-CAM needs the CNN, which is off or not in the model bundle"})

    from ..dicom.headers import read_series
    from .pipeline import predict_series

    emit({"type": "progress", "done": 0, "total": total, "stage": "reading headers"})
    try:
        # Grad-CAM alone needs no study context (that feeds the forest): a click reads its own series only.
        read = read_with_context(refs, context) if not args.gradcam_only else {}
    except Cancelled:
        raise
    except Exception as e:  # the study context is a bonus: classify each series on its own instead
        emit({"type": "error", "message": f"study context not available ({_describe(e)}); series read one by one"})
        read = {}
    classified = errors = 0
    for done, ref in enumerate(refs, start=1):
        series = prediction = None
        try:
            series = read.get(ref.series_uid) or read_series(ref)
            if not args.gradcam_only:
                prediction = predict_series(series, bundle, use_forest=True, use_cnn=use_cnn)
                emit({"type": "prediction", **prediction.to_dict()})
                classified += 1
                errors += bool(prediction.error)
        except Cancelled:
            raise
        except Exception as e:  # one series' failure must not stop the others
            errors += 1
            emit({"type": "error", "series_uid": ref.series_uid, "message": _describe(e)})
        if want_gradcam and series is not None and not series.skipped:
            errors += not _emit_gradcam(args, bundle, series, prediction, emit)
        emit({"type": "progress", "done": done, "total": total, "series_uid": ref.series_uid})
        if between is not None:
            between()
    emit({"type": "done", "classified": classified, "errors": errors, "total": total})
    return EXIT_OK


def _emit_gradcam(args: argparse.Namespace, bundle: Any, series: Any, prediction: Any, emit: Emit) -> bool:
    head = args.gradcam_head
    target = args.gradcam_class or (prediction.predicted_class(head) if prediction is not None else None)
    try:
        heat, geometry, target = _gradcam(bundle, series, head, target)
        path = save_heatmap(
            heatmap_path(args.gradcam_dir, series.series_uid, head, target), heat, geometry,
            series_uid=series.series_uid, head=head, target=target,
        )
    except Cancelled:
        raise
    except Exception as e:
        emit({"type": "error", "series_uid": series.series_uid, "message": f"Grad-CAM failed: {_describe(e)}"})
        return False
    emit({"type": "gradcam", "series_uid": series.series_uid, "head": head, "class": target,
          "path": str(Path(path).resolve())})
    return True


# --------------------------------------------------------------------------- the warm worker (one per Slicer session)

REQUEST_OPS = ("classify", "gradcam", "quit")


def request_args(request: dict) -> argparse.Namespace:
    """The command-line options a request stands for (same names, same defaults)."""
    argv = [str(request["source"]), "--device", str(request.get("device") or "auto")]
    if request.get("series_uids"):
        argv += ["--series-uids", *[str(u) for u in request["series_uids"]]]
    for key, flag in (("models", "--models"), ("gradcam_dir", "--gradcam-dir"), ("gradcam_head", "--gradcam-head"),
                      ("gradcam_class", "--gradcam-class"), ("threads", "--threads")):
        if request.get(key):
            argv += [flag, str(request[key])]
    if request.get("op") == "gradcam":
        argv.append("--gradcam-only")
    if request.get("use_cnn") is False:
        argv.append("--no-cnn")
    return build_parser().parse_args(argv)


class Server:
    """Serves requests (JSON lines on stdin) with the models loaded once.

    ``{"id": n, "op": "classify"|"gradcam", "source": manifest, ...options of command()}``; every event of
    a request carries ``"request": n`` and a request ends with its ``done`` (or ``error`` + ``done``).
    Grad-CAM requests that arrive during a classification are served between two series, the newest
    first: an older Grad-CAM request still waiting is answered ``superseded`` (the user clicked on).
    End of stdin (the module or the launcher went away) ends the worker: it never outlives Slicer.
    """

    def __init__(self, emit: Emit, load: Callable[..., Any] | None = None) -> None:
        import queue
        import threading

        self.emit = emit
        self.queue: Any = queue.Queue()
        self.backlog: list[dict] = []
        self.bundles: dict[tuple, Any] = {}
        self._load = load
        self._lock = threading.Lock()

    def read(self, stream: Any) -> None:
        """Reader thread: lines → queue; end of stream → a quit request."""
        for line in stream:
            text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
            text = text.strip()
            if not text:
                continue
            try:
                request = json.loads(text)
                if not isinstance(request, dict) or request.get("op") not in REQUEST_OPS:
                    raise ValueError("not a request")
            except ValueError as e:
                self.emit({"type": "error", "message": f"bad request {text[:200]!r}: {e}"})
                continue
            self.queue.put(request)
        self.queue.put({"op": "quit", "reason": "end of input"})

    def bundle(self, models: str | None, use_cnn: bool) -> Any:
        key = (models or "", use_cnn)
        if key not in self.bundles:
            warm = self.bundles.get((models or "", True))
            if warm is not None:  # a bundle with the CNN serves forest-only requests too
                return warm
            load = self._load
            if load is None:
                from ..models.bundle import load_bundle as load
            self.bundles[key] = load(models, load_cnn=use_cnn)
        return self.bundles[key]

    def _next(self, block: bool) -> dict | None:
        import queue

        if self.backlog:
            return self.backlog.pop(0)
        try:
            return self.queue.get(block=block)
        except queue.Empty:
            return None

    def serve(self) -> int:
        self.emit({"type": "ready", "pid": os.getpid()})
        while True:
            request = self._next(block=True)
            if request["op"] == "quit":
                return EXIT_OK
            self.handle(request)

    def _between(self) -> None:
        """During a classification: take what arrived; serve the newest Grad-CAM request now."""
        import queue

        arrived = []
        while True:
            try:
                arrived.append(self.queue.get_nowait())
            except queue.Empty:
                break
        gradcams = [r for r in arrived if r.get("op") == "gradcam"]
        self.backlog.extend(r for r in arrived if r.get("op") != "gradcam")
        for old in gradcams[:-1]:
            self.emit({"type": "done", "request": old.get("id"), "superseded": True})
        if gradcams:
            self.handle(gradcams[-1])

    def handle(self, request: dict) -> None:
        rid = request.get("id")

        def emit(event: dict) -> None:
            self.emit({**event, "request": rid})

        try:
            args = request_args(request)
        except (KeyError, SystemExit, ValueError) as e:
            emit({"type": "error", "message": f"bad request: {e}"})
            emit({"type": "done", "classified": 0, "errors": 1, "total": 0, "code": EXIT_USAGE})
            return
        try:
            bundle = self.bundle(args.models, not args.no_cnn)
        except Exception as e:  # a broken bundle is the user's file: say which, keep serving
            emit({"type": "error", "message": f"cannot load models from {args.models or 'the bundled models'}: {e}"})
            emit({"type": "done", "classified": 0, "errors": 1, "total": 0, "code": EXIT_USAGE})
            return
        # Grad-CAM requests are served between the series of a classification, not inside another Grad-CAM.
        between = self._between if request.get("op") == "classify" else None
        try:
            code = run(args, emit, bundle=bundle, between=between)
        except Cancelled:
            raise
        except Exception as e:  # the worker keeps serving the next request
            emit({"type": "error", "message": _describe(e)})
            code = 1
        if code != EXIT_OK:
            emit({"type": "done", "classified": 0, "errors": 1, "total": 0, "code": code})


def serve_main(argv: Sequence[str], out: TextIO, stdin: Any, load: Callable[..., Any] | None = None) -> int:
    import threading

    args = build_serve_parser().parse_args(argv)

    def emit(event: dict) -> None:
        with lock:
            out.write(json.dumps(event, default=str) + "\n")
            out.flush()

    lock = threading.Lock()
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    server = Server(emit, load=load)
    threading.Thread(target=server.read, args=(stdin,), daemon=True, name="requests").start()
    return server.serve()


def _describe(e: BaseException) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(e).__name__}: {e}{where}"


def _on_signal(signum: int, frame: Any) -> None:
    raise Cancelled(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, bundle: Any = None) -> int:
    """Entry point. With ``out`` None the process's real stdout becomes the event channel and fd 1 is
    pointed at stderr, so prints from any library (or C code) cannot corrupt the stream."""
    if out is None:
        out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = sys.stderr

    def emit(event: dict) -> None:
        out.write(json.dumps(event, default=str) + "\n")
        out.flush()

    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emit({"type": "worker", "pid": os.getpid()})
    try:
        if "--serve" in argv:
            return serve_main(argv, out, sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin,
                              load=(lambda *a, **k: bundle) if bundle is not None else None)
        return run(build_parser().parse_args(argv), emit, bundle=bundle)
    except Cancelled as e:
        emit({"type": "cancelled", "signal": str(e)})
        return EXIT_CANCELLED
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    raise SystemExit(main())
