"""The label store: predictions and every human correction, kept durably in SQLite.

One file per DICOM database or classified folder (see ``default_store_path``).
Keyed by SeriesInstanceUID. Predictions are replaced when a series is classified
again; corrections are append-only (``events``) and the current label is derived
from them: for each field the latest event that set it wins.

Durability choices (why, not what):

- WAL journal: readers never block the writer, so the Slicer module can refresh
  its table while a CLI writes. Where WAL cannot work (some network filesystems
  refuse the shared-memory file) we fall back to a rollback journal, which is
  just as safe, only less concurrent.
- ``synchronous=FULL``: with WAL, NORMAL is also corruption-proof, but a power
  cut may drop the last few committed transactions. A correction is a person's
  judgement that cost them time; the caller acknowledges it to that person once
  ``commit`` returns, so the commit must be on disk by then. Corrections come at
  human pace, so the extra fsync per commit costs nothing anyone notices.
- Every write is one ``BEGIN IMMEDIATE`` transaction (taking the write lock up
  front avoids the deadlock of two readers upgrading at once) with a generous
  busy timeout, so concurrent writers queue instead of failing.
- Each event carries an ``event_id`` (a UUID unless the caller gives one) with a
  UNIQUE constraint: a writer that retries after a crash or a timeout cannot
  record the same correction twice.
- ``PRAGMA user_version`` is the schema version; ``_MIGRATIONS`` upgrades older
  files in one transaction and a newer file is refused rather than damaged.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import StoreError
from ..prediction import SeriesPrediction
from ..vocabulary import Vocabulary, load_vocabulary

SCHEMA_VERSION = 3
# SQLite header field (offset 68) marking a file as a label store: "SClb". Only a file carrying it, or a
# store written before it existed (our tables, schema 1 or later), is opened; Slicer's ctkDICOM.sql never is.
APPLICATION_ID = 0x53436C62
_OUR_TABLES = {"predictions", "events"}
SOURCES = ("slicer", "cli", "review", "import", "api")
STATES = ("unreviewed", "accepted", "corrected")
BUSY_TIMEOUT_MS = 30_000

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS predictions (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    series_description TEXT NOT NULL DEFAULT '',
    model_version TEXT NOT NULL DEFAULT '',
    prediction_json TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    series_uid TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('correct', 'accept', 'note')),
    sequence TEXT,
    orientation TEXT,
    attributes_json TEXT,
    note TEXT,
    user TEXT NOT NULL,
    source TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_series ON events (series_uid, id);
-- The latest event per series: what a SQL reader (a spreadsheet, a script) needs
-- to see the review state without the Python code.
CREATE VIEW IF NOT EXISTS latest_events AS
    SELECT e.* FROM events e
    WHERE e.id = (SELECT MAX(id) FROM events WHERE series_uid = e.series_uid);
"""


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    # statement by statement: executescript would commit the surrounding transaction
    for statement in _SCHEMA_V1.split(";"):
        body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
        if body.strip():
            conn.execute(body)


