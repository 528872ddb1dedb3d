"""The Siemens protocol text (``### ASCCONV BEGIN`` … ``END``) that syngo and XA scanners store in every file.

Classic files carry it in the CSA series header (0029,1020), XA enhanced ones in (0021,1019). Its
``tSequenceFileName`` names the pulse-sequence program: ``%SiemensSeq%\\tfl`` is an MPRAGE,
``%SiemensSeq%\\ep2d_bold`` a BOLD run, ``%CustomerSeq%\\ep2d_pcasl`` a research pCASL whose ImageType may
say nothing of ASL, ``%ServiceSeq%\\…`` a service sequence. dcm2niix reads the same field for its BIDS
``PulseSequenceDetails``; it is the one Siemens header value that names the program rather than a readout.
"""

from __future__ import annotations

import re
from typing import Any

PROTOCOL_TAGS = (0x00291020, 0x00211019)  # CSA series header (classic); XA protocol (enhanced)
_BLOCK = re.compile(r"### ASCCONV BEGIN[^\n]*\n(.*?)### ASCCONV END", re.S)
_SEQUENCE_FILE = re.compile(rb'tSequenceFileName\s*=\s*"+([^"\r\n]*)"')


def _raw(ds: Any) -> list[bytes]:
    out = []
    for tag in PROTOCOL_TAGS:
        elem = ds.get(tag)
        raw = getattr(elem, "value", None)
        if isinstance(raw, (bytes, bytearray)):
            out.append(bytes(raw))
    return out


def protocol_text(ds: Any) -> dict[str, str]:
    """The protocol as key -> value (empty for other vendors and for files an anonymiser stripped)."""
    out: dict[str, str] = {}
    for raw in _raw(ds):
        for block in _BLOCK.findall(raw.decode("latin-1", "replace")):
            for line in block.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    out[key.strip()] = value.split("#")[0].strip().strip('"')
    return out


def sequence_file(ds: Any) -> str:
    """``tSequenceFileName`` as written (``%CustomerSeq%\\ep2d_pcasl``), or "" when the file has none.

    A byte search, not a parse of the whole protocol: it runs on every series a study holds.
    """
    for raw in _raw(ds):
        match = _SEQUENCE_FILE.search(raw)
        if match:
            return match.group(1).decode("latin-1", "replace").strip()
    return ""
