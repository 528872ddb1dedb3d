"""The engine's folders are layers: each imports only from the layers below it, and nothing imports a face.

    core (series, prediction, vocabulary, resources, errors, requirements, pydicom_compat)
      ← dicom ← models ← run
                 labels (beside run: core and dicom only)
                 training (beside: may use everything but the faces)
    slicer: MRML for the module, may use any engine layer but training
    synth: the generator, independent of the classifier (core only), so it cannot copy the models' rules
    faces: commands/ (the command line), __main__, the Slicer module file — nothing in the engine imports them

The verdict is built from the import graph parsed out of the sources (every ``import``, also those inside
functions), so a lazy import cannot hide a wrong dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = "SeriesClassifierLib"
LIB = ROOT / "SeriesClassifier" / ENGINE

# requirements: the requirement list (standard library); pydicom_compat: pydicom 2.4 and 3 (synth writes with it)
CORE_MODULES = {"__init__", "series", "prediction", "vocabulary", "resources", "errors", "requirements",
                "pydicom_compat"}
FACES = {"commands", "__main__"}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "dicom": {"core"},
    "models": {"core", "dicom"},
    "run": {"core", "dicom", "models"},
    "labels": {"core", "dicom"},
    "training": {"core", "dicom", "models", "run", "labels"},
    "slicer": {"core", "dicom", "models", "run", "labels"},
    "synth": {"core"},
}
# Module names outside the package that the engine must never import: the Slicer module file.
FACE_MODULES_OUTSIDE = {"SeriesClassifier"}

# Known, named departures, each with the reason and what removes it. The test fails when one disappears
# from the code, so this list cannot outlive its cause.
KNOWN: dict[tuple[str, str], str] = {
}


def module_name(path: Path, lib: Path) -> str:
    parts = list(path.relative_to(lib.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(lib: Path) -> set[tuple[str, str]]:
    """(importer, imported) for every import statement of every module under ``lib``, relative ones resolved."""
    edges = set()
    for path in sorted(lib.rglob("*.py")):
        name = module_name(path, lib)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update((name, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                edges.add((name, target))
                for alias in node.names:  # from pkg import module: an edge to the module too
                    candidate = lib.parent.joinpath(*f"{target}.{alias.name}".split("."))
                    if candidate.is_dir() or candidate.with_suffix(".py").is_file():
                        edges.add((name, f"{target}.{alias.name}"))
    return edges


def layer_of(module: str) -> str | None:
    """The layer of an engine module; None for modules outside the engine."""
    parts = module.split(".")
    if parts[0] != ENGINE:
        return None
    if len(parts) == 1:
        return "core"
    if parts[1] in FACES:
        return "face"
    if parts[1] in ALLOWED:
        return parts[1]
    if parts[1] in CORE_MODULES:
        return "core"
    return f"unknown:{parts[1]}"


def violations(edges: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Each import that breaks the layering, with why."""
    found = {}
    for importer, imported in edges:
        source = layer_of(importer)
        if source is None or source == "face":
            continue
        if source.startswith("unknown:"):
            found[(importer, imported)] = f"{importer}: not in any layer (add it to the layering test)"
            continue
        if imported.split(".")[0] in FACE_MODULES_OUTSIDE:
            found[(importer, imported)] = f"{importer} imports the Slicer module {imported}"
            continue
        target = layer_of(imported)
        if target is None or target == source:
            continue
        if target == "face":
            found[(importer, imported)] = f"{importer} imports the face {imported}"
        elif target.startswith("unknown:") or target not in ALLOWED[source]:
            found[(importer, imported)] = f"{source} may not import {target}: {importer} → {imported}"
    return found


# --------------------------------------------------------------------------------------------------------- tests


def test_every_engine_module_is_in_a_layer():
    modules = {module_name(p, LIB) for p in LIB.rglob("*.py")}
    assert not [m for m in modules if (layer_of(m) or "").startswith("unknown:")]


def test_engine_respects_its_layers():
    found = violations(import_graph(LIB))
    unexpected = {k: v for k, v in found.items() if k not in KNOWN}
    assert not unexpected, "\n".join(sorted(unexpected.values()))
    stale = [k for k in KNOWN if k not in found]
    assert not stale, f"these known departures are gone; remove them from KNOWN: {stale}"


