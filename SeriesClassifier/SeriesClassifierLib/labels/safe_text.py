"""Text from DICOM headers and file names, made safe for where it goes (issue 17, items 6 and 9).

Every string a scanner or an archive wrote is the sender's: a SeriesDescription can start with ``=`` (a
spreadsheet formula), carry escape sequences (a terminal's commands), and a folder name can be a
patient's name. Each output passes its text through one of these:

- ``csv_cell``: a cell a spreadsheet will not run as a formula (OWASP's advice: a leading ``'``);
- ``printable``: text for a terminal, control characters and escape sequences removed;
- ``scrub_paths``: text for an anonymised output, file and folder names replaced by ``<file>``.
"""

from __future__ import annotations

import re
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|")
# ESC [ … final byte (CSI), ESC ] … BEL/ST (OSC), then any other C0/C1 control character but tab and newline
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# a token holding a path separator (absolute or relative), or a name with a DICOM-ish extension
_PATH = re.compile(r"(?:[A-Za-z]:)?[^\s:;,'\"()<>|]*[\\/][^\s:;,'\"()<>|]*")
_FILE = re.compile(r"[^\s\\/:;,'\"()<>|]+\.(?:dcm|dicom|ima|img|sql|sqlite)\b", re.IGNORECASE)


def csv_cell(value: Any) -> Any:
    """``value`` for a CSV cell: a string a spreadsheet would read as a formula gets a leading quote.

    Numbers are left alone (a negative number is data, not a formula); only text can carry a formula.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def printable(text: Any, keep_newlines: bool = True) -> str:
    """``text`` without terminal escape sequences and control characters (tab and, if asked, newline kept)."""
    text = _CONTROL.sub("", _ESCAPES.sub("", str(text)))
    return text if keep_newlines else text.replace("\n", " ")


def scrub_paths(text: Any, *identifiers: str) -> str:
    """``text`` with file and folder names, and the given identifiers, replaced: for anonymised outputs."""
    text = _FILE.sub("<file>", _PATH.sub("<file>", str(text)))
    for identifier in identifiers:
        if identifier and len(identifier) > 1:
            text = text.replace(identifier, "<id>")
    return text