_CURRENT_LABELS_VIEW = """
CREATE VIEW IF NOT EXISTS current_labels AS
    SELECT u.series_uid,
        COALESCE((SELECT e.sequence FROM events e WHERE e.series_uid = u.series_uid AND e.sequence IS NOT NULL
                  ORDER BY e.id DESC LIMIT 1), p.predicted_sequence) AS sequence,
        COALESCE((SELECT e.orientation FROM events e WHERE e.series_uid = u.series_uid AND e.orientation IS NOT NULL
                  ORDER BY e.id DESC LIMIT 1), p.predicted_orientation) AS orientation,
        p.predicted_sequence, p.predicted_orientation,
        (SELECT e.user FROM events e WHERE e.series_uid = u.series_uid AND e.kind != 'note'
         ORDER BY e.id DESC LIMIT 1) AS labelled_by,
        (SELECT e.created_at FROM events e WHERE e.series_uid = u.series_uid AND e.kind != 'note'
         ORDER BY e.id DESC LIMIT 1) AS labelled_at
    FROM (SELECT series_uid FROM predictions UNION SELECT series_uid FROM events) u
    LEFT JOIN predictions p ON p.series_uid = u.series_uid
"""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Predicted codes as columns, so SQL readers get the current label (view ``current_labels``) without JSON."""
    conn.execute("ALTER TABLE predictions ADD COLUMN predicted_sequence TEXT")
    conn.execute("ALTER TABLE predictions ADD COLUMN predicted_orientation TEXT")
    rows = conn.execute("SELECT series_uid, prediction_json FROM predictions").fetchall()
    for uid, text in rows:
        d = json.loads(text)
        conn.execute(
            "UPDATE predictions SET predicted_sequence = ?, predicted_orientation = ? WHERE series_uid = ?",
            ((d.get("sequence") or {}).get("label"), (d.get("orientation") or {}).get("label"), uid),
        )
    conn.execute(_CURRENT_LABELS_VIEW)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """What each prediction was made from, so commands reuse it instead of classifying again.

    ``content_key``: the series' files when it was classified (``SeriesRef.content_key``); ``model_key``:
    the models folder's version and the models run. NULL for predictions recorded before (or by a
    caller that does not know): the commands treat those as unchanged unless told which models to use.
    """
    conn.execute("ALTER TABLE predictions ADD COLUMN content_key TEXT")
    conn.execute("ALTER TABLE predictions ADD COLUMN model_key TEXT")


# from-version -> function bringing the file to from-version + 1, run inside one transaction
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _migrate_0_to_1, 1: _migrate_1_to_2, 2: _migrate_2_to_3,
}


@dataclass
class LabelEvent:
    """One row of the append-only history."""

    event_id: str
    series_uid: str
    kind: str  # correct | accept | note
    sequence: str | None
    orientation: str | None
    attributes: dict[str, str]
    note: str | None
    user: str
    source: str
    model_version: str
    created_at: str


@dataclass
class LabelRecord:
    """A series as the store knows it: the prediction, the current label and where it came from."""

    series_uid: str
    prediction: SeriesPrediction | None
    sequence: str | None  # current label: the latest correction, else the prediction
    orientation: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    state: str = "unreviewed"  # unreviewed | accepted | corrected
    label_source: str = "model"  # model | accepted | corrected
    corrected_by: str | None = None  # user of the latest labelling event
    corrected_at: str | None = None
    source: str | None = None  # slicer | cli | review | import of the latest labelling event
    note: str | None = None
    model_version: str = ""
    n_events: int = 0

    @property
    def needs_review(self) -> bool:
        return bool(self.prediction and self.prediction.needs_review) and self.state == "unreviewed"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers and services
        return "unknown"


def default_store_path(path: str | Path) -> Path:
    """Where the labels of ``path`` live when the user does not say.

    A Slicer DICOM database (its folder or its ``ctkDICOM.sql``) keeps them beside
    the database, in ``<dbdir>/SeriesClassifier/labels.sqlite``; a folder of DICOM
    files in ``<folder>/.seriesclassifier/labels.sqlite``; a single file uses its folder.
    """
    p = Path(path)
    if p.is_file() and p.name == "ctkDICOM.sql":
        return p.parent / "SeriesClassifier" / "labels.sqlite"
    if p.is_dir() and (p / "ctkDICOM.sql").exists():
        return p / "SeriesClassifier" / "labels.sqlite"
    if p.is_file():
        p = p.parent
    return p / ".seriesclassifier" / "labels.sqlite"


class LabelStore:
    """Durable, concurrent-safe store of predictions and corrections (one SQLite file).

    Open one per process (or thread); several processes may use the same file at once.
    """

    def __init__(self, path: str | Path, vocabulary: Vocabulary | None = None, create: bool = True):
        self.path = Path(path)
        self.vocabulary = vocabulary or load_vocabulary()
        if self.path.name == "ctkDICOM.sql":
            raise StoreError(f"{self.path}: that is Slicer's DICOM database, not a label store "
                             f"(the default store is {default_store_path(self.path)})")
        if not self.path.exists():
            if not create:
                raise StoreError(f"no label store at {self.path}")
            self._create_new()
        if self.path.is_dir():
            raise StoreError(f"{self.path}: a folder, not a label store file")
        if self.path.stat().st_size == 0:  # stores are made whole (_create_new): an empty file is someone else's
            raise StoreError(f"{self.path}: an empty file, not a label store (remove it to start a new store)")
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._check_ours()  # before anything writes (WAL, migrations) to someone else's file
            self._configure()
            self._migrate()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: not a usable label store ({e})") from e

    def _create_new(self) -> None:
        """Make the store in a temporary file, then link it into place.

        No process ever sees a half-made store (so an empty file can be refused as not ours), and when several
        create the same store at once, one link wins and every process opens that one.
        """
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".new")
            os.close(fd)
            tmp = Path(name)
            self._conn = sqlite3.connect(name, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._configure()
            self._migrate()
            self._conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a filesystem without hard links: a rename, unless someone was faster
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{self.path}: cannot create the store ({getattr(e, 'strerror', None) or e})") from e
        finally:
            for leftover in ((tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")) if tmp else ()):
                leftover.unlink(missing_ok=True)

    def _check_ours(self) -> None:
        c = self._conn
        app = c.execute("PRAGMA application_id").fetchone()[0]
        if app == APPLICATION_ID:
            pass
        elif app != 0:
            raise StoreError(f"{self.path}: an SQLite file of another application (application_id {app:#x}), "
                             "not a label store; nothing was changed")
        else:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if not (tables >= _OUR_TABLES and version >= 1):  # a store from before APPLICATION_ID is adopted
                shown = ", ".join(sorted(tables)[:5]) or "none"
                raise StoreError(f"{self.path}: an SQLite file that is not a label store (tables: {shown}); "
                                 "nothing was changed")
        check = c.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreError(f"{self.path}: the store is damaged ({check}); copy it aside and restore a backup")

    # -- connection ---------------------------------------------------------------------------------------------

    def _configure(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        self.journal_mode = str(mode).lower()
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this SeriesClassifier understands up to "
                f"{SCHEMA_VERSION}: update SeriesClassifier rather than risk the labels"
            )
        marked = self._conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        if version == SCHEMA_VERSION and marked:
            return
        with self._write() as c:
            # re-read inside the lock: another process may have migrated meanwhile
            version = c.execute("PRAGMA user_version").fetchone()[0]
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](c)
                version += 1
                c.execute(f"PRAGMA user_version = {version}")
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:  # locked past the timeout, read-only file or folder
            raise StoreError(f"{self.path}: cannot write ({e})") from e
        try:
            yield c
        except BaseException as e:
            c.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{self.path}: write failed, nothing recorded ({e})") from e
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.Error as e:  # a full disk shows here: the transaction is not acknowledged
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise StoreError(f"{self.path}: write failed, nothing recorded ({e})") from e

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def integrity_check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- writing ------------------------------------------------------------------------------------------------

    def record_predictions(
        self, predictions: Iterable[SeriesPrediction], keys: dict[str, tuple[str, str]] | None = None
    ) -> int:
        """Keep the models' answers (replacing older ones for the same series); returns how many.

        ``keys``: series_uid -> (content_key, model_key), what each prediction was made from (see
        ``prediction_keys``); a series without keys gets NULL, "made from something unknown".
        """
        now = utc_now()
        keys = keys or {}
        rows = [
            (
                p.series_uid,
                p.study_uid or "",
                p.patient_id or "",
                p.series_number,
                p.series_description or "",
                p.model_version or "",
                json.dumps(p.to_dict(), sort_keys=True),
                now,
                p.sequence.label if p.sequence else None,
                p.orientation.label if p.orientation else None,
                *keys.get(p.series_uid, (None, None)),
            )
            for p in predictions
        ]
        with self._write() as c:
            c.executemany(
                "INSERT INTO predictions (series_uid, study_uid, patient_id, series_number, series_description, "
                "model_version, prediction_json, recorded_at, predicted_sequence, predicted_orientation, content_key, "
                "model_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(series_uid) DO UPDATE SET "
                "study_uid=excluded.study_uid, patient_id=excluded.patient_id, series_number=excluded.series_number, "
                "series_description=excluded.series_description, model_version=excluded.model_version, "
                "prediction_json=excluded.prediction_json, recorded_at=excluded.recorded_at, "
                "predicted_sequence=excluded.predicted_sequence, predicted_orientation=excluded.predicted_orientation, "
                "content_key=excluded.content_key, model_key=excluded.model_key",
                rows,
            )
        return len(rows)

    def _check_codes(self, sequence: str | None, orientation: str | None, attributes: dict[str, str] | None) -> None:
        if sequence is not None:
            self.vocabulary.check_sequence(sequence)
        if orientation is not None:
            self.vocabulary.check_orientation(orientation)
        for name, value in (attributes or {}).items():
            try:
                allowed = self.vocabulary.attribute(name).values
            except KeyError as e:
                raise ValueError(str(e).strip("\"'")) from None
            if value not in allowed:
                raise ValueError(f"attribute {name}: unknown value {value!r}; valid values: {', '.join(allowed)}")

    def _insert_event(self, c: sqlite3.Connection, event: LabelEvent) -> bool:
        cur = c.execute(
            "INSERT OR IGNORE INTO events (event_id, series_uid, kind, sequence, orientation, attributes_json, note, "
            "user, source, model_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                event.series_uid,
                event.kind,
                event.sequence,
                event.orientation,
                json.dumps(event.attributes, sort_keys=True) if event.attributes else None,
                event.note,
                event.user,
                event.source,
                event.model_version,
                event.created_at,
            ),
        )
        return cur.rowcount == 1

    def _model_version(self, c: sqlite3.Connection, series_uid: str) -> str:
        row = c.execute("SELECT model_version FROM predictions WHERE series_uid = ?", (series_uid,)).fetchone()
        return row[0] if row else ""

    def correct(
        self,
        series_uid: str,
        sequence: str | None = None,
        orientation: str | None = None,
        attributes: dict[str, str] | None = None,
        user: str | None = None,
        note: str | None = None,
        source: str = "api",
        event_id: str | None = None,
    ) -> LabelEvent:
        """Record a correction (any of sequence, orientation, attributes) or, with only ``note``, a note.

        Unknown codes raise ValueError naming the valid ones. Giving the same ``event_id`` twice
        records it once (safe retries).
        """
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
        self._check_codes(sequence, orientation, attributes)
        labels = sequence is not None or orientation is not None or bool(attributes)
        if not labels and not note:
            raise ValueError(f"{series_uid}: a correction needs a sequence, an orientation, attributes or a note")
        event = LabelEvent(
            event_id=event_id or uuid.uuid4().hex,
            series_uid=series_uid,
            kind="correct" if labels else "note",
            sequence=sequence,
            orientation=orientation,
            attributes=dict(attributes or {}),
            note=note,
            user=user or default_user(),
            source=source,
            model_version="",
            created_at=utc_now(),
        )
        with self._write() as c:
            event.model_version = self._model_version(c, series_uid)
            self._insert_event(c, event)
        return event

    def accept(
        self,
        series_uid: str,
        user: str | None = None,
        note: str | None = None,
        source: str = "api",
        event_id: str | None = None,
    ) -> LabelEvent:
        """Confirm the current label (the prediction, or the latest correction) as right.

        The accepted codes are written into the event, so history shows what was accepted
        even if the series is classified again later.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
        with self._write() as c:
            record = self._record(c, series_uid)
            if record is None:
                raise KeyError(f"{series_uid}: no prediction or label in {self.path}; nothing to accept")
            event = LabelEvent(
                event_id=event_id or uuid.uuid4().hex,
                series_uid=series_uid,
                kind="accept",
                sequence=record.sequence,
                orientation=record.orientation,
                attributes=dict(record.attributes),
                note=note,
                user=user or default_user(),
                source=source,
                model_version=record.model_version,
                created_at=utc_now(),
            )
            self._insert_event(c, event)
        return event

    def import_labels(
        self, rows: Iterable[dict[str, Any]], user: str | None = None, batch: str = "", source: str = "import"
    ) -> tuple[int, list[str]]:
        """Record labels from table rows (a labels CSV, our own export); returns (recorded, problems).

        Columns: ``series_uid`` and any of ``sequence``/``label_sequence``, ``orientation``/
        ``label_orientation``, the attribute codes (``contrast`` …) or ``attribute_<code>``, ``user``/
        ``corrected_by``, ``note``. Rows of our own export whose ``label_source`` is ``model`` are
        skipped (they are predictions, not labels). A bad row is reported and the others go in. The
        event ids derive from ``batch`` and the row, so importing the same file twice records it once.
        """
        events, problems = [], []
        now = utc_now()
        for n, row in enumerate(rows, 1):
            row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            uid = row.get("series_uid")
            if not uid:
                problems.append(f"row {n}: no series_uid")
                continue
            if row.get("label_source") == "model":
                continue
            sequence = row.get("label_sequence") or row.get("sequence") or None
            orientation = row.get("label_orientation") or row.get("orientation") or None
            attributes = {}
            for code in self.vocabulary.attribute_codes:
                value = row.get(f"attribute_{code}") or row.get(code)
                if value:
                    attributes[code] = str(value)
            try:
                self._check_codes(sequence, orientation, attributes)
            except ValueError as e:
                problems.append(f"row {n} ({uid}): {e}")
                continue
            if sequence is None and orientation is None and not attributes:
                problems.append(f"row {n} ({uid}): no label")
                continue
            key = json.dumps([batch, n, uid, sequence, orientation, attributes], sort_keys=True)
            events.append(LabelEvent(
                event_id="import-" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex,
                series_uid=uid, kind="correct", sequence=sequence, orientation=orientation, attributes=attributes,
                note=row.get("note") or None, user=row.get("corrected_by") or row.get("user") or user or default_user(),
                source=source, model_version="", created_at=now,
            ))
        recorded = 0
        with self._write() as c:
            for event in events:
                event.model_version = self._model_version(c, event.series_uid)
                recorded += self._insert_event(c, event)
        return recorded, problems

    # -- reading ------------------------------------------------------------------------------------------------

    def has_event(self, event_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone() is not None

    def prediction(self, series_uid: str) -> SeriesPrediction | None:
        row = self._conn.execute(
            "SELECT prediction_json FROM predictions WHERE series_uid = ?", (series_uid,)
        ).fetchone()
        return SeriesPrediction.from_dict(json.loads(row[0])) if row else None

    def history(self, series_uid: str) -> list[LabelEvent]:
        rows = self._conn.execute(
            "SELECT event_id, series_uid, kind, sequence, orientation, attributes_json, note, user, source, "
            "model_version, created_at FROM events WHERE series_uid = ? ORDER BY id",
            (series_uid,),
        ).fetchall()
        return [_event(r) for r in rows]

    def current(self, series_uid: str) -> LabelRecord | None:
        return self._record(self._conn, series_uid)

    def prediction_keys(self) -> dict[str, tuple[str | None, str | None]]:
        """series_uid -> (content_key, model_key) of every stored prediction (None where unknown)."""
        rows = self._conn.execute("SELECT series_uid, content_key, model_key FROM predictions").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def predictions(self, series_uids: Iterable[str]) -> dict[str, SeriesPrediction]:
        """The stored predictions of these series (those the store has)."""
        out = {}
        for uid in series_uids:
            p = self.prediction(uid)
            if p is not None:
                out[uid] = p
        return out

    def predicted_uids(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT series_uid FROM predictions").fetchall()}

    def series_uids(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT series_uid FROM predictions UNION SELECT series_uid FROM events ORDER BY series_uid"
        ).fetchall()
        return [r[0] for r in rows]

    def records(self) -> list[LabelRecord]:
        """Every series with a prediction or a label, ordered by patient, study, series number."""
        # one consistent snapshot even while others write
        c = self._conn
        c.execute("BEGIN")
        try:
            records = [r for uid in self.series_uids() if (r := self._record(c, uid)) is not None]
        finally:
            c.execute("COMMIT")
        return sorted(records, key=_record_order)

    def verified_labels(self) -> dict[str, dict[str, str]]:
        """Labels a person gave or confirmed, shaped like a labels CSV: ``{series_uid: {column: value}}``.

        Only corrected and accepted series count: training on the model's own unreviewed guesses
        would teach it nothing. Attributes are those a person set, else those the sequence code
        implies (vocabulary); a predicted attribute nobody looked at is left out, so a correction
        from T1 PRE to T1 POST never trains with the stale PRE.
        """
        out: dict[str, dict[str, str]] = {}
        for r in self.records():
            if r.state == "unreviewed" or not r.sequence:
                continue
            explicit: dict[str, str] = {}
            for e in self.history(r.series_uid):
                explicit.update(e.attributes)
            row = {"series_uid": r.series_uid, "sequence": r.sequence, "orientation": r.orientation or "",
                   "label_source": r.state}
            cls = self.vocabulary.sequence(r.sequence)
            implied = {"contrast": cls.contrast, "acquisition": cls.acquisition}
            row.update({k: v for k, v in implied.items() if v})
            row.update(explicit)
            out[r.series_uid] = row
        return out

    def export_rows(self) -> list[dict[str, Any]]:
        """Store-level export columns, one dict per series (export.py adds the BIDS columns)."""
        return [record_row(r) for r in self.records()]

    def _record(self, c: sqlite3.Connection, series_uid: str) -> LabelRecord | None:
        row = c.execute(
            "SELECT prediction_json, model_version FROM predictions WHERE series_uid = ?", (series_uid,)
        ).fetchone()
        prediction = SeriesPrediction.from_dict(json.loads(row[0])) if row else None
        events = [
            _event(r)
            for r in c.execute(
                "SELECT event_id, series_uid, kind, sequence, orientation, attributes_json, note, user, source, "
                "model_version, created_at FROM events WHERE series_uid = ? ORDER BY id",
                (series_uid,),
            ).fetchall()
        ]
        if prediction is None and not events:
            return None
        return derive_record(series_uid, prediction, row[1] if row else "", events)


def derive_record(
    series_uid: str, prediction: SeriesPrediction | None, model_version: str, events: list[LabelEvent]
) -> LabelRecord:
    """The current label from a prediction and its history: per field, the latest event that set it wins."""
    sequence = prediction.sequence.label if prediction and prediction.sequence else None
    orientation = prediction.orientation.label if prediction and prediction.orientation else None
    predicted_attributes = {k: t.label for k, t in (prediction.attributes.items() if prediction else [])}
    attributes = dict(predicted_attributes)
    record = LabelRecord(series_uid, prediction, sequence, orientation, attributes, model_version=model_version)
    labelled = False
    for e in events:
        record.n_events += 1
        if e.note:
            record.note = e.note
        if e.kind == "note":
            continue
        labelled = True
        if e.sequence is not None:
            record.sequence = e.sequence
        if e.orientation is not None:
            record.orientation = e.orientation
        record.attributes.update(e.attributes)
        record.corrected_by, record.corrected_at, record.source = e.user, e.created_at, e.source
    if labelled:
        predicted = (
            prediction.sequence.label if prediction and prediction.sequence else None,
            prediction.orientation.label if prediction and prediction.orientation else None,
            predicted_attributes,
        )
        differs = (record.sequence, record.orientation, record.attributes) != predicted
        record.state = "corrected" if differs else "accepted"
        record.label_source = record.state
    return record


def record_row(r: LabelRecord) -> dict[str, Any]:
    p = r.prediction
    return {
        "series_uid": r.series_uid,
        "study_uid": p.study_uid if p else "",
        "patient_id": p.patient_id if p else "",
        "series_number": p.series_number if p else None,
        "series_description": p.series_description if p else "",
        "predicted_sequence": p.sequence.label if p and p.sequence else None,
        "predicted_sequence_probability": round(p.sequence.probability, 4) if p and p.sequence else None,
        "predicted_orientation": p.orientation.label if p and p.orientation else None,
        "predicted_orientation_probability": round(p.orientation.probability, 4) if p and p.orientation else None,
        "predicted_sequence_probabilities": (
            {k: round(v, 4) for k, v in p.sequence.probabilities.items()} if p and p.sequence else {}
        ),
        "attributes": dict(r.attributes),
        "needs_review": bool(p.needs_review) if p else False,
        "review_state": r.state,
        "label_sequence": r.sequence,
        "label_orientation": r.orientation,
        "label_source": r.label_source,
        "corrected_by": r.corrected_by,
        "corrected_at": r.corrected_at,
        "correction_source": r.source,
        "note": r.note,
        "model_version": r.model_version,
    }


def _record_order(r: LabelRecord) -> tuple:
    p = r.prediction
    number = p.series_number if p and p.series_number is not None else 1 << 30
    return (p.patient_id if p else "", p.study_uid if p else "", number, r.series_uid)


def _event(row: tuple) -> LabelEvent:
    return LabelEvent(
        event_id=row[0],
        series_uid=row[1],
        kind=row[2],
        sequence=row[3],
        orientation=row[4],
        attributes=json.loads(row[5]) if row[5] else {},
        note=row[6],
        user=row[7],
        source=row[8],
        model_version=row[9],
        created_at=row[10],
    )
