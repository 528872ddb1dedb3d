"""A terminal review loop for people without Slicer: one series at a time, one key to answer.

The loop reads lines from any text stream and writes to any other, so tests drive it
with scripted input; the ``review`` command passes the terminal. Every answer goes
to the label store at once (a crash or ``q`` loses nothing already answered).

Answers: Enter or ``y`` accepts; a sequence code or a unique case-insensitive prefix
of one (``flair_2`` → FLAIR_2D) corrects; ``o CODE`` sets the orientation; ``n TEXT``
adds a note; ``s`` skips; ``b`` goes back; ``q`` quits; ``?`` lists the codes.
The one-letter commands win over code prefixes (``s`` is skip, not a code starting with S).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from ..prediction import SeriesPrediction
from ..vocabulary import Vocabulary
from .safe_text import printable
from .store import LabelRecord, LabelStore

KEYS = "[Enter/y] accept · CODE correct · o CODE orientation · n TEXT note · s skip · b back · q quit · ? codes"


@dataclass
class Action:
    kind: str  # accept | sequence | orientation | note | skip | back | quit | help | invalid
    value: str | None = None  # the code, the note, or the message for invalid


def resolve_code(text: str, codes: Sequence[str], what: str = "sequence") -> tuple[str | None, str | None]:
    """(code, None) for an exact or unique-prefix match (case-insensitive), else (None, message)."""
    wanted = text.strip().upper()
    if not wanted:
        return None, f"no {what} code given; valid codes: {', '.join(codes)}"
    for code in codes:
        if code.upper() == wanted:
            return code, None
    matches = [c for c in codes if c.upper().startswith(wanted)]
    if len(matches) == 1:
        return matches[0], None
    if matches:
        return None, f"{text.strip()!r} is ambiguous: {', '.join(matches)}"
    return None, f"unknown {what} code {text.strip()!r}; valid codes: {', '.join(codes)}"


def parse_answer(line: str, vocabulary: Vocabulary) -> Action:
    text = line.strip()
    low = text.lower()
    if low in ("", "y", "yes"):
        return Action("accept")
    if low in ("s", "b", "q", "?", "h", "help"):
        return Action({"s": "skip", "b": "back", "q": "quit"}.get(low, "help"))
    if low == "o" or low.startswith("o "):
        code, error = resolve_code(text[1:], vocabulary.orientation_codes, "orientation")
        return Action("orientation", code) if code else Action("invalid", error)
    if low.startswith("n "):
        return Action("note", text[2:].strip())
    code, error = resolve_code(text, vocabulary.sequence_codes)
    return Action("sequence", code) if code else Action("invalid", error)


def _confidence(r: LabelRecord) -> float:
    p = r.prediction
    return p.sequence.probability if p and p.sequence else 0.0


def review_order(records: Sequence[LabelRecord], include_reviewed: bool = False) -> list[LabelRecord]:
    """Needs-review first, then the least confident; reviewed series only when asked for."""
    todo = [r for r in records if include_reviewed or r.state == "unreviewed"]
    return sorted(todo, key=lambda r: (not (r.prediction and r.prediction.needs_review), _confidence(r)))


def images_text(n_files: int, n_frames: int = 0) -> str:
    """'24 images', '1 image', or '48 frames in 1 file' for multi-frame objects (frames are what a person counts)."""
    if n_frames and n_frames != n_files:
        return f"{n_frames} frames in {n_files} file{'s' if n_files != 1 else ''}"
    return f"{n_files} image{'s' if n_files != 1 else ''}"


def study_text(p: SeriesPrediction) -> str:
    """Which study a series belongs to: series numbers repeat across studies, so a number alone is ambiguous."""
    study = f"study …{p.study_uid[-8:]}" if p.study_uid else "an unknown study"
    return f"{study} (patient {p.patient_id})" if p.patient_id else study


def _task(t) -> str:
    return f"{t.label} {t.probability:.2f}" if t else "—"


def describe(r: LabelRecord, position: str = "") -> str:
    """The text shown for one series."""
    p: SeriesPrediction | None = r.prediction
    lines = []
    if p:
        number = "?" if p.series_number is None else p.series_number
        lines.append(f"{position} series {number} “{p.series_description or '(no description)'}” of "
                     f"{study_text(p)}  {images_text(p.n_images, p.n_frames)}  uid {r.series_uid}")
        if p.error:
            lines.append(f"  could not classify: {p.error}")
        flag = "   NEEDS REVIEW" if p.needs_review else ""
        lines.append(f"  prediction: {_task(p.sequence)} · {_task(p.orientation)}{flag}")
        if p.sequence:
            lines.append("  top-3: " + " · ".join(f"{label} {prob:.2f}" for label, prob in p.sequence.top(3)))
        if p.reasons:
            lines.append("  why: " + "; ".join(p.reasons))
        for name, m in sorted(p.models.items()):
            extra = f"  ({m.reason})" if m.reason else ""
            lines.append(f"  {name}: {_task(m.sequence)} · {_task(m.orientation)}{extra}")
        if p.attributes:
            lines.append("  attributes: " + ", ".join(f"{k}={t.label}" for k, t in sorted(p.attributes.items())))
    else:
        lines.append(f"{position} series uid {r.series_uid} (no prediction stored)")
    if r.state != "unreviewed":
        who = f" by {r.corrected_by}" if r.corrected_by else ""
        lines.append(f"  current label: {r.sequence} · {r.orientation or '—'} ({r.state}{who})")
    if r.note:
        lines.append(f"  note: {r.note}")
    return "\n".join(lines)


@dataclass
class ReviewSummary:
    accepted: int = 0
    corrected: int = 0
    skipped: int = 0
    notes: int = 0
    seen: list[str] = field(default_factory=list)
    quit: bool = False

    def __str__(self) -> str:
        return (f"{self.accepted} accepted, {self.corrected} corrected, {self.skipped} skipped, "
                f"{self.notes} notes")


class ReviewSession:
    """Walk through ``records`` asking for an answer per series; write each answer to ``store`` at once."""

    def __init__(self, store: LabelStore, records: Sequence[LabelRecord], inp: TextIO, out: TextIO,
                 user: str | None = None):
        self.store = store
        self.records = list(records)
        self.inp = inp
        self.out = out
        self.user = user
        self.vocabulary = store.vocabulary

    def _say(self, text: str) -> None:
        print(printable(text), file=self.out, flush=True)  # a description's escape sequences stay off the terminal

    def _ask(self) -> str | None:
        print("> ", end="", file=self.out, flush=True)
        line = self.inp.readline()
        return None if line == "" else line  # "" is end of input; "\n" is Enter

    def run(self) -> ReviewSummary:
        summary = ReviewSummary()
        if not self.records:
            self._say("nothing to review")
            return summary
        self._say(KEYS)
        i, n = 0, len(self.records)
        shown = None  # (index, n_events) last described: an invalid answer or help does not repeat it
        while 0 <= i < n:
            uid = self.records[i].series_uid
            record = self.store.current(uid) or self.records[i]
            if shown != (i, record.n_events):
                self._say("")
                self._say(describe(record, f"[{i + 1}/{n}]"))
                shown = (i, record.n_events)
            if uid not in summary.seen:
                summary.seen.append(uid)
            line = self._ask()
            if line is None:
                summary.quit = True
                break
            action = parse_answer(line, self.vocabulary)
            i = self._apply(action, record, i, summary)
            if summary.quit:
                break
        self._say(("stopped: " if summary.quit else "done: ") + str(summary))
        return summary

    def _apply(self, action: Action, record: LabelRecord, i: int, summary: ReviewSummary) -> int:
        uid = record.series_uid
        if action.kind == "accept":
            if record.sequence is None:
                self._say("  nothing to accept (no prediction): type a code")
                return i
            self.store.accept(uid, user=self.user, source="review")
            summary.accepted += 1
            self._say(f"  accepted {record.sequence}")
            return i + 1
        if action.kind == "sequence":
            self.store.correct(uid, sequence=action.value, user=self.user, source="review")
            summary.corrected += 1
            self._say(f"  corrected to {action.value}")
            return i + 1
        if action.kind == "orientation":
            self.store.correct(uid, orientation=action.value, user=self.user, source="review")
            self._say(f"  orientation set to {action.value}; Enter accepts the sequence, a code corrects it")
            return i
        if action.kind == "note":
            self.store.correct(uid, note=action.value, user=self.user, source="review")
            summary.notes += 1
            return i
        if action.kind == "skip":
            summary.skipped += 1
            return i + 1
        if action.kind == "back":
            if i == 0:
                self._say("  already at the first series")
            return max(0, i - 1)
        if action.kind == "quit":
            summary.quit = True
            return i
        if action.kind == "help":
            self._say(KEYS)
            self._say("  sequence codes: " + ", ".join(self.vocabulary.sequence_codes))
            self._say("  orientation codes: " + ", ".join(self.vocabulary.orientation_codes))
            return i
        self._say(f"  {action.value}")
        return i
