from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from SeriesClassifierLib.commands.cli import COMMANDS, main

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_command(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_entry_point_resolves_to_the_dispatcher(capsys):
    """pyproject's ``seriesclassifier`` entry names a module and function that exist (the tree moves)."""
    if tomllib is None:
        import pytest

        pytest.skip("tomllib needs Python 3.11")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, _, function = scripts["seriesclassifier"].partition(":")
    entry = getattr(importlib.import_module(module), function)
    assert entry is main
    assert entry([]) == 2
    assert "classify" in capsys.readouterr().out


def test_python_dash_m_runs_the_command_line():
    out = subprocess.run([sys.executable, "-m", "SeriesClassifierLib", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "seriesclassifier" in out.stdout


def test_version(capsys):
    import pytest

    from SeriesClassifierLib import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"seriesclassifier {__version__}"
