"""Siemens files name their sequence program in the protocol text; the generator writes it too."""

from __future__ import annotations

from collections import defaultdict

from SeriesClassifierLib.commands.synth import generate_header_rows
from SeriesClassifierLib.synth.siemens_programs import PROGRAMS, program


def test_generated_siemens_series_name_their_program_and_others_do_not():
    series, labels = generate_header_rows(4, seed=5, profiles=["siemens_skyra_3t", "siemens_xa_vida_3t",
                                                                "ge_signa_premier_3t"])
    by_class = defaultdict(set)
    for s in series:
        label = labels[s.series_uid]
        if label["vendor"] != "SIEMENS":
            assert not s.header.get("SiemensSequenceFile")
            continue
        by_class[label["sequence"]].add(s.header.get("SiemensSequenceFile"))
    assert by_class["T1_3D_PRE"] | by_class["T1_3D_POST"] >= {"%SiemensSeq%\\tfl"} or \
        by_class["T1_3D_PRE"] | by_class["T1_3D_POST"] <= {"%SiemensSeq%\\fl3d_vibe", "%SiemensSeq%\\gre", ""}
    assert by_class["DWI"] and all(p.endswith(("ep2d_diff", "resolve", "cmrr_mbep2d_diff")) for p in by_class["DWI"])
    assert by_class["SCOUT"] - {""}


def test_a_study_keeps_one_program_for_a_run_and_its_derived_maps():
    assert program("dwi", "1.2.3") == program("adc", "1.2.3") == program("fa", "1.2.3")
    assert program("asl", "1.2.3") == program("asl_m0", "1.2.3")
    studies = {program("bold", f"1.2.{i}") for i in range(40)}
    assert studies == {f"{folder}\\{name}" for folder, name in PROGRAMS["bold"]}  # sites differ
    assert program("no_such_technique", "1.2.3") == ""
