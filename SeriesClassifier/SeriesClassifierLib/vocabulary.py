"""The class vocabulary: the one contract shared by models, UI and exports.

Read from ``Resources/vocabulary.json``; no code repeats the class list. A site
may extend the vocabulary with its own file (same format).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .resources import resource_path


@dataclass(frozen=True)
class BidsMapping:
    datatype: str
    suffix: str
    entities: dict[str, str] = field(default_factory=dict)
    derived: bool = False  # computed by the scanner (ADC, MIP, minIP, …): converter configs leave it out by default
    # "" for the raw BIDS tree; else where a class with no place in the BIDS schema goes (a folder validators
    # skip: "derivatives/scanner" for scanner-made images, "sourcedata/nonbids" for raw data BIDS has no suffix for)
    location: str = ""


@dataclass(frozen=True)
class SequenceClass:
    code: str
    name: str
    description: str
    acquisition: str | None  # typical acquisition, "2D"/"3D", None when either
    contrast: str | None  # "PRE"/"POST" when the class implies it
    bids: BidsMapping | None
    # A series of this class is recognised as a source by this header fact (models/derived.py source_facts:
    # "diffusion", "angio", "susceptibility"); a series derived from such a source can only be ``derivatives``.
    source_fact: str | None = None
    derivatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrientationClass:
    code: str
    name: str
    description: str


@dataclass(frozen=True)
class Attribute:
    code: str
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class PhysicsRule:
    """A fact and the classes it rules out: all but ``only``, or ``never``. Facts are read from the header
    (``models.physics.hard_facts``) or from the images (``dicom.dynamics.pixel_facts``)."""
    fact: str
    only: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    why: str = ""
    unless: tuple[str, ...] = ()  # facts in whose presence this rule says nothing (they outrank it)

    def rules_out(self, code: str) -> bool:
        return code in self.never or (bool(self.only) and code not in self.only)


@dataclass(frozen=True)
class Vocabulary:
    version: str
    sequences: tuple[SequenceClass, ...]
    orientations: tuple[OrientationClass, ...]
    attributes: tuple[Attribute, ...]
    oblique_threshold_degrees: float
    physics_rules: tuple[PhysicsRule, ...] = ()

    @property
    def sequence_codes(self) -> list[str]:
        return [s.code for s in self.sequences]

    @property
    def orientation_codes(self) -> list[str]:
        return [o.code for o in self.orientations]

    @property
    def attribute_codes(self) -> list[str]:
        return [a.code for a in self.attributes]

    def sequence(self, code: str) -> SequenceClass:
        for s in self.sequences:
            if s.code == code:
                return s
        raise KeyError(f"unknown sequence code {code!r}; valid codes: {', '.join(self.sequence_codes)}")

    def attribute(self, code: str) -> Attribute:
        for a in self.attributes:
            if a.code == code:
                return a
        raise KeyError(f"unknown attribute {code!r}; valid: {', '.join(self.attribute_codes)}")

    def post_contrast_of(self, code: str) -> str | None:
        """The post-contrast class of a pre-contrast one (T1_3D_PRE → T1_3D_POST): same BIDS suffix and acquisition."""
        pre = self.sequence(code)
        if pre.contrast != "PRE" or pre.bids is None:
            return None
        for s in self.sequences:
            if (s.contrast == "POST" and s.acquisition == pre.acquisition and s.bids is not None
                    and s.bids.suffix == pre.bids.suffix):
                return s.code
        return None

    def derived_family(self, facts: Iterable[str]) -> list[str]:
        """The classes a series derived from a source with these header facts may be (vocabulary order);
        [] when no class names any of the facts (nothing is known of what the source makes)."""
        facts = set(facts)
        allowed = {d for s in self.sequences if s.source_fact in facts for d in s.derivatives}
        return [code for code in self.sequence_codes if code in allowed]

    def ruling_out(self, code: str, facts: Iterable[str]) -> list[PhysicsRule]:
        """The physics rules by which ``facts`` rule out class ``code`` ([] when none does)."""
        facts = set(facts)
        return [r for r in self.physics_rules
                if r.fact in facts and not facts & set(r.unless) and r.rules_out(code)]

    def check_sequence(self, code: str) -> str:
        """Return the code if valid; raise ValueError listing the valid codes otherwise."""
        if code not in self.sequence_codes:
            raise ValueError(f"unknown sequence code {code!r}; valid codes: {', '.join(self.sequence_codes)}")
        return code

    def check_orientation(self, code: str) -> str:
        if code not in self.orientation_codes:
            raise ValueError(
                f"unknown orientation code {code!r}; valid codes: {', '.join(self.orientation_codes)}"
            )
        return code


def _parse(data: dict) -> Vocabulary:
    sequences = []
    for s in data["sequence"]:
        bids = s.get("bids")
        mapping = (
            BidsMapping(bids["datatype"], bids["suffix"], dict(bids.get("entities", {})), bool(bids.get("derived")),
                        str(bids.get("location") or ""))
            if bids
            else None
        )
        sequences.append(
            SequenceClass(
                s["code"], s["name"], s.get("description", ""), s.get("acquisition"), s.get("contrast"), mapping,
                s.get("source_fact"), tuple(s.get("derivatives") or ()),
            )
        )
    orientations = [OrientationClass(o["code"], o["name"], o.get("description", "")) for o in data["orientation"]]
    attributes = [Attribute(a["code"], a["name"], tuple(a["values"])) for a in data["attributes"]]
    codes = [s.code for s in sequences]
    if len(set(codes)) != len(codes):
        raise ValueError("vocabulary has duplicate sequence codes")
    unknown = sorted({d for s in sequences for d in s.derivatives} - set(codes))
    if unknown:
        raise ValueError(f"vocabulary: derivatives name unknown sequence codes {', '.join(unknown)}")
    rules = tuple(PhysicsRule(r["fact"], tuple(r.get("only") or ()), tuple(r.get("never") or ()), r.get("why", ""),
                              tuple(r.get("unless") or ()))
                  for r in data.get("physics_rules") or ())
    unknown = sorted({c for r in rules for c in (*r.only, *r.never)} - set(codes))
    if unknown:
        raise ValueError(f"vocabulary: physics rules name unknown sequence codes {', '.join(unknown)}")
    return Vocabulary(
        version=str(data.get("version", "0")),
        sequences=tuple(sequences),
        orientations=tuple(orientations),
        attributes=tuple(attributes),
        oblique_threshold_degrees=float(data.get("oblique_threshold_degrees", 20.0)),
        physics_rules=rules,
    )


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Load a vocabulary file; the bundled one when ``path`` is None."""
    if path is None:
        return _bundled()
    with open(path, encoding="utf-8") as f:
        return _parse(json.load(f))


@lru_cache(maxsize=1)
def _bundled() -> Vocabulary:
    with open(resource_path("vocabulary.json"), encoding="utf-8") as f:
        return _parse(json.load(f))
