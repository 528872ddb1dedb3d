"""Where series come from: a folder tree of DICOM files, or a Slicer DICOM database.

Both give ``SeriesRef`` (the files of one SeriesInstanceUID). The unit is the DICOM
series as the scanner wrote it: a series is never split by b-value, echo, time point
or plane. A 3-plane localizer stays one series (its orientation is MIXED), a DWI
series with b0 and b1000 stays one DWI series. That is what a user sees in a PACS or
in Slicer's DICOM browser and what a correction refers to.

Slicer databases are read through anything that behaves like ``slicer.dicomDatabase``
(see ``DicomDatabaseLike``); outside Slicer, ``SqliteDicomDatabase`` reads the same
``ctkDICOM.sql`` file directly (read-only; CTK schema 0.7 and 0.8).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from pydicom.tag import Tag

from ..errors import DicomDatabaseError, NotDicomError
from ..series import InstanceInfo, SeriesRef
from .budget import file_meta_end, read_dataset

log = logging.getLogger(__name__)

DATABASE_FILENAME = "ctkDICOM.sql"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Everything grouping needs sits up to (0020,0052): reading stops there, which skips the
# large private blocks (Siemens CSA, GE, Philips) and per-frame functional groups.
_GROUPING_LAST_TAG = Tag(0x0020, 0x0052)
_GROUPING_TAGS = [
    Tag(0x0008, 0x0016),  # SOPClassUID
    Tag(0x0008, 0x0018),  # SOPInstanceUID
    Tag(0x0008, 0x0060),  # Modality
    Tag(0x0008, 0x103E),  # SeriesDescription
    Tag(0x0010, 0x0020),  # PatientID
    Tag(0x0020, 0x000D),  # StudyInstanceUID
    Tag(0x0020, 0x000E),  # SeriesInstanceUID
    Tag(0x0020, 0x0011),  # SeriesNumber
    Tag(0x0020, 0x0013),  # InstanceNumber
    Tag(0x0020, 0x0032),  # ImagePositionPatient
    Tag(0x0020, 0x0037),  # ImageOrientationPatient
    Tag(0x0020, 0x0052),  # FrameOfReferenceUID
]


def _stop_after_grouping(tag, vr, length) -> bool:
    return tag > _GROUPING_LAST_TAG


def _floats(value, n: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == n and all(math.isfinite(v) for v in values) else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# First bytes of the compressed files test-data repositories and exports carry (dcm2niix's test sets gzip every
# file): a folder of them holds DICOM that nothing here reads, and the user must hear why no series was found.
_COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                     (b"(\xb5/\xfd", "zstd"), (b"7z\xbc\xaf\x27\x1c", "7z"))


def compression_of(path: Path) -> str | None:
    """The compression a file's first bytes announce ("gzip", "zip", …), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    return next((name for magic, name in _COMPRESSED_MAGIC if head.startswith(magic)), None)


