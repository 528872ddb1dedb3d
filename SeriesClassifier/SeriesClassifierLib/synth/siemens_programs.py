"""The sequence program a Siemens scanner names in its protocol text (``tSequenceFileName``), per technique.

Product programs live under ``%SiemensSeq%``, research and C2P ones (CMRR multiband, most pCASL builds)
under ``%CustomerSeq%``. Names seen in public scanner exports and converter code: tfl (MPRAGE), tse, tse_vfl
(SPACE), gre, gre_field_mapping, ep2d_diff, resolve, ep2d_bold, ep2d_pasl, ep2d_pcasl, tgse_pcasl,
cmrr_mbep2d_bold; the rest follow the same scheme (haste, ep2d_perf, svs_se) and are our best knowledge.
A customer pCASL build often writes nothing about ASL in ImageType: the program is then the only word for it.
Phase contrast has no entry: its product programs differ by platform and we know none for brain flow, so
those series name none (as an anonymiser's stripped file does).
"""

from __future__ import annotations

import zlib

PRODUCT, CUSTOMER = "%SiemensSeq%", "%CustomerSeq%"
_DIFFUSION = ((PRODUCT, "ep2d_diff"), (PRODUCT, "ep2d_diff"), (PRODUCT, "ep2d_diff"), (PRODUCT, "resolve"),
              (CUSTOMER, "cmrr_mbep2d_diff"))
_ASL_2D = ((PRODUCT, "ep2d_pasl"), (PRODUCT, "ep2d_pasl"), (PRODUCT, "ep2d_pcasl"), (CUSTOMER, "ep2d_pcasl"),
           (CUSTOMER, "ep2d_pcasl"))
_ASL_3D = ((PRODUCT, "tgse_asl"), (CUSTOMER, "tgse_pcasl"))
_SWI = ((PRODUCT, "swi"),)
PROGRAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "scout": ((PRODUCT, "AAHScout"), (PRODUCT, "gre")), "scout_cal": ((PRODUCT, "AAHScout"),),
    "scout_mpr": ((PRODUCT, "AAHScout"),),
    "t1_se": ((PRODUCT, "se"), (PRODUCT, "tse")), "t1_flair": ((PRODUCT, "tse"),),
    "t1_3d_ir": ((PRODUCT, "tfl"),), "t1_mpr": ((PRODUCT, "tfl"),),
    "t1_3d_gre": ((PRODUCT, "fl3d_vibe"), (PRODUCT, "gre")),
    "t2_tse": ((PRODUCT, "tse"),), "pd_tse": ((PRODUCT, "tse"),), "flair_2d": ((PRODUCT, "tse"),),
    "t2_3d": ((PRODUCT, "tse_vfl"),), "flair_3d": ((PRODUCT, "tse_vfl"),), "haste": ((PRODUCT, "haste"),),
    "t2star": ((PRODUCT, "gre"),), "t2star_me": ((PRODUCT, "gre"),), "t2star_me2d": ((PRODUCT, "gre"),),
    "swi": _SWI, "swi_mag": _SWI, "swi_phase": _SWI, "swi_minip": _SWI,
    "dwi": _DIFFUSION, "dti": _DIFFUSION, "adc": _DIFFUSION, "fa": _DIFFUSION, "eadc": _DIFFUSION,
    "dsc": ((PRODUCT, "ep2d_perf"),),
    "asl": _ASL_2D, "asl_m0": _ASL_2D, "asl_3d": _ASL_3D, "asl_3d_m0": _ASL_3D,
    "tof": ((PRODUCT, "fl_tof"),), "mip": ((PRODUCT, "fl_tof"),), "ciss": ((PRODUCT, "ciss"),),
    "bold": ((PRODUCT, "ep2d_bold"), (PRODUCT, "ep2d_bold"), (CUSTOMER, "cmrr_mbep2d_bold")),
    "fmap_mag": ((PRODUCT, "gre_field_mapping"),), "fmap_phase": ((PRODUCT, "gre_field_mapping"),),
    "fmap_sepi": ((PRODUCT, "ep2d_se"), (CUSTOMER, "cmrr_mbep2d_se")),
    "other_mt": ((PRODUCT, "gre"),), "other_t1map": ((CUSTOMER, "mp2rage"),), "other_svs": ((PRODUCT, "svs_se"),),
}


def program(technique: str, study_key: str) -> str:
    """``%SiemensSeq%\\tfl``: the program of ``technique`` at the site ``study_key`` names ("" when unknown).

    Chosen by a hash, not the generator's random stream, so that adding it changed no other value; a study
    keeps one program per technique (a series and its derived maps, a run and its M0 agree).
    """
    options = PROGRAMS.get(technique)
    if not options:
        return ""
    folder, name = options[zlib.crc32(f"{study_key}/{options}".encode()) % len(options)]
    return f"{folder}\\{name}"


def protocol_block(sequence_file: str) -> str:
    """The protocol text as the scanner writes it, reduced to the sequence program."""
    return f'### ASCCONV BEGIN ###\ntSequenceFileName\t = \t""{sequence_file}""\n### ASCCONV END ###\n'
