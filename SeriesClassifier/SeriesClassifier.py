"""SeriesClassifier: which sequence and orientation is each series of a brain MRI study?

Slicer glue only. The work happens in the engine (SeriesClassifierLib), which this file imports
inside functions: the engine's dependencies (pydicom, scikit-learn, skops, safetensors, torch) may
not be installed yet when Slicer loads the module, and they are installed only after the user agrees.
Classification runs in a separate PythonSlicer process (SeriesClassifierLib.run.worker) so the
application never freezes; results stream back one JSON line per series.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import logging
import os
import shutil
import signal
import sys
import time
from typing import Any, Callable, Optional

try:
    from typing import Annotated
except ImportError:  # Python < 3.9: Slicer 5.6 and later ship 3.9
    Annotated = None

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer before 5.4

    def _(text: str) -> str:
        return text


try:
    from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
except ImportError:  # Slicer before 5.2: no typed parameter node; the widget still works from QSettings
    parameterNodeWrapper = None


@contextlib.contextmanager
def errorsShown(message: str, waitCursor: bool = True):
    """``slicer.util.tryWithErrorDisplay`` without the re-raise: it shows the error and then raises it again
    (Base/Python/slicer/util.py), which from a Qt slot only ends up as a traceback on the console. Code
    after the block must not rely on the block having finished: use try/finally for state to reset."""
    try:
        with slicer.util.tryWithErrorDisplay(message, waitCursor=waitCursor):
            yield
    except Exception:  # already shown to the user
        logging.debug("SeriesClassifier: %s (shown)", message, exc_info=True)


#
# SeriesClassifier
#


class SeriesClassifier(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Series Classifier")
        self.parent.categories = [_("Informatics")]
        self.parent.dependencies = ["DICOM"]
        self.parent.contributors = ["SeriesClassifier contributors"]
        self.parent.helpText = _(
            "Identifies the sequence (T1/T2/FLAIR/DWI/ADC/SWI/TOF/perfusion/... 27 classes) and the orientation of "
            "every series of a brain MRI study in the DICOM database, with a calibrated confidence, a Grad-CAM view "
            "of where the network looked, a review table for corrections (stored at once) and CSV/JSON/BIDS/"
            "dcm2bids/heudiconv exports. Keys in the results table: Up/Down move, Enter or A accept, N next series "
            "to review, 1-3 pick the n-th guess, C type a code."
        )
        self.parent.acknowledgementText = _(
            "The bundled models are trained on simulated studies built from the MNI ICBM152 2009 template "
            "(Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
            "Institute, McGill University) shipped with nilearn, and pydeface's mean head (MIT licence)."
        )


#
# Parameter node
#

if parameterNodeWrapper is not None:

    @parameterNodeWrapper
    class SeriesClassifierParameterNode:
        """Per-scene settings; bound to the widgets that carry a SlicerParameterName in the .ui file."""

        useCnn: bool = True
        gradcamOnClassify: bool = True
        showGradCam: bool = True
        # A slider (ctkSliderWidget) only binds to a bounded float: Slicer's GUI connector raises for a bare
        # float, and since every connector is built before any is connected, nothing would be bound at all.
        overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
        anonymise: bool = True  # privacy by default: subjects 01, 02, …, no PatientID or notes in exports


#
# Worker process (Qt side of SeriesClassifierLib.run.worker)
#


class WorkerProcess:
    """Runs ``python -m SeriesClassifierLib.run.worker`` in PythonSlicer and hands each event to ``onEvent``.

    Like MONAIAuto3DSeg's background inference, the heavy work lives in another process; unlike it, Qt's
    own QProcess signals deliver the output, so no reader thread or polling timer is needed.
    """

    STDERR_TAIL_LINES = 40

    def __init__(self, arguments: list, environment: dict, onEvent: Callable, onFinished: Callable):
        from SeriesClassifierLib.run.worker import EventReader

        self.arguments = arguments
        self.onEvent = onEvent
        self.onFinished = onFinished
        self.cancelRequested = False
        self.workerPid = 0  # the Python process itself (PythonSlicer is a launcher that runs it as a child)
        self.stderrTail: list = []
        self._reader = EventReader()
        self.process = qt.QProcess()
        env = qt.QProcessEnvironment()
        for key, value in environment.items():
            env.insert(str(key), str(value))
        self.process.setProcessEnvironment(env)
        self.process.setProcessChannelMode(qt.QProcess.SeparateChannels)
        self.process.connect("readyReadStandardOutput()", self._readStdout)
        self.process.connect("readyReadStandardError()", self._readStderr)
        self.process.connect("finished(int,QProcess::ExitStatus)", self._finished)
        self.process.connect("errorOccurred(QProcess::ProcessError)", self._error)

    def start(self) -> None:
        logging.info("SeriesClassifier: starting %s", " ".join(self.arguments))
        self.process.start(self.arguments[0], self.arguments[1:])

    def isRunning(self) -> bool:
        return self.process.state() != qt.QProcess.NotRunning

    def cancel(self) -> None:
        """SIGTERM to the worker itself (it stops after telling us); kill what is left after 5 s.

        Signalling the launcher would not reach the Python child, so the worker's own PID (its first
        event) is used; before that event arrives the launcher is terminated instead.
        """
        if not self.isRunning():
            return
        self.cancelRequested = True
        if self.workerPid:
            try:
                os.kill(self.workerPid, signal.SIGTERM)  # on Windows this is TerminateProcess: immediate
            except OSError:
                self.process.terminate()
        else:
            self.process.terminate()
        qt.QTimer.singleShot(5000, self._killIfRunning)

    def _killIfRunning(self) -> None:
        if not self.isRunning():
            return
        if self.workerPid:
            with contextlib.suppress(OSError):  # already gone
                os.kill(self.workerPid, getattr(signal, "SIGKILL", signal.SIGTERM))
        self.process.kill()

    def waitForFinished(self, timeoutSeconds: float = 3600) -> bool:
        """Block until the worker ends, still delivering events (for tests and batch use)."""
        deadline = time.monotonic() + timeoutSeconds
        while self.isRunning() and time.monotonic() < deadline:
            self.process.waitForReadyRead(200)
            slicer.app.processEvents()
        self.process.waitForFinished(1000)
        slicer.app.processEvents()
        return not self.isRunning()

    @staticmethod
    def _bytes(data: Any) -> bytes:
        data = data.data() if hasattr(data, "data") else data
        return data if isinstance(data, bytes) else str(data).encode("utf-8")

    def _readStdout(self) -> None:
        for event in self._reader.feed(self._bytes(self.process.readAllStandardOutput())):
            if event.get("type") == "worker":
                self.workerPid = int(event.get("pid") or 0)
            self.onEvent(event)

    def _readStderr(self) -> None:
        text = self._bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
        for line in text.splitlines():
            logging.debug("SeriesClassifier worker: %s", line)
            self.stderrTail.append(line)
        del self.stderrTail[: -self.STDERR_TAIL_LINES]

    def _finished(self, exitCode: int, exitStatus: Any) -> None:
        self._readStdout()
        self._readStderr()
        for event in self._reader.flush():
            self.onEvent(event)
        crashed = exitStatus == qt.QProcess.CrashExit
        self.onFinished(exitCode, crashed, self.cancelRequested, "\n".join(self.stderrTail))

    def _error(self, error: Any) -> None:
        if error == qt.QProcess.FailedToStart:
            self.onFinished(-1, True, False, _("Could not start {program}").format(program=self.arguments[0]))


class QtTransport:
    """The warm worker's process on QProcess (SeriesClassifierLib.run.worker_session's transport): output
    arrives through Qt signals in the GUI thread, so the GUI never waits on the worker."""

    def __init__(self) -> None:
        self.process = None
        self.on_stdout: Callable = lambda data: None
        self.on_stderr: Callable = lambda text: None
        self.on_finished: Callable = lambda code, crashed: None

    def start(self, arguments: list, environment: dict) -> None:
        logging.info("SeriesClassifier: starting the worker %s", " ".join(arguments))
        self.process = process = qt.QProcess()
        env = qt.QProcessEnvironment()
        for key, value in environment.items():
            env.insert(str(key), str(value))
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(qt.QProcess.SeparateChannels)
        process.connect("readyReadStandardOutput()", lambda: self.on_stdout(
            WorkerProcess._bytes(process.readAllStandardOutput())))
        process.connect("readyReadStandardError()", lambda: self.on_stderr(
            WorkerProcess._bytes(process.readAllStandardError()).decode("utf-8", errors="replace")))
        process.connect("finished(int,QProcess::ExitStatus)", lambda code, status: self.on_finished(
            code, status == qt.QProcess.CrashExit))
        process.connect("errorOccurred(QProcess::ProcessError)", lambda error: self.on_finished(-1, True) if (
            error == qt.QProcess.FailedToStart) else None)
        process.start(arguments[0], arguments[1:])

    def is_running(self) -> bool:
        return self.process is not None and self.process.state() != qt.QProcess.NotRunning

    def write(self, data: bytes) -> None:
        self.process.write(data)

    def close_input(self) -> None:
        self.process.closeWriteChannel()

    def terminate(self) -> None:
        self.process.terminate()

    def kill(self) -> None:
        self.process.kill()

    def later(self, seconds: float, callback: Callable) -> None:
        qt.QTimer.singleShot(int(seconds * 1000), callback)

    def pump(self, timeout: float = 0.05) -> None:
        """Only for blocking callers (the self-test, batch scripts): the GUI never calls this."""
        if self.process is not None:
            self.process.waitForReadyRead(int(timeout * 1000))
        slicer.app.processEvents()


#
# SeriesClassifierLogic
#


class SeriesClassifierLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the GUI (batch scripts, the self-test).

    State: the predictions of this session (by series UID, in arrival order) and the label store.
    """

    # The requirements come from Resources/requirements.txt (the list pyproject.toml reads too):
    # [core] to classify, [sample] for "Load sample study", [torch] through the PyTorch extension.
    # tags the browser and the manifest read through the database cache (the forest's come from the engine)
    BROWSER_TAGS = ["0008,103e", "0020,0011", "0008,0020", "0010,0020", "0008,0060"]

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.predictions: dict = {}  # series_uid -> SeriesPrediction
        self.gradcams: dict = {}  # (series_uid, head, class) -> heat map file
        self.device = ""
        self.messages: list = []
        self.sampleWorker: Optional[WorkerProcess] = None
        self.transportFactory: Callable = QtTransport  # tests hand in a subprocess transport
        self._session = None  # the warm worker (one per Slicer session), started on first use
        self.classifyRequest = 0
        self.gradcamRequest = 0
        self._store = None
        self._storePath = ""
        self.storePathSetting = ""  # Settings → label store; used at once, not only after a classification
        self._loadedVolumes: dict = {}  # series_uid -> volume node ID
        self.overlayNode = None
        self.resultsTableNode = None
        self.modelsDir = ""
        self.user = ""

    def getParameterNode(self):
        if parameterNodeWrapper is None:
            return None
        return SeriesClassifierParameterNode(super().getParameterNode())

    # ------------------------------------------------------------------ dependencies

    @staticmethod
    def requirements(sample: bool = False) -> list:
        from SeriesClassifierLib.requirements import read_requirements  # standard library only

        return read_requirements(("core", "sample") if sample else ("core",))

    @staticmethod
    def torchRequirement() -> str:
        from SeriesClassifierLib.requirements import read_requirements

        (requirement,) = read_requirements(("torch",))
        return requirement

    def missingPackages(self, sample: bool = False) -> list:
        """Requirements not met: absent, or installed in a version outside the range (Slicer's Python may
        carry an older package than the engine needs; its presence alone says nothing)."""
        from SeriesClassifierLib.requirements import unmet

        return [requirement for requirement, _version in unmet(self.requirements(sample))]

    @staticmethod
    def apiProblems() -> list:
        """What the installed packages lack that the engine calls (pydicom 2.4 vs 3 and the like)."""
        from SeriesClassifierLib.pydicom_compat import api_problems

        return api_problems()

    def torchStatus(self) -> tuple:
        """(installed, description), looking through PyTorchUtils when the PyTorch extension is there."""
        try:
            import PyTorchUtils
        except ImportError:
            installed = importlib.util.find_spec("torch") is not None
            return installed, _("PyTorch extension not installed") + ("" if not installed else " (torch found)")
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            return False, _("torch not installed")
        torch = torchLogic.torch
        from SeriesClassifierLib.requirements import satisfies, split_requirement

        if not satisfies(torch.__version__, split_requirement(self.torchRequirement())[1]):
            return False, _("torch {version} is outside {req}").format(version=torch.__version__,
                                                                       req=self.torchRequirement())
        device = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
        return True, f"torch {torch.__version__} ({device})"

    def setupPythonRequirements(self, askConfirmation: bool = True, sample: bool = False, useCnn: bool = True) -> bool:
        """Install what is missing after asking (never called from setup()); False if the user declined."""
        missing = self.missingPackages(sample)
        torchInstalled, _description = self.torchStatus()
        needTorch = useCnn and not torchInstalled
        if not missing and not needTorch:
            return True
        listed = missing + ([f"{self.torchRequirement()} (through the PyTorch extension)"] if needTorch else [])
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("SeriesClassifier needs Python packages that are not installed yet. Installing needs a network "
              "connection and may take a few minutes. Click OK to install them."),
            _("Install Python packages"),
            detailedText=_("To install: {packages}").format(packages=", ".join(listed)),
        ):
            return False
        if needTorch:
            try:
                import PyTorchUtils
            except ImportError as e:
                raise RuntimeError(_("This module needs the PyTorch extension: install it from the Extensions "
                                     "Manager, or switch the CNN off in Settings.")) from e
            from SeriesClassifierLib.requirements import split_requirement

            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=",".join(split_requirement(self.torchRequirement())[1])
            )
            if torch is None:
                raise RuntimeError(_("PyTorch could not be installed; switch the CNN off to classify from headers."))
        for requirement in missing:
            slicer.util.pip_install(requirement)
        still = self.missingPackages(sample)
        if still:
            raise RuntimeError(_("Still missing after installation: {packages}").format(packages=", ".join(still)))
        problems = self.apiProblems()
        if problems:
            raise RuntimeError(_("Installed packages lack what the module needs: {p}").format(p="; ".join(problems)))
        return True

    # ------------------------------------------------------------------ the DICOM database

    @staticmethod
    def database():
        db = slicer.dicomDatabase
        if db is None or not db.isOpen:
            raise RuntimeError(_("No DICOM database is open: open the DICOM module once to create one."))
        return db

    def ensureTagsPrecached(self) -> list:
        """Ask the database to cache the tags the browser and the forest read (the list comes from the engine)."""
        db = self.database()
        tags = list(self.BROWSER_TAGS)
        try:
            from SeriesClassifierLib.dicom import headers

            tags += [t.lower() for t in getattr(headers, "PRECACHE_TAGS", ())]
        except ImportError:  # engine dependencies not installed yet: the browser tags still help
            pass
        current = [t.lower() for t in db.tagsToPrecache]
        added = [t for t in dict.fromkeys(tags) if t not in current]
        if added:
            db.tagsToPrecache = list(db.tagsToPrecache) + added
        return added

    # Series-table fields of ctkDICOMDatabase (filled at import) and the tag each stands for.
    SERIES_FIELDS = {"description": ("SeriesDescription", "0008,103e"), "number": ("SeriesNumber", "0020,0011"),
                     "modality": ("Modality", "0008,0060"), "date": ("SeriesDate", "0008,0021")}

    def browse(self) -> list:
        """Patients with their studies and series, as plain dicts for the tree.

        From the database's own tables (``fieldForSeries``/``fieldForStudy``, filled when the files were
        imported): no file is opened on the GUI thread. Only a CTK without those calls falls back to the
        tag cache (``fileValue``, which reads the file when a tag is not cached)."""
        db = self.database()
        fieldForSeries = getattr(db, "fieldForSeries", None)
        fieldForStudy = getattr(db, "fieldForStudy", None)

        def seriesValue(uid: str, key: str) -> str:
            field, tag = self.SERIES_FIELDS[key]
            if fieldForSeries is not None:
                return str(fieldForSeries(field, uid) or "")
            files = list(db.filesForSeries(uid, 1))
            return db.fileValue(files[0], tag) if files else ""

        patients = []
        for patient in db.patients():
            studies = []
            for study in db.studiesForPatient(patient):
                series = [dict({"series_uid": uid}, **{key: seriesValue(uid, key) for key in self.SERIES_FIELDS})
                          for uid in db.seriesForStudy(study)]
                date = str(fieldForStudy("StudyDate", study) or "") if fieldForStudy is not None else ""
                studies.append({"study_uid": study, "description": db.descriptionForStudy(study),
                                "date": date or (series[0]["date"] if series else ""), "series": series})
            patients.append({"patient": patient, "name": db.nameForPatient(patient), "studies": studies})
        return patients

    def allSeries(self) -> list:
        db = self.database()
        return [s for p in db.patients() for st in db.studiesForPatient(p) for s in db.seriesForStudy(st)]

    def writeManifest(self, seriesUids: list, path: str) -> str:
        """The worker's input: each series' files as the database lists them (see worker.py for why), plus
        the other series of their studies as context only (the forest reads a study's series together)."""
        from SeriesClassifierLib.run.worker import write_manifest

        db = self.database()
        selected = list(dict.fromkeys(seriesUids))
        wanted = set(selected)
        studies = list(dict.fromkeys(db.studyForSeries(uid) for uid in selected))
        siblings = [s for study in studies if study for s in db.seriesForStudy(study) if s not in wanted]
        entries = []
        for uid in selected + siblings:
            files = list(db.filesForSeries(uid))
            first = files[0] if files else ""
            entries.append({
                "series_uid": uid,
                "study_uid": db.studyForSeries(uid),
                "patient_id": db.fileValue(first, "0010,0020") if first else "",
                "series_description": db.fileValue(first, "0008,103e") if first else "",
                "files": files,
                "context_only": uid not in wanted,
            })
        return str(write_manifest(path, entries, source=db.databaseDirectory))

    # ------------------------------------------------------------------ label store

    def storePath(self, override: str = "") -> str:
        """The explicit path, else the one chosen in Settings, else the store already open, else the
        default beside the DICOM database."""
        if override or self.storePathSetting or self._storePath:
            return override or self.storePathSetting or self._storePath
        from SeriesClassifierLib.labels.store import default_store_path

        return str(default_store_path(self.database().databaseDirectory))

    def setStorePath(self, path: str) -> None:
        """Settings → label store: corrections, acceptances and exports use it from now on."""
        self.storePathSetting = path or ""
        if self._store is not None and self.storePathSetting and self.storePathSetting != self._storePath:
            self.store()

    def store(self, override: str = ""):
        path = self.storePath(override)
        if self._store is None or path != self._storePath:
            from SeriesClassifierLib.labels.store import LabelStore

            if self._store is not None:
                self._store.close()
            self._store, self._storePath = LabelStore(path), path
        return self._store

    # ------------------------------------------------------------------ classification

    @staticmethod
    def moduleDir() -> str:
        return os.path.dirname(os.path.abspath(__file__))

    def workDir(self) -> str:
        path = os.path.join(slicer.app.temporaryPath, "SeriesClassifier")
        os.makedirs(path, exist_ok=True)
        return path

    def gradcamDir(self) -> str:
        path = os.path.join(self.workDir(), "gradcam")
        os.makedirs(path, exist_ok=True)
        return path

    def workerEnvironment(self) -> dict:
        """PythonSlicer's own launcher sets Slicer's paths up from the startup environment (as
        MONAIAuto3DSeg launches it); the engine is found through PYTHONPATH."""
        try:
            env = dict(slicer.util.startupEnvironment())
        except Exception:  # not inside the Slicer application
            env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.moduleDir(), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @staticmethod
    def pythonExecutable() -> str:
        return shutil.which("PythonSlicer") or sys.executable

    def session(self):
        """The warm worker: one PythonSlicer process per session, models loaded once, started on first use."""
        if self._session is None:
            from SeriesClassifierLib.run.worker_session import WorkerSession

            arguments = [self.pythonExecutable(), "-u", "-m", "SeriesClassifierLib.run.worker", "--serve"]
            self._session = WorkerSession(self.transportFactory(), arguments, self.workerEnvironment())
        return self._session

    def _options(self, manifest: str, useCnn: bool, device: str, **more: Any) -> dict:
        return dict({"source": manifest, "models": self.modelsDir or None, "use_cnn": bool(useCnn),
                     "device": device or "auto"}, **more)

    def classify(self, seriesUids: list, onEvent: Callable = None, onFinished: Callable = None,
                 wait: bool = False, *, useCnn: bool = True, gradcam: bool = True, device: str = "auto",
                 storePath: str = "") -> int:
        """Classify in the warm worker; each prediction goes to the label store as it arrives.
        ``onFinished(exitCode, crashed, cancelled, message)`` once at the end. Returns the request id."""
        session = self.session()
        if session.busy("classify"):
            raise RuntimeError(_("A classification is already running."))
        manifest = self.writeManifest(
            seriesUids, os.path.join(self.workDir(), f"manifest-{os.getpid()}-{time.time_ns()}.json"))
        store = self.store(storePath)

        def handle(event: dict) -> None:
            self.handleEvent(event, store)
            if onEvent:
                onEvent(event)

        def done(ok: bool, cancelled: bool, message: str) -> None:
            self.updateResultsTable()
            if onFinished:
                onFinished(0 if ok else 1, not ok and not cancelled and not session.isRunning(), cancelled, message)

        options = self._options(manifest, useCnn, device, gradcam_dir=self.gradcamDir() if gradcam else None)
        self.classifyRequest = session.request("classify", options, handle, done)
        if wait:
            session.wait(self.classifyRequest)
        return self.classifyRequest

    def cancel(self) -> None:
        """Stop the real Python processes: the warm worker (the next request starts a new one) and the
        sample generator."""
        if self._session is not None:
            self._session.cancel()
        if self.sampleWorker is not None:
            self.sampleWorker.cancel()

    def shutdown(self) -> None:
        """The module is going away: let the worker finish (it also ends when its input closes)."""
        if self._session is not None:
            self._session.quit()
        if self.sampleWorker is not None:
            self.sampleWorker.cancel()

    def handleEvent(self, event: dict, store: Any = None) -> None:
        kind = event.get("type")
        if kind == "prediction":
            from SeriesClassifierLib.run.worker import prediction_from_event

            prediction = prediction_from_event(event)
            self.predictions[prediction.series_uid] = prediction
            if store is not None:
                store.record_predictions([prediction])
        elif kind == "gradcam":
            self.gradcams[(event["series_uid"], event["head"], event["class"])] = event["path"]
        elif kind == "start":
            self.device = event.get("device", "")
        elif kind in ("error", "log"):
            self.messages.append(event.get("message", ""))
            logging.warning("SeriesClassifier: %s%s", event.get("series_uid", "") and event["series_uid"] + ": ",
                            event.get("message", ""))

    # ------------------------------------------------------------------ review

    def label(self, seriesUid: str) -> Optional[dict]:
        """The human label (accepted or corrected) for the results table, or None while unreviewed."""
        try:
            store = self.store()
        except RuntimeError:  # no database open and no store chosen: nothing reviewed yet
            return None
        record = store.current(seriesUid)
        if record is None or record.state == "unreviewed":
            return None
        return {"sequence": record.sequence, "orientation": record.orientation, "state": record.state}

    def rows(self, seriesUids: list = None) -> list:
        from SeriesClassifierLib.slicer.mrml import result_row

        uids = seriesUids if seriesUids is not None else list(self.predictions)
        return [result_row(self.predictions[u], self.label(u)) for u in uids if u in self.predictions]

    def updateResultsTable(self):
        """The results as a table node in the scene (saved with it, shown by the Tables module)."""
        from SeriesClassifierLib.slicer import mrml

        if self.resultsTableNode is not None and slicer.mrmlScene.GetNodeByID(self.resultsTableNode.GetID()) is None:
            self.resultsTableNode = None
        self.resultsTableNode = mrml.create_results_table(slicer.mrmlScene, self.rows(), node=self.resultsTableNode)
        return self.resultsTableNode

    def correct(self, seriesUid: str, sequence: str = None, orientation: str = None) -> None:
        """Written to the store at once; the store adds the model version the prediction came from."""
        self.store().correct(seriesUid, sequence=sequence, orientation=orientation,
                                            user=self.user or None, source="slicer")
        self.updateResultsTable()

    def accept(self, seriesUids: list) -> None:
        store = self.store()
        for uid in seriesUids:
            store.accept(uid, user=self.user or None, source="slicer")
        self.updateResultsTable()

    def confidentUnreviewed(self, seriesUids: list) -> list:
        return [u for u in seriesUids if u in self.predictions and not self.predictions[u].needs_review
                and not self.predictions[u].error and self.label(u) is None]

    # ------------------------------------------------------------------ viewing

    def loadSeries(self, seriesUid: str):
        """The series as a volume (DICOMScalarVolumePlugin through DICOMUtils), loaded once per session."""
        nodeId = self._loadedVolumes.get(seriesUid)
        node = slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None
        if node is None:
            from DICOMLib import DICOMUtils

            nodeIds = DICOMUtils.loadSeriesByUID([seriesUid])
            volumes = [slicer.mrmlScene.GetNodeByID(i) for i in nodeIds]
            volumes = [v for v in volumes if v is not None and v.IsA("vtkMRMLScalarVolumeNode")]
            if not volumes:
                raise RuntimeError(_("Series {uid} could not be loaded as a volume").format(uid=seriesUid))
            node = volumes[0]
            self._loadedVolumes[seriesUid] = node.GetID()
        return node

    def forgetNodes(self) -> None:
        """The scene is closing: the loaded series and the overlay go with it."""
        self._loadedVolumes.clear()
        self.overlayNode = None
        self.resultsTableNode = None

    def heatmapFile(self, seriesUid: str, head: str, cls: str) -> Optional[str]:
        from SeriesClassifierLib.run.worker import heatmap_path

        path = self.gradcams.get((seriesUid, head, cls)) or str(heatmap_path(self.gradcamDir(), seriesUid, head, cls))
        return path if os.path.isfile(path) else None

    def showOverlay(self, path: str, background: Any, opacity: float):
        """Grad-CAM heat map file → overlay volume on the series grid, shown as the foreground layer;
        None (and no overlay) when the series has no single grid (several image planes)."""
        from SeriesClassifierLib.run.worker import load_heatmap
        from SeriesClassifierLib.slicer import mrml

        heat, geometry, meta = load_heatmap(path)
        if self.overlayNode is not None and slicer.mrmlScene.GetNodeByID(self.overlayNode.GetID()) is None:
            self.overlayNode = None
        try:
            self.overlayNode = mrml.create_overlay_volume(
                slicer.mrmlScene, heat, geometry, name="SeriesClassifier Grad-CAM", node=self.overlayNode
            )
        except ValueError as e:  # a multi-plane (MIXED) series has no single grid to put a volume on
            logging.info("SeriesClassifier: no overlay for %s: %s", path, e)
            self.hideOverlay(background)
            return None
        self.overlayNode.SetAttribute("SeriesClassifier.Target", f"{meta.get('head')}:{meta.get('target')}")
        mrml.set_foreground(slicer.mrmlScene, self.overlayNode, opacity, background_node=background)
        return self.overlayNode

    def hideOverlay(self, background: Any = None) -> None:
        """Take our overlay out of the views showing it; foreground layers the user set elsewhere stay."""
        from SeriesClassifierLib.slicer import mrml

        if self.overlayNode is not None:
            mrml.clear_foreground(slicer.mrmlScene, self.overlayNode)

    def setOverlayOpacity(self, opacity: float) -> None:
        from SeriesClassifierLib.slicer.mrml import set_foreground_opacity

        if self.overlayNode is not None:
            set_foreground_opacity(slicer.mrmlScene, opacity, self.overlayNode)

    def requestGradCam(self, seriesUid: str, head: str, cls: str, onReady: Callable, useCnn: bool = True,
                       device: str = "auto") -> int:
        """A heat map for another head/class from the warm worker (no new process, models already loaded);
        ``onReady(path or None)`` — never called for a request a newer click superseded or Cancel stopped."""
        manifest = self.writeManifest(
            [seriesUid], os.path.join(self.workDir(), f"gradcam-{os.getpid()}-{time.time_ns()}.json"))
        written = []  # the worker names the class it explained (the predicted one when cls is None)

        def collect(event: dict) -> None:
            if event.get("type") == "gradcam" and event.get("series_uid") == seriesUid:
                written.append(event["path"])
                self.gradcams[(seriesUid, event["head"], event["class"])] = event["path"]

        def done(ok: bool, cancelled: bool, message: str) -> None:
            if cancelled:
                return
            onReady(written[-1] if written else None)

        options = self._options(manifest, useCnn, device, series_uids=[seriesUid], gradcam_dir=self.gradcamDir(),
                                gradcam_head=head, gradcam_class=cls or None)
        self.gradcamRequest = self.session().request("gradcam", options, collect, done)
        return self.gradcamRequest

    # ------------------------------------------------------------------ export and sample

    def export(self, fmt: str, path: str, anonymise: bool = True) -> str:
        from SeriesClassifierLib.labels.export import export, write_export

        store = self.store()
        return str(write_export(export(store.records(), fmt, store.vocabulary, anonymise=anonymise), path))

    def startSampleStudy(self, folder: str, onFinished: Callable, seed: int = 7) -> WorkerProcess:
        """Generate the sample study in a PythonSlicer process (about a minute of CPU: never in the GUI
        thread), then import it; ``onFinished(number of series or None, message)``."""

        def finished(exitCode: int, crashed: bool, cancelled: bool, stderrTail: str) -> None:
            # A Qt slot: nothing may escape it (the panel would keep "Load sample" disabled).
            try:
                if exitCode != 0 or crashed or cancelled:
                    onFinished(None, stderrTail or _("cancelled"))
                    return
                with open(os.path.join(folder, "labels.csv"), newline="", encoding="utf-8") as f:
                    n = sum(1 for _row in csv.DictReader(f))
                if n == 0:
                    onFinished(None, _("The generator wrote no series.") + "\n" + stderrTail)
                    return
                from DICOMLib import DICOMUtils

                if not DICOMUtils.importDicom(folder, self.database()):  # returns False, does not raise
                    onFinished(None, _("Importing {folder} into the DICOM database failed (see the log).").format(
                        folder=folder))
                    return
                onFinished(n, "")
            except Exception as e:
                logging.exception("SeriesClassifier: sample study")
                onFinished(None, f"{type(e).__name__}: {e}")

        arguments = [self.pythonExecutable(), "-u", "-m", "SeriesClassifierLib", "synth", folder, "--studies", "1",
                     "--seed", str(seed)]
        self.sampleWorker = WorkerProcess(arguments, self.workerEnvironment(),
                                          lambda event: logging.info("SeriesClassifier sample: %s",
                                                                     event.get("message", "")), finished)
        self.sampleWorker.start()
        return self.sampleWorker

    def generateSampleStudy(self, folder: str, seed: int = 7) -> list:
        """A small simulated study (the engine's generator, no download) imported into the database."""
        from DICOMLib import DICOMUtils

        from SeriesClassifierLib.synth.generate import generate_studies

        rows = generate_studies(folder, 1, seed)
        if not DICOMUtils.importDicom(folder, self.database()):
            raise RuntimeError(_("Importing {folder} into the DICOM database failed.").format(folder=folder))
        return rows


