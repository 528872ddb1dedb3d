"""The sample study without torch (Slicer with the CNN off and no PyTorch extension): the renderer's
numpy/scipy interpolation gives the torch images."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from synth_fakes import small

from SeriesClassifierLib.synth import render
from SeriesClassifierLib.synth.anatomy import make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(np.random.default_rng(7))


def _without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch → ImportError
    assert render._torch() is None


@pytest.mark.parametrize("code", ["T2_2D", "DWI", "SWI_MINIP", "TOF_MRA"])
def test_rendering_needs_no_torch(code, phantom, monkeypatch):
    _without_torch(monkeypatch)
    rs = render.render_series(small(code), phantom, np.random.default_rng(1))
    assert rs.frames.shape[1:] == (64, 64) and np.isfinite(rs.frames).all() and rs.frames.std() > 0


@pytest.mark.torch
@pytest.mark.parametrize("align", [True, False])
def test_numpy_interpolation_matches_torch(align, monkeypatch):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    vols = rng.random((2, 9, 11, 13)).astype(np.float32)
    g = rng.uniform(-1.1, 1.1, size=(5, 7, 3)).astype(np.float32)
    img = rng.random((3, 10, 12)).astype(np.float32)
    with_torch = render._grid_sample(vols, g), render._upsample(img, (17, 25), align)
    _without_torch(monkeypatch)
    without = render._grid_sample(vols, g), render._upsample(img, (17, 25), align)
    for a, b in zip(with_torch, without):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_generator_imports_torch_nowhere_else():
    import ast
    from pathlib import Path

    folder = Path(render.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # the one allowed place: render._torch, which returns None when torch is absent
        allowed = [(f.lineno, f.end_lineno) for f in ast.walk(tree)
                   if isinstance(f, ast.FunctionDef) and f.name == "_torch" and path.name == "render.py"]
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "torch" for n in names):
                inside = any(lo <= node.lineno <= hi for lo, hi in allowed)
                assert inside, f"{path.name}:{node.lineno} imports torch outside render._torch"
