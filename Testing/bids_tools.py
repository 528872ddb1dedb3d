"""Running dcm2bids and heudiconv from the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TOOL_ENV = {**os.environ, "NO_ET": "1", "OMP_NUM_THREADS": "1"}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def niftis(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.glob("sub-*/**/*.nii.gz")}


def run_dcm2bids(records, dicom: Path, work: Path, timeout: int = 120) -> tuple[Path, subprocess.CompletedProcess]:
    """Write our dcm2bids config for ``records`` into ``work`` and run dcm2bids on ``dicom``; it must succeed."""
    import json

    from SeriesClassifierLib.labels.export import export

    return run_dcm2bids_with(json.loads(export(records, "dcm2bids", anonymise=True)), dicom, work, timeout)


def run_dcm2bids_with(config: dict, dicom: Path, work: Path,
                      timeout: int = 120) -> tuple[Path, subprocess.CompletedProcess]:
    """Run dcm2bids with ``config`` on ``dicom`` (subject 01) into ``work/dcm2bids_out``; it must succeed."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "dcm2bids_config.json"
    path.write_text(json.dumps(config, indent=2))
    out = work / "dcm2bids_out"
    result = subprocess.run([tool("dcm2bids"), "-d", str(dicom), "-p", "01", "-c", str(path), "-o", str(out)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def run_heudiconv(records, files: list[str], work: Path,
                  timeout: int = 120) -> tuple[Path, subprocess.CompletedProcess]:
    """Write our heudiconv heuristic for ``records`` into ``work`` and run heudiconv on ``files``; it must succeed."""
    from SeriesClassifierLib.labels.export import export

    heuristic = work / "heuristic.py"
    heuristic.write_text(export(records, "heudiconv", anonymise=True))
    return run_heudiconv_with(heuristic, files, work, work / "heudiconv_out", timeout)


def run_heudiconv_with(heuristic: Path, files: list[str], work: Path, out: Path,
                       timeout: int = 120) -> tuple[Path, subprocess.CompletedProcess]:
    """Run heudiconv with a heuristic file on ``files`` (subject 01) into ``out``; it must succeed."""
    result = subprocess.run(
        [tool("heudiconv"), "--files", *files, "-s", "01", "-f", str(heuristic), "-c", "dcm2niix", "-b",
         "-o", str(out), "--overwrite"],
        capture_output=True, text=True, timeout=timeout, cwd=work, env=TOOL_ENV,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def names_outside_schema(paths: list[str], bids_version: str = "1.11.0") -> list[str]:
    """The paths the BIDS schema does not accept, as bidsschematools' ``bst pre-receive-hook`` says."""
    description = json.dumps({"Name": "SeriesClassifier test", "BIDSVersion": bids_version, "DatasetType": "raw"})
    text = "\n".join(["bids-hook-v2", description, "0001", *paths]) + "\n"
    result = subprocess.run([tool("bst"), "pre-receive-hook"], input=text, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if line.strip()]


def acquisitions_of(dicom: Path) -> dict:
    """What ``export --reusable`` reads from the DICOM for the dcm2bids rules: series UID -> its sidecars' fields."""
    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.labels.bids_metadata import acquisition_sidecars

    return {ref.series_uid: acquisition_sidecars(read_series(ref).header) for ref in iter_series_refs(dicom)}
