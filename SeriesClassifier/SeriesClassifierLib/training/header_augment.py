"""Training-time header dropout: no single tag may decide a series.

A real archive loses tags (anonymisers, exports, old software) and every new scanner brings
vendor words the forest never saw. Training rows that randomly lack a token field, a vendor
sequence name, the flip angle or the echo train make the trees learn the other evidence as
well (TR/TE/TI, b-values, EPI, volumes), which is what carries over to an unseen vendor.
The copies are shallow: the caller's series are never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from ..series import Series

TOKEN_FIELDS = ("ScanningSequence", "SequenceVariant", "ScanOptions", "ImageType")
VENDOR_NAME_FIELDS = ("SequenceName", "PulseSequenceName", "GEPulseSequenceName", "PhilipsScanningTechnique")
VALUE_FIELDS = ("FlipAngle", "EchoTrainLength")
CONTEXT_FIELD = "StudyContext"
FIELD_DROPOUT = 0.3  # the bundled forest's rate (docs/REAL_DATA.md: measured on the real development set)


def drop_header_fields(
    series: Sequence[Series], rate: float, seed: int, context_rate: float = 0.15
) -> list[Series]:
    """Copies where each token field, vendor name and secondary value is dropped with probability ``rate``.

    The study context (what sibling series say) is dropped with ``context_rate``: a series
    classified on its own has none, and the forest must expect that.
    """
    rng = np.random.default_rng(seed)
    fields = TOKEN_FIELDS + VENDOR_NAME_FIELDS + VALUE_FIELDS
    out = []
    for s in series:
        drop = {f for f in fields if rate > 0 and rng.random() < rate}
        if rng.random() < context_rate:
            drop.add(CONTEXT_FIELD)
        if drop & set(s.header):
            s = copy.copy(s)
            s.header = {k: v for k, v in s.header.items() if k not in drop}
        out.append(s)
    return out
