"""Rules of Slicer's own Python that slicer-core does not carry, checked against the module (issue 12).

Each rule is written down from Slicer's sources (see docs/SLICER.md for the lines):
- parameterNodeWrapper/guiConnectors.py: a slider binds only to a bounded number;
- util.tryWithErrorDisplay shows the error and raises it again;
- DICOMUtils.importDicom returns False instead of raising;
- ctkDICOMDatabase keeps the series' fields in its own tables (fieldForSeries), no file read needed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from worker_stubs import idle_worker_process

ROOT = Path(__file__).resolve().parent.parent
MODULE_FILE = ROOT / "SeriesClassifier" / "SeriesClassifier.py"
UI_FILE = ROOT / "SeriesClassifier" / "Resources" / "UI" / "SeriesClassifier.ui"


# ----------------------------------------------------------------------------------------------- Slicer stand-ins


class WithinRange:  # slicer/parameterNodeWrapper/validators.py
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Minimum:
    def __init__(self, minimum):
        self.minimum = minimum


class Maximum:
    def __init__(self, maximum):
        self.maximum = maximum


class Widget:
    """A Qt widget's properties as plain attributes."""

    def __init__(self, **props):
        self.visible = True
        self.__dict__.update(props)

    def hide(self):
        self.visible = False

    def show(self):
        self.visible = True


