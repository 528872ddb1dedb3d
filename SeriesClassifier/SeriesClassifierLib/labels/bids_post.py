"""dcm2bids ``post_op`` step of the exported configs: an ASL file's ``aslcontext.tsv``.

dcm2bids runs ``python -m SeriesClassifierLib.labels.bids_post aslcontext src_file dst_file TABLE`` for every
``perf/…_asl`` file: it moves the NIfTI to its place (a post_op must write ``dst_file``) and writes the volume
types beside it, repeated to the number of volumes the NIfTI has. ``TABLE`` is ``KEY=type,type;KEY=…``: the
first KEY found in the converted file's name (the series UID in the exact configs) gives the types, ``*`` any
file. dcm2bids splits the command at spaces, so the table has none.
"""

from __future__ import annotations

import glob
import gzip
import shutil
import struct
import sys
from collections.abc import Sequence
from pathlib import Path


def nifti_volumes(path: str | Path) -> int:
    """The number of volumes (dim[4], at least 1) of a NIfTI-1 or NIfTI-2 file, gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(540)
    for endian in ("<", ">"):
        size = struct.unpack_from(f"{endian}i", header, 0)[0]
        if size == 348:
            dims = struct.unpack_from(f"{endian}8h", header, 40)
            return max(1, dims[4]) if dims[0] >= 4 else 1
        if size == 540:
            dims = struct.unpack_from(f"{endian}8q", header, 16)
            return max(1, int(dims[4])) if dims[0] >= 4 else 1
    raise ValueError(f"{path}: not a NIfTI file")


def aslcontext_text(types: Sequence[str], volumes: int) -> str:
    """``aslcontext.tsv``: the header line and one volume type per volume, ``types`` repeated to ``volumes``."""
    rows = [types[k % len(types)] for k in range(volumes)]
    return "volume_type\n" + "".join(f"{row}\n" for row in rows)


def aslcontext_path(nifti: str | Path) -> Path:
    """``sub-01_asl.nii.gz`` → ``sub-01_aslcontext.tsv`` (the same entities, the suffix replaced)."""
    name = Path(nifti).name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
    return Path(nifti).with_name(stem.rsplit("_", 1)[0] + "_aslcontext.tsv")


def parse_table(table: str) -> list[tuple[str, list[str]]]:
    out = []
    for entry in table.split(";"):
        key, sep, types = entry.partition("=")
        if sep and types:
            out.append((key, types.split(",")))
    return out


def write_aslcontext(src: str | Path, dst: str | Path, table: str) -> Path | None:
    """Move ``src`` to ``dst`` and write the aslcontext.tsv of the first matching table entry (None if none)."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    for key, types in parse_table(table):
        if key == "*" or key in Path(src).name:
            out = aslcontext_path(dst)
            out.write_text(aslcontext_text(types, nifti_volumes(dst)), encoding="utf-8")
            return out
    return None


def complete_sidecars(prefix: str, fields: dict, volume_types: Sequence[str] | None = None) -> list[Path]:
    """Merge ``fields`` into the sidecars heudiconv wrote for ``prefix`` (``…/sub-01_asl``: its ``.json``) and write
    ``aslcontext.tsv`` beside the NIfTI from ``volume_types``; heudiconv leaves sidecars read-only, so the mode is
    restored after. Returns the files written."""
    import json
    import os
    import stat

    written = []
    for sidecar in sorted(Path(prefix).parent.glob(glob.escape(Path(prefix).name) + "*.json")):
        if not fields or sidecar.name.endswith("_scans.json"):
            continue
        mode = sidecar.stat().st_mode
        os.chmod(sidecar, mode | stat.S_IWUSR)
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        data.update(fields)
        sidecar.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.chmod(sidecar, mode)
        written.append(sidecar)
    nifti = Path(prefix + ".nii.gz")
    if volume_types and nifti.exists():
        out = aslcontext_path(nifti)
        out.write_text(aslcontext_text(list(volume_types), nifti_volumes(nifti)), encoding="utf-8")
        written.append(out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 4 or args[0] != "aslcontext":
        print("usage: python -m SeriesClassifierLib.labels.bids_post aslcontext SRC DST KEY=type,type;…",
              file=sys.stderr)
        return 2
    written = write_aslcontext(args[1], args[2], args[3])
    if written is None:
        print(f"warning: no volume types for {args[1]}: no aslcontext.tsv written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