#
# SeriesClassifierWidget
#


class SeriesClassifierWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin: forwards user actions to the logic and shows its state."""

    # results-table columns shown (names from mrml.result_columns); the rest is in the details line
    DISPLAY_COLUMNS = [
        "series_number", "series_description", "n_images", "sequence", "sequence_probability", "orientation",
        "orientation_probability", "attr_contrast", "attr_acquisition", "attr_fat_suppressed", "attr_derived",
        "agreement", "needs_review", "outcome", "label_sequence", "label_orientation", "review_state",
    ]
    UID_ROLE = qt.Qt.UserRole + 1

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingLabel = False
        self._depsChecked = False
        self._selectTimer = None
        self._columns = []
        self._rows = {}  # series UID -> its results-table values (mrml.result_row)

    def setup(self) -> None:
        from SeriesClassifierLib.slicer.results_view import REVIEW_FILTERS

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SeriesClassifier.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SeriesClassifierLogic()

        self._loadSettings()
        self.ui.progressBar.hide()
        self._selectTimer = qt.QTimer()
        self._selectTimer.setSingleShot(True)
        self._selectTimer.setInterval(250)  # loading a series is slow: wait until the user stops scrolling
        self._selectTimer.connect("timeout()", self.onShowCurrentSeries)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.refreshButton.connect("clicked(bool)", self.onRefresh)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.classifyButton.connect("clicked(bool)", self.onClassify)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        for reviewFilter in REVIEW_FILTERS:  # the mode is the item's data, never its position
            self.ui.filterComboBox.addItem(_(reviewFilter.title), reviewFilter.name)
        self.ui.filterComboBox.connect("currentIndexChanged(int)", self.applyFilter)
        self.ui.searchLineEdit.connect("textChanged(QString)", self.applyFilter)
        self.ui.resultsTable.connect("currentCellChanged(int,int,int,int)", self.onCurrentRowChanged)
        self.ui.sequenceComboBox.connect("activated(int)", self.onSequenceChosen)
        self.ui.orientationComboBox.connect("activated(int)", self.onOrientationChosen)
        self.ui.codeLineEdit.connect("returnPressed()", self.onCodeEntered)
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptSelected)
        self.ui.acceptConfidentButton.connect("clicked(bool)", self.onAcceptConfident)
        self.ui.nextReviewButton.connect("clicked(bool)", self.onNextToReview)
        self.ui.gradcamHeadComboBox.connect("currentIndexChanged(int)", self.onHeadChanged)
        self.ui.gradcamClassComboBox.connect("activated(int)", lambda _i: self.onShowCurrentSeries())
        self.ui.showGradCamCheckBox.connect("toggled(bool)", lambda _on: self.onShowCurrentSeries())
        self.ui.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.exportCsvButton.connect("clicked(bool)", lambda: self.onExport("csv"))
        self.ui.exportJsonButton.connect("clicked(bool)", lambda: self.onExport("json"))
        self.ui.exportBidsButton.connect("clicked(bool)", lambda: self.onExport("bids"))
        self.ui.exportDcm2bidsButton.connect("clicked(bool)", lambda: self.onExport("dcm2bids"))
        self.ui.exportHeudiconvButton.connect("clicked(bool)", lambda: self.onExport("heudiconv"))
        self.ui.checkDependenciesButton.connect("clicked(bool)", lambda: self.checkDependencies(force=True))
        for widget, signalName in ((self.ui.deviceComboBox, "currentIndexChanged(int)"),
                               (self.ui.modelsPathLineEdit, "currentPathChanged(QString)"),
                               (self.ui.storePathLineEdit, "currentPathChanged(QString)"),
                               (self.ui.userLineEdit, "editingFinished()")):
            widget.connect(signalName, self._saveSettings)
        self._installShortcuts()
        self._fillVocabulary()  # vocabulary.py needs only the standard library: safe before any install
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.logic:
            self.logic.shutdown()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        db = slicer.dicomDatabase
        if db is not None and db.isOpen and not self.ui.studyTreeWidget.topLevelItemCount:
            self.onRefresh()

    def exit(self) -> None:
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.forgetNodes()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, node) -> None:
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = node
        if node is not None:
            self._parameterNodeGuiTag = node.connectGui(self.ui)  # widgets with a SlicerParameterName

    # ------------------------------------------------------------------ settings (per user, not per scene)

    def _loadSettings(self) -> None:
        s = qt.QSettings()
        self.ui.deviceComboBox.currentText = s.value("SeriesClassifier/device", "auto")
        self.ui.modelsPathLineEdit.currentPath = s.value("SeriesClassifier/modelsDir", "")
        self.ui.storePathLineEdit.currentPath = s.value("SeriesClassifier/storePath", "")
        self.ui.userLineEdit.text = s.value("SeriesClassifier/user", "")
        self._applySettings()

    def _saveSettings(self, *_args) -> None:
        s = qt.QSettings()
        s.setValue("SeriesClassifier/device", self.ui.deviceComboBox.currentText)
        s.setValue("SeriesClassifier/modelsDir", self.ui.modelsPathLineEdit.currentPath)
        s.setValue("SeriesClassifier/storePath", self.ui.storePathLineEdit.currentPath)
        s.setValue("SeriesClassifier/user", self.ui.userLineEdit.text)
        self._applySettings()

    def _applySettings(self) -> None:
        self.logic.modelsDir = self.ui.modelsPathLineEdit.currentPath
        self.logic.user = self.ui.userLineEdit.text
        self.logic.setStorePath(self.ui.storePathLineEdit.currentPath)  # at once, not at the next classification

    # ------------------------------------------------------------------ dependencies (first use, after asking)

    def checkDependencies(self, force: bool = False) -> bool:
        if self._depsChecked and not force:
            return True
        with errorsShown(_("Failed to install the Python packages."), waitCursor=True):
            ok = self.logic.setupPythonRequirements(useCnn=self.ui.useCnnCheckBox.checked)
            self._depsChecked = ok
            self._fillVocabulary()
            _installed, torchText = self.logic.torchStatus()
            self.ui.modelInfoLabel.text = torchText
            return ok
        return False

    def _fillVocabulary(self) -> None:
        """Combo boxes from the vocabulary file, through the engine (the only place codes come from)."""
        if self.ui.sequenceComboBox.count:
            return
        from SeriesClassifierLib.vocabulary import load_vocabulary

        vocabulary = load_vocabulary()
        for s in vocabulary.sequences:
            self.ui.sequenceComboBox.addItem(f"{s.code} — {s.name}", s.code)
        for o in vocabulary.orientations:
            self.ui.orientationComboBox.addItem(f"{o.code} — {o.name}", o.code)
        self.ui.gradcamHeadComboBox.addItem(_("sequence"), "sequence")
        self.ui.gradcamHeadComboBox.addItem(_("orientation"), "orientation")
        for a in vocabulary.attributes:
            self.ui.gradcamHeadComboBox.addItem(a.name, a.code)
        self.onHeadChanged()

    def _headClasses(self, head: str) -> list:
        from SeriesClassifierLib.vocabulary import load_vocabulary

        vocabulary = load_vocabulary()
        if head == "sequence":
            return vocabulary.sequence_codes
        if head == "orientation":
            return vocabulary.orientation_codes
        return list(vocabulary.attribute(head).values)

    # ------------------------------------------------------------------ browsing

    def onRefresh(self) -> None:
        tree = self.ui.studyTreeWidget
        tree.clear()
        with errorsShown(_("Could not read the DICOM database."), waitCursor=True):
            self.logic.ensureTagsPrecached()
            for patient in self.logic.browse():
                pItem = qt.QTreeWidgetItem(tree, [patient["name"] or str(patient["patient"]), "", ""])
                for study in patient["studies"]:
                    sItem = qt.QTreeWidgetItem(pItem, [study["description"] or study["study_uid"], study["date"],
                                                       str(len(study["series"]))])
                    sItem.setData(0, self.UID_ROLE, study["study_uid"])
                    for series in study["series"]:
                        label = f"{series['number']}: {series['description']}" if series["number"] else series[
                            "description"]
                        item = qt.QTreeWidgetItem(sItem, [label or series["series_uid"], "", series["modality"]])
                        item.setData(0, self.UID_ROLE, series["series_uid"])
                pItem.setExpanded(True)
            tree.resizeColumnToContents(0)

    def selectedSeries(self) -> list:
        """Series UIDs of the scope: the whole database, or what is selected (patients/studies expand)."""
        if self.ui.scopeComboBox.currentIndex == 1:
            return self.logic.allSeries()
        uids = []

        def collect(item) -> None:
            if item.childCount() == 0 and item.data(0, self.UID_ROLE):
                uids.append(item.data(0, self.UID_ROLE))
            for i in range(item.childCount()):
                collect(item.child(i))

        for item in self.ui.studyTreeWidget.selectedItems():
            collect(item)
        return list(dict.fromkeys(uids))

    def onLoadSample(self) -> None:
        started = False
        try:
            with errorsShown(_("Could not create the sample study."), waitCursor=True):
                if not self.logic.setupPythonRequirements(sample=True, useCnn=self.ui.useCnnCheckBox.checked):
                    return
                folder = os.path.join(self.logic.workDir(), f"sample-study-{time.time_ns()}")
                self.ui.loadSampleButton.enabled = False
                self.ui.statusLabel.text = _("Generating a simulated study (about a minute)…")
                self.logic.startSampleStudy(folder, self.onSampleStudyReady)
                started = True
        finally:
            if not started:
                self.ui.loadSampleButton.enabled = True

    def onSampleStudyReady(self, nSeries: Optional[int], message: str) -> None:
        self.ui.loadSampleButton.enabled = True
        if nSeries is None:
            self.ui.statusLabel.text = _("The sample study could not be generated.")
            slicer.util.errorDisplay(_("The sample study could not be generated."), detailedText=message)
            return
        self.ui.statusLabel.text = _("Imported a simulated study with {n} series.").format(n=nSeries)
        self.onRefresh()

    # ------------------------------------------------------------------ classifying

    def onClassify(self) -> None:
        if not self.checkDependencies():
            return
        uids = self.selectedSeries()
        if not uids:
            slicer.util.warningDisplay(_("Select patients, studies or series first (or choose Whole database)."))
            return
        self._setupTable()
        self.ui.progressBar.maximum = len(uids)
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.classifyButton.enabled = False
        self.ui.cancelButton.enabled = True
        self.ui.statusLabel.text = _("Classifying {n} series…").format(n=len(uids))
        started = False
        try:  # tryWithErrorDisplay re-raises: only a finally is sure to put the panel back
            with errorsShown(_("Could not start the classification."), waitCursor=True):
                self.logic.classify(
                    uids, self.onWorkerEvent, self.onWorkerFinished, useCnn=self.ui.useCnnCheckBox.checked,
                    gradcam=self.ui.gradcamOnClassifyCheckBox.checked and self.ui.useCnnCheckBox.checked,
                    device=self.ui.deviceComboBox.currentText, storePath=self.ui.storePathLineEdit.currentPath,
                )
                started = True
        finally:
            if not started:
                self._classifyingDone()
                self.ui.statusLabel.text = _("The classification did not start.")

    def onCancel(self) -> None:
        self.logic.cancel()
        self.ui.statusLabel.text = _("Cancelling…")

    def onWorkerEvent(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "prediction":
            self._upsertRow(event["series_uid"])
        elif kind == "progress":
            self.ui.progressBar.maximum = event["total"]
            self.ui.progressBar.value = event["done"]
        elif kind == "start":
            self.ui.deviceLabel.text = event.get("device", "")
        elif kind == "error":
            self.ui.statusLabel.text = event.get("message", "")

    def onWorkerFinished(self, exitCode: int, crashed: bool, cancelled: bool, stderrTail: str) -> None:
        self._classifyingDone()
        n = len(self.logic.predictions)
        if cancelled:
            self.ui.statusLabel.text = _("Cancelled; {n} series classified.").format(n=n)
        elif exitCode != 0 or crashed:
            self.ui.statusLabel.text = _("The classification process failed (exit code {code}).").format(code=exitCode)
            slicer.util.errorDisplay(_("The classification process failed."), detailedText=stderrTail)
        else:
            errors = len(self.logic.messages)
            self.ui.statusLabel.text = _("Done: {n} series classified, {e} messages.").format(n=n, e=errors)
        self.applyFilter()

    def _classifyingDone(self) -> None:
        self.ui.classifyButton.enabled = True
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.hide()

    # ------------------------------------------------------------------ results table

    def _setupTable(self) -> None:
        from SeriesClassifierLib.slicer.mrml import result_columns

        titles = {c.name: c.title for c in result_columns()}
        self._columns = list(self.DISPLAY_COLUMNS)
        table = self.ui.resultsTable
        table.setColumnCount(len(self._columns))
        table.setHorizontalHeaderLabels([titles[c] for c in self._columns])
        table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(22)

    def _rowOf(self, seriesUid: str) -> int:
        for row in range(self.ui.resultsTable.rowCount):
            item = self.ui.resultsTable.item(row, 0)
            if item is not None and item.data(self.UID_ROLE) == seriesUid:
                return row
        return -1

    def _upsertRow(self, seriesUid: str) -> None:
        from SeriesClassifierLib.slicer.results_view import awaits_review, sequence_colour

        if not self._columns:
            self._setupTable()
        (values,) = self.logic.rows([seriesUid])
        self._rows[seriesUid] = values  # what the filter reads: the values, not the cells' text
        table = self.ui.resultsTable
        table.setSortingEnabled(False)  # rows move while sorted: fill first, sort after
        row = self._rowOf(seriesUid)
        if row < 0:
            row = table.rowCount
            table.insertRow(row)
        color = qt.QColor(*sequence_colour(values))
        for column, name in enumerate(self._columns):
            value = values[name]
            item = qt.QTableWidgetItem()
            if isinstance(value, bool):
                item.setText(_("yes") if value else "")
            elif isinstance(value, float):
                item.setData(qt.Qt.DisplayRole, round(value, 3) if value == value else -1.0)
            elif isinstance(value, int):
                item.setData(qt.Qt.DisplayRole, value)
            else:
                item.setText(str(value))
            item.setData(self.UID_ROLE, seriesUid)
            if name in ("sequence", "sequence_probability"):
                item.setBackground(qt.QBrush(color))
            if awaits_review(values):  # bold: what a person still has to look at
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            table.setItem(row, column, item)
        table.setSortingEnabled(True)
        self._applyFilterToRow(self._rowOf(seriesUid))
        self.ui.countLabel.text = _("{n} series").format(n=table.rowCount)

    def _rowValues(self, row: int) -> dict:
        """The row's values as the logic gave them (not its cells' display text)."""
        item = self.ui.resultsTable.item(row, 0)
        return self._rows.get(item.data(self.UID_ROLE), {}) if item is not None else {}

    def _applyFilterToRow(self, row: int) -> None:
        from SeriesClassifierLib.slicer.results_view import row_visible

        if row < 0:
            return
        mode = self.ui.filterComboBox.currentData or "all"
        visible = row_visible(self._rowValues(row), mode, self.ui.searchLineEdit.text)
        self.ui.resultsTable.setRowHidden(row, not visible)

    def applyFilter(self, *_args) -> None:
        for row in range(self.ui.resultsTable.rowCount):
            self._applyFilterToRow(row)

    def currentSeries(self) -> Optional[str]:
        item = self.ui.resultsTable.item(self.ui.resultsTable.currentRow(), 0)
        return item.data(self.UID_ROLE) if item is not None else None

    def selectedRows(self) -> list:
        uids = []
        for index in self.ui.resultsTable.selectionModel().selectedRows():
            item = self.ui.resultsTable.item(index.row(), 0)
            if item is not None:
                uids.append(item.data(self.UID_ROLE))
        current = self.currentSeries()
        return uids or ([current] if current else [])

    def onCurrentRowChanged(self, row: int, column: int, previousRow: int, previousColumn: int) -> None:
        if row == previousRow:
            return
        uid = self.currentSeries()
        if uid is None:
            return
        prediction = self.logic.predictions[uid]
        label = self.logic.label(uid) or {}
        self._updatingLabel = True
        seq = label.get("sequence") or (prediction.sequence.label if prediction.sequence else None)
        ori = label.get("orientation") or (prediction.orientation.label if prediction.orientation else None)
        self.ui.sequenceComboBox.currentIndex = self.ui.sequenceComboBox.findData(seq) if seq else -1
        self.ui.orientationComboBox.currentIndex = self.ui.orientationComboBox.findData(ori) if ori else -1
        self._updatingLabel = False
        self.ui.detailsLabel.text = self._details(prediction)
        self.onHeadChanged()
        self._selectTimer.start()

    @staticmethod
    def _details(prediction) -> str:
        parts = []
        if prediction.sequence:
            top = ", ".join(f"{c} {p:.2f}" for c, p in prediction.sequence.top(3))
            parts.append(_("Top 3: {top}").format(top=top))
        for name, output in prediction.models.items():
            if output.sequence:
                parts.append(f"{name}: {output.sequence.label} {output.sequence.probability:.2f}")
        if prediction.reasons:
            parts.append(_("Reasons: {r}").format(r="; ".join(prediction.reasons)))
        if prediction.error:
            parts.append(_("Error: {e}").format(e=prediction.error))
        return " · ".join(parts)

    # ------------------------------------------------------------------ correcting

    def _afterLabelChange(self, uids: list) -> None:
        for uid in uids:
            self._upsertRow(uid)

    def onSequenceChosen(self, index: int) -> None:
        if self._updatingLabel or index < 0:
            return
        self._correct(sequence=self.ui.sequenceComboBox.itemData(index))

    def onOrientationChosen(self, index: int) -> None:
        if self._updatingLabel or index < 0:
            return
        self._correct(orientation=self.ui.orientationComboBox.itemData(index))

    def _correct(self, sequence: str = None, orientation: str = None) -> None:
        uids = self.selectedRows()
        with errorsShown(_("Could not store the correction."), waitCursor=True):
            for uid in uids:
                self.logic.correct(uid, sequence=sequence, orientation=orientation)
            self._afterLabelChange(uids)
            self.ui.statusLabel.text = _("Stored the correction of {n} series.").format(n=len(uids))

    def onCodeEntered(self) -> None:
        """A sequence or orientation code, or a unique prefix of one (as in the terminal review)."""
        from SeriesClassifierLib.labels.review import resolve_code
        from SeriesClassifierLib.vocabulary import load_vocabulary

        text = self.ui.codeLineEdit.text
        vocabulary = load_vocabulary()
        code, error = resolve_code(text, vocabulary.sequence_codes)
        if code:
            self._correct(sequence=code)
        else:
            orientation, _error = resolve_code(text, vocabulary.orientation_codes, "orientation")
            if orientation:
                self._correct(orientation=orientation)
            else:
                self.ui.statusLabel.text = error
                return
        self.ui.codeLineEdit.clear()
        self.ui.resultsTable.setFocus()

    def onAcceptSelected(self) -> None:
        uids = self.selectedRows()
        with errorsShown(_("Could not store the acceptance."), waitCursor=True):
            self.logic.accept(uids)
            self._afterLabelChange(uids)
            self._moveToNextRow()

    def onAcceptConfident(self) -> None:
        table = self.ui.resultsTable
        listed = [table.item(r, 0).data(self.UID_ROLE) for r in range(table.rowCount) if not table.isRowHidden(r)]
        uids = self.logic.confidentUnreviewed(listed)
        if not uids or not slicer.util.confirmOkCancelDisplay(
            _("Accept the prediction of {n} confident, unreviewed series?").format(n=len(uids))
        ):
            return
        with errorsShown(_("Could not store the acceptance."), waitCursor=True):
            self.logic.accept(uids)
            self._afterLabelChange(uids)

    def pickGuess(self, rank: int) -> None:
        uid = self.currentSeries()
        prediction = self.logic.predictions.get(uid) if uid else None
        if prediction is None or prediction.sequence is None:
            return
        top = prediction.sequence.top(3)
        if rank <= len(top):
            self._correct(sequence=top[rank - 1][0])

    def _moveToNextRow(self) -> None:
        table = self.ui.resultsTable
        for row in range(table.currentRow() + 1, table.rowCount):
            if not table.isRowHidden(row):
                table.setCurrentCell(row, 0)
                return

    def onNextToReview(self) -> None:
        from SeriesClassifierLib.slicer.results_view import awaits_review

        table = self.ui.resultsTable
        start = table.currentRow() + 1
        for offset in range(table.rowCount):
            row = (start + offset) % max(table.rowCount, 1)
            if not table.isRowHidden(row) and awaits_review(self._rowValues(row)):
                table.setCurrentCell(row, 0)
                return
        self.ui.statusLabel.text = _("No listed series needs review.")

    def _installShortcuts(self) -> None:
        """Keys act when the table has focus, so typing elsewhere (code box, search) is not captured."""
        self._shortcuts = []
        bindings = [("Return", self.onAcceptSelected), ("Enter", self.onAcceptSelected),
                    ("A", self.onAcceptSelected), ("N", self.onNextToReview), ("C", self.ui.codeLineEdit.setFocus)]
        bindings += [(str(rank), (lambda r=rank: self.pickGuess(r))) for rank in (1, 2, 3)]
        for key, callback in bindings:
            shortcut = qt.QShortcut(qt.QKeySequence(key), self.ui.resultsTable)
            shortcut.setContext(qt.Qt.WidgetShortcut)
            shortcut.connect("activated()", callback)
            self._shortcuts.append(shortcut)

    # ------------------------------------------------------------------ viewing with Grad-CAM

    def onHeadChanged(self, *_args) -> None:
        head = self.ui.gradcamHeadComboBox.currentData
        if not head:
            return
        combo = self.ui.gradcamClassComboBox
        combo.clear()
        combo.addItem(_("(predicted)"), "")
        for code in self._headClasses(head):
            combo.addItem(code, code)

    def _gradcamTarget(self, uid: str) -> tuple:
        head = self.ui.gradcamHeadComboBox.currentData or "sequence"
        cls = self.ui.gradcamClassComboBox.currentData
        if not cls:
            cls = self.logic.predictions[uid].predicted_class(head) or ""
        return head, cls

    def onShowCurrentSeries(self) -> None:
        uid = self.currentSeries()
        if uid is None:
            return
        with errorsShown(_("Could not load the series."), waitCursor=True):
            volume = self.logic.loadSeries(uid)
            if not self.ui.showGradCamCheckBox.checked:
                self.logic.hideOverlay(volume)
                return
            head, cls = self._gradcamTarget(uid)
            path = self.logic.heatmapFile(uid, head, cls) if cls else None
            if path:
                if self.logic.showOverlay(path, volume, self.ui.opacitySlider.value) is None:
                    self.ui.statusLabel.text = _("This series lies in several planes: no single overlay to show.")
                slicer.util.resetSliceViews()
                return
            self.logic.hideOverlay(volume)
            slicer.util.resetSliceViews()
            if not self.ui.useCnnCheckBox.checked:
                return
            self.ui.statusLabel.text = _("Computing Grad-CAM of {head} = {cls}…").format(head=head, cls=cls or "?")

            def ready(path: Optional[str], uid=uid) -> None:
                if path and uid == self.currentSeries():
                    shown = self.logic.showOverlay(path, self.logic.loadSeries(uid), self.ui.opacitySlider.value)
                    self.ui.statusLabel.text = "" if shown is not None else _(
                        "This series lies in several planes: no single overlay to show.")
                elif not path:
                    self.ui.statusLabel.text = _("No Grad-CAM for this series (see the log).")

            self.logic.requestGradCam(uid, head, cls or None, ready, device=self.ui.deviceComboBox.currentText)

    def onOpacityChanged(self, value: float) -> None:
        self.logic.setOverlayOpacity(value)  # only the views showing our overlay

    # ------------------------------------------------------------------ export

    def onExport(self, fmt: str) -> None:
        from SeriesClassifierLib.labels.export import default_file_name

        name = default_file_name(fmt)
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export"), name,
                                              f"*{os.path.splitext(name)[1]}")
        if not path:
            return
        with errorsShown(_("Export failed."), waitCursor=True):
            written = self.logic.export(fmt, path, anonymise=self.ui.anonymiseCheckBox.checked)
            self.ui.statusLabel.text = _("Wrote {path}").format(path=written)


#
# SeriesClassifierTest
#


class SeriesClassifierTest(ScriptedLoadableModuleTest):
    """The whole flow inside Slicer on a generated study: import, classify in the worker, review, view, export."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SeriesClassifier_full_flow()

    def test_SeriesClassifier_full_flow(self) -> None:
        import csv

        from DICOMLib import DICOMUtils

        logic = SeriesClassifierLogic()
        missing = logic.missingPackages(sample=True)
        if missing:  # build machines without network: nothing to test against
            self.delayDisplay(f"Skipped: missing Python packages {', '.join(missing)}")
            return
        self.delayDisplay("Generating and importing a simulated study")
        work = slicer.util.tempDirectory()
        with DICOMUtils.TemporaryDICOMDatabase(os.path.join(work, "db")):
            rows = logic.generateSampleStudy(os.path.join(work, "study"), seed=3)
            seriesUids = logic.allSeries()
            self.assertEqual(len(seriesUids), len(rows))
            truth = {r.series_uid: r.sequence for r in rows}

            self.delayDisplay(f"Classifying {len(seriesUids)} series in the worker process")
            events = []
            outcome = {}
            logic.classify(seriesUids, events.append,
                           lambda code, crashed, cancelled, tail: outcome.update(code=code, tail=tail),
                           wait=True, gradcam=True, storePath=os.path.join(work, "labels.sqlite"))
            self.assertEqual(outcome.get("code"), 0, outcome.get("tail"))
            self.assertTrue(logic.session().isRunning())  # warm: the next request needs no new process
            self.assertEqual(set(logic.predictions), set(seriesUids))
            progress = [e for e in events if e["type"] == "progress"]
            self.assertEqual(progress[-1]["done"], len(seriesUids))
            correct = sum(p.sequence is not None and p.sequence.label == truth[u] for u, p in logic.predictions.items())
            self.delayDisplay(f"{correct}/{len(seriesUids)} sequences right; device {logic.device}")

            self.delayDisplay("Correcting one series and accepting another")
            first, second = seriesUids[0], seriesUids[1]
            store = logic.store(os.path.join(work, "labels.sqlite"))
            logic.correct(first, sequence=truth[first], orientation=None)
            record = store.current(first)
            self.assertEqual((record.state, record.sequence), ("corrected", truth[first]))
            self.assertEqual(store.history(first)[-1].model_version, logic.predictions[first].model_version)
            logic.accept([second])
            self.assertEqual(store.current(second).state, "accepted")
            self.assertEqual({r["review_state"] for r in logic.rows([first, second])}, {"corrected", "accepted"})

            self.delayDisplay("Loading a series with its Grad-CAM overlay")
            shown = [u for u in seriesUids if any(k[0] == u for k in logic.gradcams)]
            if shown:
                uid = shown[0]
                (key,) = [k for k in logic.gradcams if k[0] == uid][:1]
                volume = logic.loadSeries(uid)
                overlay = logic.showOverlay(logic.gradcams[key], volume, 0.6)
                composite = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceCompositeNode()
                self.assertEqual(composite.GetForegroundVolumeID(), overlay.GetID())
                self.assertEqual(composite.GetBackgroundVolumeID(), volume.GetID())
                volumeBounds, overlayBounds = [0.0] * 6, [0.0] * 6
                volume.GetRASBounds(volumeBounds)
                overlay.GetRASBounds(overlayBounds)
                for axis in range(3):  # the overlay covers the series (same grid up to half a voxel)
                    self.assertAlmostEqual(volumeBounds[2 * axis], overlayBounds[2 * axis], delta=3.0)
                    self.assertAlmostEqual(volumeBounds[2 * axis + 1], overlayBounds[2 * axis + 1], delta=3.0)

            self.delayDisplay("Grad-CAM of another series from the same (warm) worker")
            ready = []
            starts = logic.session().starts
            rid = logic.requestGradCam(seriesUids[-1], "sequence", None, ready.append)
            logic.session().wait(rid, 300)
            self.assertEqual(logic.session().starts, starts)
            self.assertTrue(ready and ready[0] and os.path.isfile(ready[0]))

            self.delayDisplay("Exporting CSV")
            out = logic.export("csv", os.path.join(work, "labels.csv"))
            with open(out, newline="", encoding="utf-8") as f:
                exported = list(csv.DictReader(f))
            self.assertEqual({r["series_uid"] for r in exported}, set(seriesUids))
        logic.shutdown()
        self.delayDisplay("Test passed")