@pytest.fixture()
def slicer_module(monkeypatch, tmp_path):
    """SeriesClassifier.py imported with stand-ins that follow Slicer's rules; (module, shown errors)."""
    shown = []
    fake = types.ModuleType("slicer")
    try:
        import slicer as real

        if hasattr(real, "vtkMRMLScene"):
            fake.__dict__.update({k: v for k, v in vars(real).items() if k.startswith("vtk")})
            fake.mrmlScene = real.vtkMRMLScene()
    except ImportError:
        pass
    fake.app = SimpleNamespace(temporaryPath=str(tmp_path / "slicer-tmp"), processEvents=lambda: None,
                               testingEnabled=lambda: False)
    util = types.ModuleType("slicer.util")

    @contextlib.contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):  # noqa: N802 - Slicer's name
        try:
            yield
        except Exception as e:
            shown.append(f"{message}\n\n{e}")
            raise  # as Slicer's does (Base/Python/slicer/util.py)

    util.tryWithErrorDisplay = tryWithErrorDisplay
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    util.errorDisplay = lambda text, **kw: shown.append(text)
    util.startupEnvironment = lambda: {}
    fake.util = util
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget",
                 "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.WithinRange, pnw.Minimum, pnw.Maximum = WithinRange, Minimum, Maximum
    qt = types.ModuleType("qt")
    qt.Qt = SimpleNamespace(UserRole=256)
    for name, module in (("slicer", fake), ("slicer.util", util), ("slicer.ScriptedLoadableModule", slm),
                         ("slicer.parameterNodeWrapper", pnw), ("qt", qt)):
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("SeriesClassifier_under_test", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as Slicer imports it: annotations resolve in it
    spec.loader.exec_module(module)
    return module, shown


# ----------------------------------------------------------------------------------------------- 1. parameter node


SLIDERS = {"ctkSliderWidget", "qMRMLSliderWidget"}
SPIN_BOXES = {"QDoubleSpinBox", "ctkDoubleSpinBox", "qMRMLSpinBox", "ctkDoubleSlider"}


def connector_problems(widget_class: str, annotation) -> list:
    """What Slicer's GUI connectors (guiConnectors.py) would refuse, plus our own rule that spin boxes are
    bounded too (unbounded, the connector sets -inf..inf)."""
    base, extras = annotation, ()
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
    within = next((a for a in extras if isinstance(a, WithinRange)), None)
    bounded = within is not None or (any(isinstance(a, Minimum) for a in extras)
                                     and any(isinstance(a, Maximum) for a in extras))
    problems = []
    if widget_class in SLIDERS | SPIN_BOXES:
        if base not in (float, int):
            problems.append(f"{widget_class} binds float/int, not {base}")
        if not bounded:
            problems.append(f"Cannot have a connection to {widget_class} where the float types is unbounded.")
    elif widget_class in ("QSlider", "QSpinBox"):
        if base is not int:
            problems.append(f"{widget_class} binds int")
        if widget_class == "QSlider" and not bounded:
            problems.append("Cannot have a connection to QSlider where the int type is unbounded.")
    elif widget_class in ("QCheckBox", "ctkCheckablePushButton") and base is not bool:
        problems.append(f"{widget_class} binds bool")
    elif widget_class == "QLineEdit" and base is not str:
        problems.append("QLineEdit binds str")
    return problems


def bound_widgets() -> dict:
    out = {}
    for w in ET.parse(UI_FILE).getroot().iter("widget"):
        props = {p.get("name"): p for p in w.findall("property")}
        if "SlicerParameterName" in props:
            numbers = {k: float(props[k][0].text) for k in ("minimum", "maximum") if k in props}
            out[props["SlicerParameterName"].findtext("string")] = (w.get("class"), numbers)
    return out


def test_the_rule_check_catches_the_bug_it_is_for():
    assert connector_problems("ctkSliderWidget", float)  # issue 12, item 1: setup() ended in this
    assert not connector_problems("ctkSliderWidget", typing.Annotated[float, WithinRange(0, 1)])
    assert connector_problems("QDoubleSpinBox", float) and connector_problems("QCheckBox", int)


def test_parameter_node_types_follow_slicers_gui_connector_rules(slicer_module):
    module, _shown = slicer_module
    node = module.SeriesClassifierParameterNode
    hints = typing.get_type_hints(node, include_extras=True)
    widgets = bound_widgets()
    assert widgets
    for name, (cls, numbers) in widgets.items():
        assert name in hints, f"{name} is bound in the .ui but not a parameter node field"
        assert not connector_problems(cls, hints[name]), (name, connector_problems(cls, hints[name]))
        if typing.get_origin(hints[name]) is typing.Annotated:
            (within,) = [a for a in typing.get_args(hints[name])[1:] if isinstance(a, WithinRange)]
            assert within.minimum <= getattr(node, name) <= within.maximum
            if numbers:  # the range the connector sets is the one the .ui shows
                assert (within.minimum, within.maximum) == (numbers["minimum"], numbers["maximum"])


# ----------------------------------------------------------------------------------------------- 3. failed start


def _widget(module):
    w = module.SeriesClassifierWidget.__new__(module.SeriesClassifierWidget)
    w.ui = SimpleNamespace(
        progressBar=Widget(maximum=0, value=0), classifyButton=Widget(enabled=True),
        cancelButton=Widget(enabled=False), statusLabel=Widget(text=""), useCnnCheckBox=Widget(checked=False),
        gradcamOnClassifyCheckBox=Widget(checked=False), deviceComboBox=Widget(currentText="auto"),
        storePathLineEdit=Widget(currentPath=""), loadSampleButton=Widget(enabled=True),
    )
    w.checkDependencies = lambda: True
    w.selectedSeries = lambda: ["1.2.3"]
    w._setupTable = lambda: None
    return w


def _failing(message: str):
    """A logic call that fails as a missing PythonSlicer or network would."""

    def fail(*args, **kwargs):
        raise RuntimeError(message)

    return fail


def test_a_failed_start_puts_the_panel_back(slicer_module):
    module, shown = slicer_module
    w = _widget(module)

    w.logic = SimpleNamespace(classify=_failing("PythonSlicer not found"))
    w.onClassify()  # nothing escapes the Qt slot
    assert shown and "PythonSlicer not found" in shown[0]
    assert w.ui.classifyButton.enabled and not w.ui.cancelButton.enabled and not w.ui.progressBar.visible


def test_a_failed_sample_start_enables_the_button_again(slicer_module):
    module, shown = slicer_module
    w = _widget(module)

    w.logic = SimpleNamespace(setupPythonRequirements=_failing("no network"))
    w.onLoadSample()
    assert shown and w.ui.loadSampleButton.enabled


# ----------------------------------------------------------------------------------------------- 6. importDicom


@pytest.mark.parametrize("outcome", ["returns False", "raises", "no labels"])
def test_a_failed_dicom_import_is_reported_not_raised(slicer_module, monkeypatch, tmp_path, outcome):
    module, _shown = slicer_module
    Process, started = idle_worker_process()

    def importDicom(folder, db=None, copyFiles=False):  # noqa: N802 - DICOMUtils' name
        if outcome == "raises":
            raise OSError("database locked")
        return False  # what DICOMUtils.importDicom does on failure (Modules/Scripted/DICOMLib/DICOMUtils.py)

    dicomlib = types.ModuleType("DICOMLib")
    dicomlib.DICOMUtils = SimpleNamespace(importDicom=importDicom)
    monkeypatch.setitem(sys.modules, "DICOMLib", dicomlib)
    monkeypatch.setattr(module, "WorkerProcess", Process)
    module.slicer.dicomDatabase = SimpleNamespace(isOpen=True, databaseDirectory=str(tmp_path))
    folder = tmp_path / "sample"
    folder.mkdir()
    if outcome != "no labels":
        (folder / "labels.csv").write_text("series_uid,sequence\n1.2,T2_2D\n1.3,FLAIR_2D\n")
    logic = module.SeriesClassifierLogic()
    results = []
    logic.startSampleStudy(str(folder), lambda n, message: results.append((n, message)))
    started[0].onFinished(0, False, False, "")  # the generator finished fine
    ((n, message),) = results
    assert n is None and message


def test_the_generator_writing_no_series_is_a_failure(slicer_module, monkeypatch, tmp_path):
    module, _shown = slicer_module
    Process, started = idle_worker_process()

    monkeypatch.setattr(module, "WorkerProcess", Process)
    folder = tmp_path / "sample"
    folder.mkdir()
    (folder / "labels.csv").write_text("series_uid,sequence\n")
    results = []
    module.SeriesClassifierLogic().startSampleStudy(str(folder), lambda n, m: results.append((n, m)))
    started[0].onFinished(0, False, False, "torch missing")
    assert results[0][0] is None and "no series" in results[0][1]


# ----------------------------------------------------------------------------------------------- 5. store path


def test_the_store_path_from_settings_is_used_at_once(slicer_module, tmp_path):
    module, _shown = slicer_module
    if not hasattr(module.slicer, "mrmlScene"):
        pytest.skip("needs slicer-core")
    from SeriesClassifierLib.labels.store import LabelStore

    module.slicer.dicomDatabase = SimpleNamespace(isOpen=True, databaseDirectory=str(tmp_path / "db"))
    chosen = tmp_path / "site" / "labels.sqlite"
    chosen.parent.mkdir()
    logic = module.SeriesClassifierLogic()  # a new session: no classification has run
    w = module.SeriesClassifierWidget.__new__(module.SeriesClassifierWidget)
    w.logic = logic
    w.ui = SimpleNamespace(modelsPathLineEdit=Widget(currentPath=""), userLineEdit=Widget(text="dr"),
                           storePathLineEdit=Widget(currentPath=str(chosen)))
    w._applySettings()
    logic.correct("1.2.3", sequence="PD")
    assert LabelStore(chosen).current("1.2.3").sequence == "PD"
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").rglob("*.sqlite"))
    assert logic.label("1.2.3")["sequence"] == "PD"
    out = logic.export("csv", str(tmp_path / "out.csv"))
    assert "1.2.3" in Path(out).read_text()


# ----------------------------------------------------------------------------------------------- browsing


class CachedDatabase:
    """ctkDICOMDatabase's table reads; opening a file (fileValue of an uncached tag) fails the test."""

    isOpen = True
    tagsToPrecache = []

    def patients(self):
        return ["1"]

    def studiesForPatient(self, patient):  # noqa: N802
        return ["st1"]

    def seriesForStudy(self, study):  # noqa: N802
        return ["se1", "se2"]

    def nameForPatient(self, patient):  # noqa: N802
        return "Doe^Jane"

    def descriptionForStudy(self, study):  # noqa: N802
        return "MR BRAIN"

    def fieldForSeries(self, field, uid):  # noqa: N802
        return {"SeriesDescription": f"desc {uid}", "SeriesNumber": uid[-1], "Modality": "MR",
                "SeriesDate": "20240101"}[field]

    def fieldForStudy(self, field, study):  # noqa: N802
        return {"StudyDate": "20240102"}[field]

    def filesForSeries(self, uid, hits=-1):  # noqa: N802
        raise AssertionError("the browser listed files on the GUI thread")

    def fileValue(self, path, tag):  # noqa: N802
        raise AssertionError("the browser read a file on the GUI thread")


def test_browsing_reads_the_databases_own_fields(slicer_module):
    module, _shown = slicer_module
    module.slicer.dicomDatabase = CachedDatabase()
    (patient,) = module.SeriesClassifierLogic().browse()
    (study,) = patient["studies"]
    assert study["date"] == "20240102"
    assert [(s["description"], s["number"], s["modality"]) for s in study["series"]] == [
        ("desc se1", "1", "MR"), ("desc se2", "2", "MR")]


# ----------------------------------------------------------------------------------------------- dependencies


def test_the_dependency_check_tests_versions_not_presence(slicer_module, monkeypatch):
    import importlib.metadata

    module, _shown = slicer_module
    real = importlib.metadata.version
    old = {"scikit-learn": "1.2.2", "pydicom": "2.4.4"}  # too old / what Slicer 5.8 ships (fine)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: old.get(name) or real(name))
    missing = module.SeriesClassifierLogic().missingPackages()
    assert [m for m in missing if m.startswith("scikit-learn")] and not [m for m in missing if "pydicom" in m]


def test_one_requirements_list_for_pyproject_and_the_module():
    from SeriesClassifierLib.requirements import read_requirements, requirements_path

    try:
        import tomllib
    except ImportError:
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" in project["project"]["dynamic"] and "dependencies" not in project["project"]
    # setup.py fills them from the list by section (the built wheel's metadata: Testing/test_packaging.py)
    setup_py = (ROOT / "setup.py").read_text()
    assert "from SeriesClassifierLib.requirements import read_requirements" in setup_py
    assert requirements_path().resolve() == (ROOT / "SeriesClassifier/Resources/requirements.txt").resolve()
    core = read_requirements(("core",))
    assert any(r.startswith("pydicom") for r in core) and not any(r.startswith("torch") for r in core)
    assert read_requirements(("torch",))[0].startswith("torch")
    text = MODULE_FILE.read_text()
    assert not re.search(r"""["'][a-z-]+>=\d""", text), "a requirement spelled in the module: read it from the list"


@pytest.mark.parametrize("version, specs, ok", [
    ("2.4.4", [">=2.4"], True), ("3.0.1", [">=2.4"], True), ("2.3.0", [">=2.4"], False),
    ("2.13.0+cpu", [">=2.2", "<2.15"], True), ("2.15.0", [">=2.2", "<2.15"], False),
    ("1.6.1", [">=1.3"], True), ("1.26.4", ["==1.26.*"], True), ("2.0.0", ["==1.26.*"], False),
    ("1.13.1", ["~=1.13.0"], True), ("1.14.0", ["~=1.13.0"], False), ("weird", [">=1"], False),
])
def test_version_ranges(version, specs, ok):
    from SeriesClassifierLib.requirements import satisfies

    assert satisfies(version, specs) is ok
