"""A wheel that works: built from the tree, installed into a fresh virtual environment, run on a factory study.

The environment reuses the running environment's packages (a ``.pth`` naming its site-packages: torch and friends
are not installed again; ``--system-site-packages`` would reach only the base interpreter's, not a CI virtual
environment's) and gets the wheel with ``--no-deps --ignore-installed`` (a developer's editable install of the
checkout is visible there too and must not count as installed); it never sees the source tree (no PYTHONPATH,
another working folder), so a file left out of the wheel fails here. The declared dependencies are checked
against the one requirements list instead.
"""

from __future__ import annotations

import csv
import email
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from dicom_factory import write_toy_corpus

from SeriesClassifierLib.requirements import read_requirements

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("setup.py", "pyproject.toml", "README.md", "LICENSE")


def _source_copy(dest: Path) -> Path:
    """The files a build reads, copied: building in the checkout would leave build/ and egg-info behind."""
    for name in SHIPPED:
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "SeriesClassifier", dest / "SeriesClassifier",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _run(args: list, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, sdist) built from a copy of the tree with this Python's setuptools (>=77, as pyproject.toml's
    build-system says; .ci/run installs it in every environment), so nothing is downloaded."""
    src = _source_copy(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src], src)
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"], src)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return wheel, sdist


def _tracked_resources() -> set[str]:
    resources = ROOT / "SeriesClassifier" / "Resources"
    return {p.relative_to(resources).as_posix() for p in resources.rglob("*") if p.is_file()}


def test_wheel_and_sdist_carry_the_resources_and_every_engine_module(built):
    wheel, sdist = built
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"SeriesClassifierLib/Resources/{r}" for r in _tracked_resources()} <= names
    lib = ROOT / "SeriesClassifier" / "SeriesClassifierLib"
    modules = {f"SeriesClassifierLib/{p.relative_to(lib).as_posix()}" for p in lib.rglob("*.py")}
    assert modules <= names
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {f"SeriesClassifier/Resources/{r}" for r in _tracked_resources()} <= members
    assert "setup.py" in members and "SeriesClassifier/Resources/requirements.txt" in members


def test_wheel_declares_the_requirements_list_and_the_generator_as_an_extra(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as z:
        (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_string(z.read(meta_name).decode("utf-8"))
    requires = meta.get_all("Requires-Dist")
    hard = {r.replace(" ", "") for r in requires if "extra ==" not in r}
    want = read_requirements(("core", "cli", "torch"))
    def name(requirement: str) -> str:
        return re.split(r"[<>=!~;]", requirement)[0].strip().lower()

    assert {name(r) for r in hard} == {name(r) for r in want}
    assert not any(name in r for r in hard for name in ("nilearn", "pydeface", "nibabel"))
    synth = sorted(r.split(";")[0].strip() for r in requires if 'extra == "synth"' in r)
    assert synth == sorted(read_requirements(("sample",)))
    assert any(r.startswith("Pillow") for r in hard)  # the report's thumbnails import PIL


@pytest.mark.slow
def test_installed_wheel_classifies_labels_and_exports(built, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    venv_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
                     .stdout.strip())
    (venv_site / "reuse_running_environment.pth").write_text(
        "\n".join(p for p in site.getsitepackages() if Path(p).is_dir()) + "\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
          "--ignore-installed", wheel], tmp_path)
    truth = write_toy_corpus(tmp_path / "study", n_per_class=1, seed=4)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SERIESCLASSIFIER_RESOURCES")}
    env["SERIESCLASSIFIER_STATE_DIR"] = str(tmp_path / "state")
    cli = venv / "bin" / "seriesclassifier"
    where = _run([python, "-c", "import SeriesClassifierLib.resources as r; print(r.resources_dir())"], tmp_path, env)
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the installed copy, not the checkout
    assert _run([cli, "--version"], tmp_path, env).stdout.startswith("seriesclassifier 0.1.0")
    _run([cli, "classify", tmp_path / "study", "--out", tmp_path / "r.csv"], tmp_path, env)
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["series_uid"] for r in rows} == set(truth) and all(r["predicted_sequence"] for r in rows)
    uid = rows[0]["series_uid"]
    _run([cli, "label", uid, "--sequence", "PD"], tmp_path, env)
    _run([cli, "export", tmp_path / "study", "--format", "csv", "--out", tmp_path / "labels.csv"], tmp_path, env)
    with open(tmp_path / "labels.csv", newline="") as f:
        labels = {r["series_uid"]: r for r in csv.DictReader(f)}
    assert labels[uid]["label_sequence"] == "PD" and labels[uid]["review_state"] == "corrected"


def test_the_generator_says_what_to_install_when_its_extra_is_missing(tmp_path):
    """Without nilearn (hidden here), ``synth`` names the extra instead of failing with a traceback."""
    code = ("import sys; sys.modules['nilearn'] = None\n"
            "from SeriesClassifierLib.synth import anatomy; anatomy.load_template.cache_clear()\n"
            "from SeriesClassifierLib.commands.cli import main\n"
            f"sys.exit(main(['synth', {str(tmp_path / 'out')!r}, '--studies', '1']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "pip install 'seriesclassifier[synth]'" in out.stderr and "Traceback" not in out.stderr
