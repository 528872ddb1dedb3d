"""The Slicer module without Slicer: packaging lists, widget names, Python 3.9, import hygiene.

``python Testing/test_slicer_module.py --write`` rewrites the file lists of
SeriesClassifier/CMakeLists.txt from the repository (run it after adding a file to the module).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "SeriesClassifier"
MODULE_FILE = MODULE_DIR / "SeriesClassifier.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SeriesClassifier.ui"
CMAKE_FILE = MODULE_DIR / "CMakeLists.txt"
ENGINE = "SeriesClassifierLib"
# Modules Slicer itself provides to a scripted module (its Python, not PyPI's).
SLICER_PROVIDED = {"slicer", "qt", "ctk", "vtk", "ctkqt", "SampleData", "DICOMLib", "PyTorchUtils"}
# What never belongs in the extension package.
JUNK = re.compile(r"(__pycache__|\.egg-info|\.pyc$|\.pyo$|\.DS_Store$|~$|\.orig$|\.rej$)")


# ----------------------------------------------------------------------------------------------- CMake lists


def module_files() -> list[str]:
    """Files the extension must ship, relative to SeriesClassifier/: what git tracks, else the tree."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "."], cwd=MODULE_DIR, capture_output=True, text=True,
                             check=True).stdout
        files = [line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = [str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*") if p.is_file()]
    files = [f.replace("\\", "/") for f in files if (MODULE_DIR / f).is_file()]
    return sorted(f for f in files if not JUNK.search(f) and f not in ("CMakeLists.txt", "SeriesClassifier.py"))


def expected_lists() -> tuple[list[str], list[str]]:
    files = module_files()
    scripts = ["SeriesClassifier.py"] + [f for f in files if f.endswith(".py")]
    resources = [f for f in files if not f.endswith(".py")]
    return scripts, resources


def _cmake_entry(path: str) -> str:
    return path.replace("SeriesClassifier", "${MODULE_NAME}", 1) if path.startswith("SeriesClassifier") else (
        path.replace("/SeriesClassifier.", "/${MODULE_NAME}.")
    )


def cmake_list(text: str, name: str) -> list[str]:
    m = re.search(rf"set\(\s*{name}\b(.*?)\)", text, re.S)
    assert m, f"{CMAKE_FILE}: no set({name} ...)"
    entries = [e for line in m.group(1).splitlines() for e in line.split("#", 1)[0].split()]
    return sorted(e.replace("${MODULE_NAME}", "SeriesClassifier") for e in entries)


def render_block(name: str, entries: list[str]) -> str:
    lines = "\n".join(f"  {_cmake_entry(e)}" for e in entries)
    return f"set({name}\n{lines}\n  )"


def write_lists() -> None:
    scripts, resources = expected_lists()
    text = CMAKE_FILE.read_text(encoding="utf-8")
    for name, entries in (("MODULE_PYTHON_SCRIPTS", scripts), ("MODULE_PYTHON_RESOURCES", resources)):
        text = re.sub(rf"set\(\s*{name}\b.*?\)", lambda _m, n=name, e=entries: render_block(n, e), text, count=1,
                      flags=re.S)
    CMAKE_FILE.write_text(text, encoding="utf-8")


def test_cmake_lists_every_engine_file_and_resource():
    text = CMAKE_FILE.read_text(encoding="utf-8")
    scripts, resources = expected_lists()
    listed_scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    listed_resources = cmake_list(text, "MODULE_PYTHON_RESOURCES")
    hint = " (run: python Testing/test_slicer_module.py --write)"
    assert not set(scripts) - set(listed_scripts), (
        f"missing from MODULE_PYTHON_SCRIPTS{hint}: {sorted(set(scripts) - set(listed_scripts))}"
    )
    assert not set(resources) - set(listed_resources), (
        f"missing from MODULE_PYTHON_RESOURCES{hint}: {sorted(set(resources) - set(listed_resources))}"
    )
    for entry in listed_scripts + listed_resources:  # no stale entries: the build would fail on them
        assert (MODULE_DIR / entry).is_file(), f"CMakeLists.txt lists {entry}, which does not exist{hint}"
    for required in ("Resources/UI/SeriesClassifier.ui", "Resources/Icons/SeriesClassifier.png",
                     "Resources/vocabulary.json"):
        assert required in listed_resources
    assert f"{ENGINE}/run/worker.py" in listed_scripts and f"{ENGINE}/synth/spec.py" in listed_scripts
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text


def test_extension_cmakelists_has_the_slicer_boilerplate():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for needle in ("project(SeriesClassifier)", "EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                   "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                   'set(EXTENSION_DEPENDS "PyTorch")', "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                   "add_subdirectory(SeriesClassifier)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                   "include(${Slicer_EXTENSION_CPACK})"):
        assert needle in text, needle
    category = re.search(r'EXTENSION_CATEGORY "([^"]+)"', text).group(1)
    assert category in ("Informatics", "Utilities")
    for local in ("Resources/SeriesClassifier.png", "Resources/Screenshots/panel.png"):
        assert local in text and (ROOT / local).is_file(), local  # the URLs point at files that exist


# ----------------------------------------------------------------------------------------------- widget names


def ui_tree() -> ET.ElementTree:
    return ET.parse(UI_FILE)


def ui_widget_names() -> dict[str, str]:
    """name -> class of every widget (and layout) in the .ui file."""
    root = ui_tree().getroot()
    names = {w.get("name"): w.get("class") for w in root.iter("widget")}
    names.update({lay.get("name"): lay.get("class") for lay in root.iter("layout")})
    return names


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


def ui_names_used(tree: ast.Module) -> set[str]:
    """Every X in ``self.ui.X`` in the module."""
    used = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            used.add(node.attr)
    return used


def test_every_widget_the_module_uses_is_in_the_ui_file():
    used = ui_names_used(module_tree())
    names = ui_widget_names()
    assert len(used) > 30  # the parser found the module's widgets, not nothing
    missing = sorted(used - set(names))
    assert not missing, f"SeriesClassifier.py uses self.ui.X that {UI_FILE.name} does not define: {missing}"


def test_ui_file_is_a_slicer_designer_form():
    root = ui_tree().getroot()
    assert root.tag == "ui" and root.get("version") == "4.0"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "SeriesClassifier"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique (childWidgetVariables maps names)"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    for w in root.iter("widget"):  # every non-Qt class must be declared, or Designer/loadUI cannot build it
        cls = w.get("class")
        assert cls.startswith("Q") or cls in declared, f"{w.get('name')}: custom widget {cls} not declared"


def parameter_node_fields(tree: ast.Module) -> dict[str, str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "SeriesClassifierParameterNode":
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no SeriesClassifierParameterNode class")


def test_parameter_names_in_the_ui_are_parameter_node_fields():
    """Names and base types; the GUI connectors' further rules (bounds) are checked in test_slicer_rules.py."""
    fields = {k: re.sub(r"^Annotated\[(\w+),.*\]$", r"\1", v) for k, v in parameter_node_fields(module_tree()).items()}
    kinds = {"QCheckBox": "bool", "ctkSliderWidget": "float", "QLineEdit": "str"}
    bound = {}
    for w in ui_tree().getroot().iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = w.get("class")
    assert bound, "no widget is bound to the parameter node"
    for name, cls in bound.items():
        assert name in fields, f"{name} is bound in the .ui but not a parameter node field"
        assert fields[name] == kinds[cls], f"{name}: {cls} needs a {kinds[cls]} field, not {fields[name]}"


def test_table_columns_the_widget_shows_exist():
    from SeriesClassifierLib.slicer.mrml import result_columns

    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DISPLAY_COLUMNS":
            shown = ast.literal_eval(node.value)
            break
    else:
        raise AssertionError("no DISPLAY_COLUMNS in the widget")
    names = {c.name for c in result_columns()}
    assert shown and not set(shown) - names, sorted(set(shown) - names)
    # the filter and row logic read these by name
    assert {"needs_review", "review_state", "sequence_probability", "series_description"} <= set(shown)


# ----------------------------------------------------------------------------------------------- Python 3.9 and imports


def test_module_file_compiles_for_slicers_python():
    source = MODULE_FILE.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(MODULE_FILE), feature_version=(3, 9))
    compile(tree, str(MODULE_FILE), "exec")
    for cls in ("SeriesClassifier", "SeriesClassifierWidget", "SeriesClassifierLogic", "SeriesClassifierTest"):
        assert any(isinstance(n, ast.ClassDef) and n.name == cls for n in tree.body), cls


@pytest.mark.parametrize("path", sorted(ROOT.joinpath("Testing").glob("*.py")), ids=lambda p: p.name)
def test_test_modules_run_on_slicers_python(path):
    """The engine's tests also run under Python 3.9 (.ci/run): annotations such as ``list[str] | None`` in a
    signature are evaluated at import there unless annotations are postponed."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
    assert any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations"
               for a in n.names) for n in tree.body), f"{path.name}: add 'from __future__ import annotations'"


@pytest.mark.parametrize("path", sorted((MODULE_DIR / ENGINE).rglob("*.py")), ids=lambda p: p.name)
def test_engine_parses_for_slicers_python(path):
    """Slicer 5.6 ships Python 3.9; the engine runs inside it (worker and in-process)."""
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def top_level_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """(module, level) of imports executed when the module is imported (not those inside functions)."""
    found = []

    def visit(body) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((a.name, 0) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append((node.module or "", node.level))
            elif isinstance(node, (ast.If, ast.Try)):
                for part in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                    visit(part)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def engine_module_path(name: str) -> Path:
    parts = name.split(".")
    base = MODULE_DIR.joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def stdlib_only(name: str, seen: set[str] | None = None) -> bool:
    """Whether importing engine module ``name`` pulls in only the standard library (transitively)."""
    seen = set() if seen is None else seen
    if name in seen:
        return True
    seen.add(name)
    tree = ast.parse(engine_module_path(name).read_text(encoding="utf-8"))
    package = name.rsplit(".", 1)[0]
    for module, level in top_level_imports(tree):
        if level:
            target = ".".join(package.split(".")[: len(package.split(".")) - level + 1] + ([module] if module else []))
        else:
            target = module
        root = target.split(".")[0]
        if root == ENGINE:
            if not stdlib_only(target, seen):
                return False
        elif root not in sys.stdlib_module_names and root != "__future__":
            return False
    return True


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="needs Python 3.10+; runs in the main run")
def test_module_imports_nothing_at_load_that_needs_the_engines_dependencies():
    for module, level in top_level_imports(module_tree()):
        root = module.split(".")[0]
        assert level == 0, "the module file is not in a package"
        if root == ENGINE:
            assert stdlib_only(module), f"top-level import of {module} needs packages Slicer may lack"
        else:
            assert root in sys.stdlib_module_names or root in SLICER_PROVIDED or root == "__future__", (
                f"SeriesClassifier.py imports {module} at load time"
            )


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="needs Python 3.10+; runs in the main run")
def test_stdlib_only_check_can_fail():
    assert stdlib_only(f"{ENGINE}.vocabulary")
    assert not stdlib_only(f"{ENGINE}.run.worker")  # numpy


def test_engine_never_imports_slicer_qt_ctk_at_module_level():
    for path in sorted((MODULE_DIR / ENGINE).rglob("*.py")):
        for module, level in top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not level:
                assert module.split(".")[0] not in {"slicer", "qt", "ctk", "vtk", "DICOMLib", "PyTorchUtils"}, (
                    f"{path.relative_to(ROOT)} imports {module} at module level"
                )


# ----------------------------------------------------------------------------------------------- the Logic, headless
#
# SeriesClassifierLogic must work without the GUI. Here it runs against stand-ins for what only the Slicer
# application provides (the DICOM database, slicer.util, the app's temporary folder, qt) and the real MRML
# classes from slicer-core; the worker runs as a real subprocess, fed by the Logic's own manifest.


class FakeDicomDatabase:
    """The ctkDICOMDatabase methods the Logic calls, over a folder of DICOM files."""

    def __init__(self, folder: Path, directory: Path):
        import pydicom

        self.isOpen = True
        self.databaseDirectory = str(directory)
        self.tagsToPrecache = ["0010,0010"]
        self._files: dict[str, list[str]] = {}
        self._study: dict[str, str] = {}
        for path in sorted(folder.rglob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            self._files.setdefault(ds.SeriesInstanceUID, []).append(str(path))
            self._study[ds.SeriesInstanceUID] = ds.StudyInstanceUID

    def patients(self):
        return ["1"]

    def studiesForPatient(self, patient):  # noqa: N802 - CTK's names
        return sorted(set(self._study.values()))

    def seriesForStudy(self, study):  # noqa: N802
        return [s for s, st in self._study.items() if st == study]

    def filesForSeries(self, series, hits=-1):  # noqa: N802
        files = self._files.get(series, [])
        return files[:hits] if hits > 0 else files

    def studyForSeries(self, series):  # noqa: N802
        return self._study[series]

    def nameForPatient(self, patient):  # noqa: N802
        return "Test^Patient"

    def descriptionForStudy(self, study):  # noqa: N802
        return "MR BRAIN"

    def fileValue(self, path, tag):  # noqa: N802
        import pydicom

        group, element = (int(x, 16) for x in tag.split(","))
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return str(ds[group, element].value) if (group, element) in ds else ""


class SubprocessWorker:
    """Stands in for WorkerProcess (QProcess) with the same interface, on subprocess."""

    def __init__(self, arguments, environment, onEvent, onFinished):
        self.arguments, self.environment = arguments, environment
        self.onEvent, self.onFinished = onEvent, onFinished
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.environment)

    def isRunning(self):
        return self.proc is not None and self.proc.poll() is None

    def cancel(self):
        self.proc.terminate()

    def waitForFinished(self, timeoutSeconds=600):
        from SeriesClassifierLib.run.worker import EventReader

        out, err = self.proc.communicate(timeout=timeoutSeconds)
        reader = EventReader()
        for event in reader.feed(out) + reader.flush():
            self.onEvent(event)
        self.onFinished(self.proc.returncode, False, False, err.decode(errors="replace")[-2000:])
        return True


def _toy_study_and_models(tmp: Path) -> tuple[Path, Path]:
    """A three-series study to browse and a toy forest that knows its classes (it is the logic under test,
    not the models)."""
    from dicom_factory import write_series

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.models.forest import ForestModel

    study = tmp / "study"
    classes = {"T2_2D": (1, 0, 0, 0, 1, 0), "FLAIR_2D": (1, 0, 0, 0, 1, 0), "T1_2D_PRE": (0, 1, 0, 0, 0, -1)}
    for number, (name, iop) in enumerate(classes.items(), start=1):
        write_series(study / name, name, n_slices=4, iop=iop, number=number)
    train = tmp / "train"
    for number, (name, iop) in enumerate(classes.items(), start=1):
        for copy in range(2):
            write_series(train / f"{name}{copy}", name, n_slices=3, iop=iop, number=number)
    series = [read_series(r) for r in iter_series_refs(train)]
    models = tmp / "models"
    ForestModel(n_estimators=10).fit(series, {"sequence": [s.series_description for s in series]}).save(
        models, extra={"version": "toy"})
    return study, models


def _stand_in_modules(real_slicer, db, tmp: Path) -> dict:
    """sys.modules entries for the application: the real MRML classes, a DICOM database on a folder, and
    slicer.util / ScriptedLoadableModule / qt reduced to what the module file touches at import and in
    its logic. Asking the user or installing a package fails the test: the logic must do neither headless."""
    import types
    from types import SimpleNamespace

    scene = real_slicer.vtkMRMLScene()
    for _ in range(3):
        scene.AddNode(real_slicer.vtkMRMLSliceCompositeNode())
    fake = types.ModuleType("slicer")
    fake.__dict__.update({k: v for k, v in vars(real_slicer).items() if k.startswith("vtk")})
    fake.dicomDatabase = db
    fake.mrmlScene = scene
    fake.app = SimpleNamespace(temporaryPath=str(tmp / "slicer-tmp"), processEvents=lambda: None)
    util = types.ModuleType("slicer.util")

    class VTKObservationMixin:
        def __init__(self):
            pass

    util.VTKObservationMixin = VTKObservationMixin
    util.startupEnvironment = lambda: dict(os.environ)
    util.confirmOkCancelDisplay = lambda *a, **k: pytest.fail("the logic asked the user during a headless run")
    util.pip_install = lambda *a, **k: pytest.fail("the logic tried to install a package")
    fake.util = util
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class Base:
        def __init__(self, *args, **kwargs):
            pass

    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget",
                 "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (Base,), {}))
    qt = types.ModuleType("qt")
    qt.Qt = SimpleNamespace(UserRole=256)
    return {"slicer": fake, "slicer.util": util, "slicer.ScriptedLoadableModule": slm, "qt": qt}


@pytest.fixture(scope="module")
def slicer_logic(tmp_path_factory):
    """The module file imported with stand-ins for the application; yields (module, logic, db, folders)."""
    import importlib.util

    real_slicer = pytest.importorskip("slicer")
    if not hasattr(real_slicer, "vtkMRMLScene"):
        pytest.fail("the installed 'slicer' package is not slicer-core", pytrace=False)

    tmp = tmp_path_factory.mktemp("slicer_logic")
    study, models = _toy_study_and_models(tmp)
    db = FakeDicomDatabase(study, tmp / "dicomdb")
    stand_ins = _stand_in_modules(real_slicer, db, tmp)
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    try:
        spec = importlib.util.spec_from_file_location("SeriesClassifier", MODULE_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.WorkerProcess = SubprocessWorker
        from SeriesClassifierLib.run.worker_session import SubprocessTransport

        logic = module.SeriesClassifierLogic()
        logic.transportFactory = SubprocessTransport  # the warm worker on subprocess instead of QProcess
        logic.modelsDir = str(models)
        logic.user = "tester"
        yield module, logic, db, tmp
        logic.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_logic_browses_and_precaches_without_the_gui(slicer_logic):
    module, logic, db, tmp = slicer_logic
    added = logic.ensureTagsPrecached()
    assert "0008,103e" in added and "0008,103e" in db.tagsToPrecache and "0010,0010" in db.tagsToPrecache
    (patient,) = logic.browse()
    (study,) = patient["studies"]
    assert sorted(s["description"] for s in study["series"]) == ["FLAIR_2D", "T1_2D_PRE", "T2_2D"]
    assert len(logic.allSeries()) == 3
    assert logic.missingPackages() == []  # this environment has the engine's dependencies


def test_logic_manifest_carries_the_selection_and_its_study_siblings(slicer_logic):
    from SeriesClassifierLib.run.worker import read_manifest_selection

    module, logic, db, tmp = slicer_logic
    first = logic.allSeries()[0]
    refs, selected = read_manifest_selection(logic.writeManifest([first], str(tmp / "selection.json")))
    assert selected == [first]
    assert {r.series_uid for r in refs} == set(logic.allSeries())  # siblings as context only
    assert all(r.files and not r.missing for r in refs)


def test_logic_classifies_reviews_shows_and_exports_without_the_gui(slicer_logic):
    import csv

    import numpy as np

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.run import worker
    from SeriesClassifierLib.run.worker import read_manifest
    from SeriesClassifierLib.series import Geometry

    module, logic, db, tmp = slicer_logic
    uids = logic.allSeries()
    store_path = str(tmp / "labels.sqlite")
    events, outcome = [], {}
    logic.classify(uids, events.append, lambda code, crashed, cancelled, tail: outcome.update(code=code, tail=tail),
                   wait=True, useCnn=False, gradcam=False, storePath=store_path)
    assert outcome["code"] == 0, outcome["tail"]
    manifest = next(Path(logic.workDir()).glob("manifest-*.json"))
    assert {r.series_uid for r in read_manifest(manifest)} == set(uids)  # the worker got the database's files
    assert set(logic.predictions) == set(uids)
    assert [e["done"] for e in events if e["type"] == "progress"] == [0, 1, 2, 3]
    assert logic.device  # the start event said which device
    store = logic.store(store_path)
    assert {r.series_uid for r in store.records()} == set(uids)  # recorded as they arrived

    rows = logic.rows()
    assert len(rows) == 3 and all(r["review_state"] == "unreviewed" for r in rows)
    first, second, third = uids
    logic.correct(first, sequence="PD")
    logic.accept([second])
    by_uid = {r["series_uid"]: r for r in logic.rows()}
    assert by_uid[first]["review_state"] == "corrected" and by_uid[first]["label_sequence"] == "PD"
    assert by_uid[second]["review_state"] == "accepted"
    from SeriesClassifierLib.slicer.mrml import table_rows

    table = {r["series_uid"]: r for r in table_rows(logic.resultsTableNode)}  # the scene's copy follows
    assert set(table) == set(uids) and table[first]["label_sequence"] == "PD"
    assert module.slicer.mrmlScene.GetNodeByID(logic.resultsTableNode.GetID()) is logic.resultsTableNode
    (event,) = store.history(first)
    assert (event.user, event.source) == ("tester", "slicer")
    assert event.model_version == logic.predictions[first].model_version != ""
    assert logic.confidentUnreviewed(uids) in ([third], [])  # only the untouched one can still be bulk-accepted

    # the overlay for the selected series, on its grid, as the slice views' foreground
    ref = next(r for r in read_manifest(manifest) if r.series_uid == third)
    geometry = read_series(ref).geometry
    heat = np.linspace(0, 1, len(geometry.positions) * geometry.rows * geometry.columns, dtype=np.float32)
    path = worker.save_heatmap(
        worker.heatmap_path(logic.gradcamDir(), third, "sequence", "T1_2D_PRE"),
        heat.reshape(len(geometry.positions), geometry.rows, geometry.columns), geometry,
    )
    assert logic.heatmapFile(third, "sequence", "T1_2D_PRE") == str(path)
    assert logic.heatmapFile(third, "sequence", "T2_2D") is None
    background = module.slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "series")
    overlay = logic.showOverlay(str(path), background, 0.3)
    composites = module.slicer.mrmlScene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        c = composites.GetItemAsObject(i)
        assert (c.GetForegroundVolumeID(), c.GetBackgroundVolumeID()) == (overlay.GetID(), background.GetID())
    assert logic.showOverlay(str(path), background, 0.3) is overlay  # one overlay node, refilled
    logic.hideOverlay(background)
    assert composites.GetItemAsObject(0).GetForegroundVolumeID() is None
    mixed = worker.save_heatmap(tmp / "mixed.npz", np.zeros((2, 4, 4)), Geometry(
        rows=4, columns=4, pixel_spacing=(1, 1), orientations=[(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1)],
        positions=[(0, 0, 0), (0, 0, 5)]))
    assert logic.showOverlay(str(mixed), background, 0.3) is None  # a 3-plane scout: no overlay, no error
    assert composites.GetItemAsObject(0).GetForegroundVolumeID() is None

    out = logic.export("csv", str(tmp / "export" / "labels.csv"))
    with open(out, newline="", encoding="utf-8") as f:
        exported = {r["series_uid"]: r for r in csv.DictReader(f)}
    assert set(exported) == set(uids)


if __name__ == "__main__" and "--write" in sys.argv:
    write_lists()
    print(f"rewrote the file lists of {CMAKE_FILE}")
