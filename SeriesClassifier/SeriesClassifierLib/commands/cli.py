"""The ``seriesclassifier`` command line: a thin face on the engine.

Each sub-command lives in ``commands/<name>.py`` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; they are imported only
when used, so ``seriesclassifier --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys

from ..errors import SeriesClassifierError
from ..labels.safe_text import printable

# name -> one-line help; the module is commands/<name>.py (beside this file)
COMMANDS = {
    "synth": "generate simulated brain MRI studies as DICOM",
    "classify": "classify every series under a folder or Slicer DICOM database",
    "evaluate": "score predictions or models against reference labels",
    "demo": "generate a small study and classify it",
    "label": "record a correction for one series",
    "review": "review predictions in the terminal and correct them",
    "export": "export labels (CSV, JSON, BIDS mapping, dcm2bids/heudiconv config)",
    "report": "write a self-contained HTML contact sheet",
    "train": "train or fine-tune models on labelled series",
    "tune": "search the CNN's hyper-parameters (random, then Gaussian-process-guided); ablation; top-k ensemble",
}


def _load(name: str):
    return importlib.import_module(f"{__package__}.{name}")


def _version() -> str:
    from .. import __version__  # the package's __init__ only: no numpy, pydicom or models

    return __version__


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seriesclassifier", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if command is None:
        parser.print_help()
        return 2
    from ..errors import MissingDependencyError

    try:
        return int(_load(command).run(args) or 0)
    except MissingDependencyError as exc:  # an optional extra not installed: say what to install, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SeriesClassifierError as exc:  # the engine's own refusals (bad bundle, store, budget) are messages
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:  # disk, path and database faults: a message, never a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(printable(f"error: {where}{getattr(exc, 'strerror', None) or exc}"), file=sys.stderr)
        return 1
    except Exception as exc:  # a bug met on someone's data: one line, the traceback only when asked for
        if os.environ.get("SERIESCLASSIFIER_DEBUG"):
            raise
        print(printable(f"error: {command} failed: {type(exc).__name__}: {exc} (set SERIESCLASSIFIER_DEBUG=1 "
                        "for the traceback)"), file=sys.stderr)
        return 70  # EX_SOFTWARE


if __name__ == "__main__":
    raise SystemExit(main())