def looks_like_dicom(path: Path) -> bool:
    """True when the file has the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


_KEYWORDS = {
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080060: "Modality",
    0x0008103E: "SeriesDescription",
    0x00100020: "PatientID",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00200011: "SeriesNumber",
    0x00200013: "InstanceNumber",
    0x00200032: "ImagePositionPatient",
    0x00200037: "ImageOrientationPatient",
    0x00200052: "FrameOfReferenceUID",
}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_SCAN_BYTES = 65536
_SCAN_FIRST_BYTES = 4096


class _ScanAbort(Exception):
    """The fast scanner met something it leaves to pydicom (odd syntax, data beyond its buffer)."""


def _element_header(buf: bytes, pos: int, implicit: bool, endian: str) -> tuple[int, int, int]:
    """(tag, value length, header size) of the element at pos."""
    if pos + 8 > len(buf):
        raise _ScanAbort
    group, elem = struct.unpack_from(endian + "HH", buf, pos)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:
        return tag, struct.unpack_from(endian + "I", buf, pos + 4)[0], 8
    vr = buf[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _ScanAbort
        return tag, struct.unpack_from(endian + "I", buf, pos + 8)[0], 12
    return tag, struct.unpack_from(endian + "H", buf, pos + 6)[0], 8


def _skip_undefined(buf: bytes, pos: int, implicit: bool, endian: str) -> int:
    """Position after an undefined-length sequence (or item) whose value starts at pos."""
    while True:
        tag, length, size = _element_header(buf, pos, implicit, endian)
        pos += size
        if tag in (0xFFFEE0DD, 0xFFFEE00D):  # sequence / item delimiter
            return pos
        pos = _skip_undefined(buf, pos, implicit, endian) if length == _UNDEFINED else pos + length
        if pos > len(buf):
            raise _ScanAbort


def _scan_grouping_tags(path: Path, limit: int = _SCAN_BYTES) -> dict[str, str] | None:
    """The grouping tags straight from the bytes of a Part-10 file; None when pydicom should do it.

    Reading a few kilobytes and walking the element headers is several times cheaper than
    building a pydicom dataset, and grouping touches every file of an archive.
    """
    with open(path, "rb") as f:
        buf = f.read(limit)
    meta = file_meta_end(buf)
    if meta is None:
        return None
    pos, syntax = meta
    if syntax is None or syntax in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):
        return None  # no meta, deflated or big endian: pydicom handles those
    implicit, endian = syntax == "1.2.840.10008.1.2", "<"
    values: dict[str, str] = {}
    while pos < len(buf):
        tag, length, size = _element_header(buf, pos, implicit, endian)
        if tag > _GROUPING_LAST_TAG:
            return values
        pos += size
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, pos, implicit, endian)
            continue
        if pos + length > len(buf):
            raise _ScanAbort
        keyword = _KEYWORDS.get(tag)
        if keyword:
            values[keyword] = buf[pos : pos + length].decode("latin-1").strip("\x00 ")
        pos += length
    if len(buf) == limit:
        raise _ScanAbort  # the buffer ended, not the file
    return values


def _split_floats(text: str | None, n: int) -> tuple[float, ...] | None:
    return _floats(text.split("\\"), n) if text else None


def read_grouping_tags(path: Path) -> tuple[dict, InstanceInfo]:
    """Read the few tags that group a file into its series, stopping early.

    Returns (values by keyword, InstanceInfo). Raises NotDicomError for files that are
    not DICOM, OSError/other exceptions for unreadable or corrupt DICOM.
    """
    scanned = None
    for size in (_SCAN_FIRST_BYTES, _SCAN_BYTES):  # most headers end their group 0020 within a few KB
        try:
            scanned = _scan_grouping_tags(path, size)
            break
        except (_ScanAbort, struct.error, UnicodeDecodeError):
            continue
    if scanned is not None and scanned.get("SeriesInstanceUID"):
        values = {k: scanned.get(k, "") for k in _KEYWORDS.values() if k not in _GEOMETRY_KEYWORDS}
        info = InstanceInfo(
            path=Path(path),
            sop_instance_uid=values["SOPInstanceUID"],
            instance_number=_int_or_none(scanned.get("InstanceNumber", "").strip() or None),
            position=_split_floats(scanned.get("ImagePositionPatient"), 3),
            orientation=_split_floats(scanned.get("ImageOrientationPatient"), 6),
            study_uid=values["StudyInstanceUID"],
            modality=values["Modality"],
            frame_of_reference=values["FrameOfReferenceUID"],
            series_number=values["SeriesNumber"].strip(),
            series_description=values["SeriesDescription"],
        )
        del values["InstanceNumber"]
        return values, info
    return _read_grouping_tags_pydicom(path)


_GEOMETRY_KEYWORDS = {"ImagePositionPatient", "ImageOrientationPatient"}


def _read_grouping_tags_pydicom(path: Path) -> tuple[dict, InstanceInfo]:
    has_preamble = looks_like_dicom(path)
    # Files without the preamble are only accepted when they parse to something with UIDs.
    ds = read_dataset(path, stop_when=_stop_after_grouping, force=not has_preamble, specific_tags=_GROUPING_TAGS)
    meta_class = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "")
    values = {
        "SOPClassUID": str(ds.get("SOPClassUID", "") or meta_class),
        "SOPInstanceUID": str(ds.get("SOPInstanceUID", "") or ""),
        "Modality": str(ds.get("Modality", "") or ""),
        "SeriesDescription": str(ds.get("SeriesDescription", "") or ""),
        "PatientID": str(ds.get("PatientID", "") or ""),
        "StudyInstanceUID": str(ds.get("StudyInstanceUID", "") or ""),
        "SeriesInstanceUID": str(ds.get("SeriesInstanceUID", "") or ""),
        "FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "") or ""),
        "SeriesNumber": str(ds.get("SeriesNumber", "") or "").strip(),
    }
    if not has_preamble and not (values["SeriesInstanceUID"] or values["SOPClassUID"]):
        raise NotDicomError(f"{path}: not a DICOM file")
    info = InstanceInfo(
        path=Path(path),
        sop_instance_uid=values["SOPInstanceUID"],
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        study_uid=values["StudyInstanceUID"],
        modality=values["Modality"],
        frame_of_reference=values["FrameOfReferenceUID"],
        series_number=values["SeriesNumber"],
        series_description=values["SeriesDescription"],
    )
    return values, info


class _Duplicates:
    """Files that share a SOPInstanceUID: a copy of an instance counts once, different images all count.

    A copy lies in the same series at the same place with the same number; anything else reusing the UID
    (another series, another slice) is a different image, kept, and named in a note of each series.
    """

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[str, InstanceInfo]]] = {}
        self.copies: dict[str, list[str]] = {}
        self.reused: dict[str, list[str]] = {}

    def is_copy(self, uid: str, info: InstanceInfo) -> bool:
        sop = info.sop_instance_uid
        if not sop:
            return False
        earlier = self.seen.setdefault(sop, [])
        for other_uid, other in earlier:
            if other_uid == uid and (other.position, other.orientation, other.instance_number) == (
                    info.position, info.orientation, info.instance_number):
                self.copies.setdefault(uid, []).append(f"{info.path.name} (copy of {other.path.name})")
                return True
        if earlier:
            other_uid, other = earlier[0]
            where = "" if other_uid == uid else f" of series {other_uid}"
            note = f"{info.path.name} and {other.path.name}{where} (different images)"
            self.reused.setdefault(uid, []).append(note)
            if other_uid != uid:
                self.reused.setdefault(other_uid, []).append(f"{other.path.name} and {info.path.name} of series {uid}")
        earlier.append((uid, info))
        return False

    def notes(self, uid: str) -> list[str]:
        out = []
        for items, what in ((self.copies.get(uid, []), "duplicate file(s) of one instance, counted once"),
                            (self.reused.get(uid, []), "file(s) reusing another file's SOPInstanceUID, all kept")):
            if items:
                more = f" and {len(items) - 3} more" if len(items) > 3 else ""
                out.append(f"{len(items)} {what}: {'; '.join(items[:3])}{more}")
        return out


class FolderSource:
    """Every DICOM series under a folder (any layout, mixed studies, non-DICOM files beside them).

    Zero-byte files, non-DICOM files and DICOMDIR files are passed over silently (counted in
    ``ignored``); DICOM files that cannot be read are listed in ``problems`` with the reason, and so,
    in one line, are compressed files (``compressed``), which may hold DICOM this reader cannot see.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.problems: list[str] = []
        self.ignored: int = 0
        self.compressed: list[Path] = []
        self._compressions: set[str] = set()

    def _pass_over(self, path: Path) -> None:
        self.ignored += 1
        kind = compression_of(path)
        if kind:
            self.compressed.append(path)
            self._compressions.add(kind)

    def _report_compressed(self) -> None:
        if not self.compressed:
            return
        kinds = ", ".join(sorted(self._compressions))
        self.problems.append(f"{len(self.compressed)} compressed file(s) not read ({kinds}; e.g. "
                             f"{self.compressed[0]}): decompress them (e.g. gunzip -r, unzip) to classify the "
                             "DICOM they may hold")
        log.warning(self.problems[-1])

    def _files(self) -> Iterator[Path]:
        if self.root.is_file():
            yield self.root
            return
        seen: set[str] = set()
        # Linked folders are followed (archives are often assembled from links), each real folder once.
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            for name in sorted(filenames):
                yield Path(dirpath) / name

    def __iter__(self) -> Iterator[SeriesRef]:
        if not self.root.exists():
            raise FileNotFoundError(f"{self.root}: no such file or folder")
        refs: dict[str, SeriesRef] = {}
        duplicates = _Duplicates()
        for path in self._files():
            try:
                if path.stat().st_size == 0 or path.name.upper() == "DICOMDIR":
                    self.ignored += 1
                    continue
                values, info = read_grouping_tags(path)
            except NotDicomError:
                self._pass_over(path)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the rest
                if looks_like_dicom(path):
                    self.problems.append(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})")
                    log.warning(self.problems[-1])
                else:
                    self._pass_over(path)
                continue
            if values["SOPClassUID"] == DICOMDIR_SOP_CLASS:
                self.ignored += 1
                continue
            uid = values["SeriesInstanceUID"]
            if not uid:
                self.problems.append(f"{path}: DICOM file without SeriesInstanceUID, not grouped")
                log.warning(self.problems[-1])
                continue
            if duplicates.is_copy(uid, info):
                continue  # the same instance copied twice would count double
            ref = refs.get(uid)
            if ref is None:
                ref = refs[uid] = SeriesRef(
                    series_uid=uid,
                    files=[],
                    study_uid=values["StudyInstanceUID"],
                    patient_id=values["PatientID"],
                    source=str(self.root),
                    series_description=values["SeriesDescription"],
                )
            ref.files.append(path)
            ref.instances.append(info)
        for uid, ref in refs.items():
            ref.notes.extend(duplicates.notes(uid))  # told with the series' other warnings
        self._report_compressed()
        yield from refs.values()