def test_verdict_fails_on_a_fabricated_lower_to_higher_import():
    graph = {
        (f"{ENGINE}.dicom.headers", f"{ENGINE}.models.forest"),  # dicom → models: upward
        (f"{ENGINE}.models.cnn", f"{ENGINE}.run.pipeline"),  # models → run: upward
        (f"{ENGINE}.labels.store", f"{ENGINE}.training.evaluate"),  # labels → training: sideways
        (f"{ENGINE}.run.pipeline", f"{ENGINE}.commands.cli"),  # engine → face
        (f"{ENGINE}.run.worker", "SeriesClassifier"),  # engine → the Slicer module
        (f"{ENGINE}.synth.writer", f"{ENGINE}.dicom.headers"),  # the generator reading the classifier's code
        (f"{ENGINE}.models.forest", f"{ENGINE}.dicom.headers"),  # allowed: downward
        (f"{ENGINE}.commands.train", f"{ENGINE}.training.evaluate"),  # allowed: faces use anything
    }
    found = violations(graph)
    assert set(found) == graph - {(f"{ENGINE}.models.forest", f"{ENGINE}.dicom.headers"),
                                  (f"{ENGINE}.commands.train", f"{ENGINE}.training.evaluate")}


def test_graph_is_parsed_from_source_including_lazy_and_relative_imports(tmp_path):
    """End to end on a fabricated package: a lazy, relative, upward import inside a function is caught."""
    lib = tmp_path / ENGINE
    for folder in ("dicom", "models", "commands"):
        (lib / folder).mkdir(parents=True)
        (lib / folder / "__init__.py").write_text("")
    (lib / "__init__.py").write_text("")
    (lib / "series.py").write_text("")
    (lib / "models" / "forest.py").write_text("from ..series import x\n")
    (lib / "dicom" / "headers.py").write_text("def read():\n    from ..models import forest\n    return forest\n")
    (lib / "commands" / "cli.py").write_text("from ..dicom.headers import read\n")
    graph = import_graph(lib)
    assert (f"{ENGINE}.dicom.headers", f"{ENGINE}.models.forest") in graph
    assert set(violations(graph)) == {(f"{ENGINE}.dicom.headers", f"{ENGINE}.models"),
                                      (f"{ENGINE}.dicom.headers", f"{ENGINE}.models.forest")}


def test_no_test_module_imports_another_test_module():
    """Shared helpers go to helper modules (dicom_factory, synth_fakes, …), not into test modules."""
    offenders = []
    for path in sorted((ROOT / "Testing").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not offenders, offenders


def test_the_readme_layout_names_every_engine_module():
    """README's layout section is the map a newcomer reads: every module of the engine is named in it, under
    its folder (a module added without a word there fails here)."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    by_folder: dict[str, str] = {"": ""}
    folder = ""
    for line in block.splitlines():
        m = re.match(r"  ([a-z]+)/\s", line)
        if m:
            folder = m.group(1)
        elif not line.startswith(" "):
            folder = ""
        by_folder[folder] = by_folder.get(folder, "") + " " + line
    missing = []
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB).parts
        where, stem = ("", path.name) if len(parts) == 1 else (parts[0], path.stem)
        if stem == "__init__":
            continue
        if not re.search(rf"(?<![\w.]){re.escape(stem)}(?![\w])", by_folder.get(where, "")):
            missing.append("/".join(parts))
    assert missing == []


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_benchmarks_and_scripts_import_only_what_the_engine_defines():
    """Benchmarks and scripts are not run in CI (their data are fetched); a renamed engine function must not
    leave one failing at import the next time someone runs it. Checked from the sources, without importing."""
    missing = []
    for path in sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("docs/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith(ENGINE)):
                continue
            target = LIB.parent.joinpath(*node.module.split("."))
            module = target.with_suffix(".py") if target.with_suffix(".py").is_file() else target / "__init__.py"
            if not module.is_file():
                missing.append(f"{path.name}: no module {node.module}")
                continue
            defined = _top_level_names(module)
            missing += [f"{path.name}: {node.module} has no {a.name}" for a in node.names
                        if a.name not in defined and not (target / f"{a.name}.py").is_file()
                        and not (target / a.name / "__init__.py").is_file()]
    assert not missing, missing