class DicomDatabaseLike(Protocol):
    """The part of ``ctkDICOMDatabase`` (``slicer.dicomDatabase``) this engine uses.

    Inside Slicer, pass ``slicer.dicomDatabase`` itself to ``DicomDatabaseSource``.
    Patients, studies and series are given as strings (patient UID, StudyInstanceUID,
    SeriesInstanceUID); ``filesForSeries`` returns file paths (absolute in Slicer).
    """

    def patients(self) -> list[str]: ...

    def studiesForPatient(self, patient: str) -> list[str]: ...  # noqa: N802 - CTK's name

    def seriesForStudy(self, study: str) -> list[str]: ...  # noqa: N802

    def filesForSeries(self, series: str) -> list[str]: ...  # noqa: N802


class SqliteDicomDatabase:
    """A Slicer/CTK DICOM database read straight from its ``ctkDICOM.sql`` (read-only).

    Implements ``DicomDatabaseLike``. Relative ``Filename``s are relative to the database
    folder; schema 0.8 may leave ``Filename`` empty and give a ``file://`` URL instead.
    Anything else that is not a local file is reported by ``unreachable``.
    """

    def __init__(self, directory: str | os.PathLike):
        directory = Path(directory)
        if directory.name == DATABASE_FILENAME:
            directory = directory.parent
        self.directory = directory
        self.path = directory / DATABASE_FILENAME
        if not self.path.is_file():
            raise FileNotFoundError(f"{directory}: no {DATABASE_FILENAME} here, not a Slicer DICOM database")
        try:
            # mode=ro: never change (or lock for writing) a user's database, even while Slicer has it open.
            self._con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            columns = {row[1] for row in self._query("PRAGMA table_info(Images)")}
        except sqlite3.Error as e:
            raise DicomDatabaseError(f"{self.path}: not a readable DICOM database ({e})") from e
        if not {"Filename", "SeriesInstanceUID"} <= columns:
            raise DicomDatabaseError(f"{self.path}: table Images lacks Filename/SeriesInstanceUID, "
                                     "not a CTK DICOM database")
        self.has_url = "URL" in columns
        self.schema_version = self._schema_version()
        self.unreachable: dict[str, list[str]] = {}  # series uid -> entries that name no local file

    def _schema_version(self) -> str:
        try:
            rows = self._query("SELECT Version FROM SchemaInfo")
        except DicomDatabaseError:  # schema 0.7 databases may lack the table
            return ""
        return str(rows[0][0]) if rows else ""

    def close(self) -> None:
        self._con.close()

    def _query(self, sql: str, params: tuple = ()) -> list:
        """All rows of a query; a corrupt, locked or foreign database is a DicomDatabaseError naming the file."""
        try:
            return self._con.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise DicomDatabaseError(f"{self.path}: cannot read ({e})") from e

    def patients(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT UID FROM Patients ORDER BY UID")]

    def studiesForPatient(self, patient: str) -> list[str]:  # noqa: N802
        rows = self._query(
            "SELECT StudyInstanceUID FROM Studies WHERE PatientsUID = ? ORDER BY StudyDate, StudyTime", (patient,)
        )
        return [r[0] for r in rows]

    def seriesForStudy(self, study: str) -> list[str]:  # noqa: N802
        rows = self._query(
            "SELECT SeriesInstanceUID FROM Series WHERE StudyInstanceUID = ? ORDER BY SeriesNumber", (study,)
        )
        return [r[0] for r in rows]

    def orphan_series(self) -> list[str]:
        """Series that have images but no Series/Study row (half-indexed databases)."""
        rows = self._query(
            "SELECT DISTINCT i.SeriesInstanceUID FROM Images i LEFT JOIN Series s "
            "ON i.SeriesInstanceUID = s.SeriesInstanceUID LEFT JOIN Studies st "
            "ON s.StudyInstanceUID = st.StudyInstanceUID WHERE s.SeriesInstanceUID IS NULL "
            "OR st.StudyInstanceUID IS NULL"
        )
        return [r[0] for r in rows]

    def filesForSeries(self, series: str) -> list[str]:  # noqa: N802
        url = ", URL" if self.has_url else ", ''"
        rows = self._query(
            f"SELECT Filename{url} FROM Images WHERE SeriesInstanceUID = ? ORDER BY Filename", (series,)
        )
        files = []
        for filename, address in rows:
            path = self._resolve(filename or "", address or "")
            if path is None:
                self.unreachable.setdefault(series, []).append(filename or address or "(no Filename, no URL)")
            else:
                files.append(str(path))
        return files

    def series_info(self, series: str) -> dict[str, str]:
        rows = self._query(
            "SELECT s.StudyInstanceUID, s.SeriesDescription, p.PatientID FROM Series s "
            "LEFT JOIN Studies st ON s.StudyInstanceUID = st.StudyInstanceUID "
            "LEFT JOIN Patients p ON st.PatientsUID = p.UID WHERE s.SeriesInstanceUID = ?",
            (series,),
        )
        if not rows:
            return {}
        row = rows[0]
        return {"study_uid": row[0] or "", "series_description": row[1] or "", "patient_id": row[2] or ""}

    def _resolve(self, filename: str, address: str) -> Path | None:
        if filename:
            path = Path(filename)
            if path.is_absolute():  # linked in place: the user's own files
                return path
            inside = os.path.normpath(self.directory / path)
            # a relative entry names a copy inside the database folder; "../" out of it is not followed
            return Path(inside) if _within(inside, os.path.normpath(self.directory)) else None
        if address:
            parsed = urlparse(address)
            if parsed.scheme == "file":
                return Path(unquote(parsed.path))
        return None


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


class DicomDatabaseSource:
    """Series of a ``DicomDatabaseLike`` database (``slicer.dicomDatabase`` or ``SqliteDicomDatabase``).

    Files listed in the database but gone from disk are kept in ``SeriesRef.missing``;
    header reading reports them and carries on with the rest.
    """

    def __init__(self, database: DicomDatabaseLike, series_uids: Iterable[str] | None = None, source: str = ""):
        self.database = database
        self.series_uids = list(series_uids) if series_uids is not None else None
        self.source = source or str(getattr(database, "directory", "") or "DICOM database")

    def _all_series(self) -> Iterator[tuple[str, str, str]]:
        """(patient, study, series) over the whole database, each series once."""
        seen: set[str] = set()
        for patient in self.database.patients():
            for study in self.database.studiesForPatient(patient):
                for series in self.database.seriesForStudy(study):
                    if series not in seen:
                        seen.add(series)
                        yield patient, study, series
        for series in getattr(self.database, "orphan_series", list)():
            if series not in seen:
                seen.add(series)
                yield "", "", series

    def __iter__(self) -> Iterator[SeriesRef]:
        if self.series_uids is not None:
            triples: Iterable[tuple[str, str, str]] = (("", "", uid) for uid in self.series_uids)
        else:
            triples = self._all_series()
        for _patient, study, series in triples:
            info = getattr(self.database, "series_info", lambda s: {})(series)
            present, missing = [], []
            for name in self.database.filesForSeries(series):
                (present if os.path.isfile(name) else missing).append(Path(name))
            missing += [Path(x) for x in getattr(self.database, "unreachable", {}).get(series, [])]
            yield SeriesRef(
                series_uid=series,
                files=present,
                study_uid=info.get("study_uid", study),
                patient_id=info.get("patient_id", ""),
                source=self.source,
                series_description=info.get("series_description", ""),
                missing=missing,
            )


def SlicerDatabaseSource(directory: str | os.PathLike) -> DicomDatabaseSource:  # noqa: N802 - reads as a class
    """A Slicer DICOM database folder (the one holding ``ctkDICOM.sql``), read without Slicer."""
    db = SqliteDicomDatabase(directory)
    return DicomDatabaseSource(db, source=str(db.directory))


def is_slicer_database(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path.is_file() and path.name == DATABASE_FILENAME) or (path / DATABASE_FILENAME).is_file()


def iter_series_refs(path: str | os.PathLike) -> Iterator[SeriesRef]:
    """Series under ``path``: a Slicer database folder (has ctkDICOM.sql), a folder tree, or one file."""
    if is_slicer_database(path):
        return iter(SlicerDatabaseSource(path))
    return iter(FolderSource(path))
