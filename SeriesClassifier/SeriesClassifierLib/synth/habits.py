"""What each vendor and software generation writes in the acquisition tags, per technique.

``vendor_header`` returns ScanningSequence, SequenceVariant, ScanOptions, SequenceName, ImageType
and the private values (GE pulse-sequence name and b-value habit, Philips scanning technique)
that a scanner of the profile's make and generation writes for one technique. The rules are
habits, not one fixed string: where real scanners vary (an OSP here, a NORM there) the choice is
random with realistic odds. Sources (docs/PROFILES.md lists them per habit): the labelled real
development headers (../shared/real-dev), ../shared/VENDOR_NAMING.md and dcm2niix's per-vendor
notes. Facts were learnt from them; no header is copied.

Generations: Siemens VB (syngo MR B1x), VE (E11), XA (enhanced by default); GE LX (Signa
EXCITE/HDxt, Genesis habits), DV (DV2x), MR29, MR30; Philips R2, R3, R5, R11; Canon TOSHIBA
(Toshiba-era), CANON; UIH; HITACHI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .profiles import Profile
from .spec import SeriesSpec

_DIFFUSION = ("dwi", "adc", "dti", "fa", "eadc")
_DIFFUSION_MAPS = ("adc", "fa", "eadc")  # computed from a diffusion scan; the trace ("dwi") is one too on Siemens
_ASL = ("asl", "asl_3d", "asl_m0", "asl_3d_m0")
_PC = ("other_pc_mag", "other_pc_phase")


@dataclass
class Header:
    ss: tuple[str, ...]
    sv: tuple[str, ...]
    so: list[str] = field(default_factory=list)
    name: str = ""
    image_type: str | None = None  # None: the vendor table in vendors.py
    extra: dict = field(default_factory=dict)


def _p(rng: np.random.Generator, prob: float) -> bool:
    return bool(rng.random() < prob)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _split(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split("\\") if t)


def epi_factor(spec: SeriesSpec, rng: np.random.Generator) -> int:
    """Echoes per EPI shot as Siemens, Philips and Canon write it in EchoTrainLength (GE writes 1)."""
    lines = spec.rows if spec.rows else 96
    accel = _pick(rng, [1, 2, 2, 3])
    return max(int(round(lines * float(rng.uniform(0.6, 0.8)) / accel)), 15)


# --- Siemens ------------------------------------------------------------------------------------------------------


def _siemens(tech: str, spec: SeriesSpec, p: Profile, rng) -> Header:
    gen = p.generation or "VE"
    star = "*" if gen != "VB" or _p(rng, 0.7) else ""
    osp = ("OSP",) if _p(rng, 0.5) else ()
    h = (_siemens_anatomy(tech, spec, rng, gen, star, osp)
         or _siemens_epi_angio_other(tech, spec, rng, gen, star, osp))
    if gen == "XA" and spec.storage == "enhanced":
        # XA enhanced objects: no top-level ScanningSequence/SequenceVariant/SequenceName; the name
        # (with its leading *) is the PulseSequenceName
        h.extra["enhanced_habit"] = "siemens_xa"
        if tech in _DIFFUSION_MAPS or tech == "dwi":
            h.extra.update(_xa_derived_diffusion(tech, spec, rng))
        elif tech == "dti":
            # XA10 and later may type a weighted frame BMATRIX (with the b-matrix) where others write DIRECTIONAL
            # (dcm2niix nii_dicom.cpp set_directionality0018_9075)
            h.extra["xa_b_matrix"] = _p(rng, 0.5)
    return h


def _xa_derived_diffusion(tech: str, spec: SeriesSpec, rng) -> dict:
    """What the frames of a syngo XA map computed from a diffusion scan (ADC, trace, FA, exponential ADC) keep.

    Such a map is a diffusion image to its reader: dcm2niix takes a frame with a b-value and no gradient direction
    for a derived isotropic image (nii_dicom_batch.cpp, "derived image ADC/Isotropic") and finds the frame times of
    XA30 derived objects "mangled", so they carry the acquisition's frame timing. DICOM lets a DERIVED enhanced MR
    frame keep the MR timing, echo and pulse-sequence groups ("may be present"). Neither is documented per map,
    hence shares, not rules: some maps carry neither, as the generator wrote them before.
    """
    extra = {"derived_keeps_acquisition": _p(rng, 0.6)}
    if tech in _DIFFUSION_MAPS and _p(rng, 0.7):  # the trace has its own b-values, one per volume
        parent = spec.extra.get("_parent")
        weighted = [b for b in (parent.b_values if parent is not None else ()) if b > 0]
        extra["derived_b_value"] = float(max(weighted)) if weighted else 1000.0
    return extra


def _siemens_norm_tokens(gen: str, spec: SeriesSpec, rng) -> str:
    """syngo's trailing ImageType tokens: they vary by release and filter settings."""
    if gen == "VB":
        return _pick(rng, ["ND\\NORM", "ND", "NORM\\DIS2D"])
    return _pick(rng, ["ND\\NORM", "NORM\\DIS2D", "ND", "NORM\\DIS3D" if spec.acquisition == "3D" else "DIS2D"])


def _siemens_anatomy(tech: str, spec: SeriesSpec, rng, gen: str, star: str, osp: tuple) -> Header | None:
    """Localizers and the structural and susceptibility series (None for any other technique)."""
    etl = int(spec.echo_train_length or 1)
    m = int(spec.columns or 64)

    def norm_tokens() -> str:
        return _siemens_norm_tokens(gen, spec, rng)

    h: Header | None = None
    if tech == "scout":
        h = Header(("GR",), ("SP", *osp), [], f"{star}fl2d1", f"ORIGINAL\\PRIMARY\\M\\{norm_tokens()}")
    elif tech in ("scout_cal", "scout_mpr"):
        h = Header(("GR",), ("SP",), [], f"{star}fl3d1_ns")
    elif tech == "t1_se":
        name = f"{star}se2d1" if etl <= 1 else f"{star}tse2d1_{etl}"
        h = Header(("SE",), ("SK", "SP", *osp), [], name, f"ORIGINAL\\PRIMARY\\M\\{norm_tokens()}")
    elif tech == "t1_flair":
        h = Header(("SE", "IR"), ("SK", "SP", "MP", *osp), ["IR"] if _p(rng, 0.5) else [], f"{star}tir2d1_{etl}")
    elif tech in ("t1_3d_ir", "t1_mpr"):
        sv = _pick(rng, [("SP", "MP"), ("SK", "SP", "MP"), ("SP", "MP", "OSP")])
        name = _pick(rng, [f"{star}tfl3d1_16ns", f"{star}tfl3d1_ns", f"{star}tfl3d1"])
        h = Header(("GR", "IR"), sv, ["IR"] + (["PFP"] if _p(rng, 0.2) else []), name)
    elif tech == "t1_3d_gre":
        name = _pick(rng, [f"{star}fl3d1", f"{star}fl3d1_ns", f"{star}fl3d2"])
        h = Header(("GR",), ("SP", *osp), ["PFP"] if _p(rng, 0.3) else [], name)
    elif tech in ("t2_tse", "pd_tse"):
        echoes = int(spec.extra.get("n_echoes", 1))
        kind = _pick(rng, ["tse", "tse", "tseR", "tseB"]) if tech == "t2_tse" else "tse"
        h = Header(("SE",), ("SK", "SP", "OSP") if _p(rng, 0.7) else ("SK", "SP"), [],
                   f"{star}{kind}2d{echoes}_{etl}" + ("rr" if _p(rng, 0.1) else ""),
                   f"ORIGINAL\\PRIMARY\\M\\{norm_tokens()}")
    elif tech == "t2_3d":
        h = Header(("SE",), ("SK", "SP", *osp), [], f"{star}spc_{etl}ns" if _p(rng, 0.6) else f"{star}spc3d1_{etl}")
    elif tech == "haste":
        h = Header(("SE",), ("SK", "SS", "SP"), [], f"{star}h2d1_{m}")
    elif tech == "flair_2d":
        h = Header(("SE", "IR"), ("SK", "SP", "MP", *osp), ["IR"] if _p(rng, 0.4) else [], f"{star}tir2d1_{etl}")
    elif tech == "flair_3d":
        h = Header(("SE", "IR"), ("SK", "SP", "MP", *osp), ["IR"] if _p(rng, 0.4) else [],
                   f"{star}spcir_{etl}ns" if _p(rng, 0.6) else f"{star}spcirR3d1_{etl}")
    elif tech == "t2star":
        h = Header(("GR",), ("SP", *osp), [], _pick(rng, [f"{star}fl2d1r3", f"{star}fl2d1", f"{star}fl2d1r"]))
    elif tech == "t2star_me":
        n = int(spec.extra.get("n_echoes", 4))
        h = Header(("GR",), ("SP", *osp), [], f"{star}fl3d{n}r", f"ORIGINAL\\PRIMARY\\M\\{norm_tokens()}")
    elif tech == "t2star_me2d":  # the digit is the echo count, as in *fl3d8: *fl2d12 has 12 echoes
        n = int(spec.extra.get("n_echoes", 8))
        h = Header(("GR",), ("SP", *osp), [], f"{star}fl2d{n}" + ("r" if _p(rng, 0.25) else ""),
                   f"ORIGINAL\\PRIMARY\\M\\{norm_tokens()}")
    elif tech.startswith("swi"):
        h = Header(("GR",), ("SP", *osp), [], f"{star}swi3d1r")
    return h


def _siemens_epi_angio_other(tech: str, spec: SeriesSpec, rng, gen: str, star: str, osp: tuple) -> Header:
    """Diffusion, perfusion, BOLD, angiography, field maps and the rest."""
    m = int(spec.columns or 64)
    h: Header
    if tech in _DIFFUSION:
        ss = ("SE", "EP") if gen == "VB" or _p(rng, 0.2) else ("EP",)
        bmax = int(max(spec.b_values)) if spec.b_values else 1000
        name = {"dwi": f"{star}ep_b{bmax}t", "dti": f"{star}ep_b0"}.get(tech, f"{star}ep_b0_{bmax}")
        if tech == "dti" and _p(rng, 0.3):
            name = f"{star}ep_b{bmax}#{int(rng.integers(1, 31))}"
        h = Header(ss, ("SK", "SP"), (["PFP"] if _p(rng, 0.5) else []) + [_pick(rng, ["FS", "FS", "SFS"])], name)
        if tech == "dti" and spec.storage == "classic" and gen == "VB" and _p(rng, 0.5):
            h.image_type = "ORIGINAL\\PRIMARY\\M\\ND\\NORM"  # older syngo raw diffusion: a plain magnitude
        if tech in ("dti", "dwi") and gen == "VB" and _p(rng, 0.4):
            h.extra["no_private_b"] = True  # b only in the CSA header (not read), (0019,100C) absent
    elif tech == "dsc":
        h = Header(("EP",), _pick(rng, [("SK",), ("SK", "SP")]), ["PFP", "FS"] if _p(rng, 0.5) else ["FS"],
                   f"{star}epfid2d1_{m}")
    elif tech == "bold":
        mb = gen != "VB" and _p(rng, 0.35)
        h = Header(("EP",), ("SK", "SS") if mb else ("SK",), ["FS"] if _p(rng, 0.7) else ["PFP", "FS"],
                   f"{star}epfid2d1_{m}" if not mb else f"epfid2d1_{m}",
                   "ORIGINAL\\PRIMARY\\M\\MB\\ND" if mb else "ORIGINAL\\PRIMARY\\M\\ND")
    elif tech in ("asl", "asl_m0"):
        h = Header(("EP",), ("SK",), _pick(rng, [["FS"], ["PFP", "SAT1", "FS"], ["PFP", "SAT2", "FS"]]),
                   f"{star}epfid2d1_{_pick(rng, [64, 72])}",
                   _pick(rng, ["ORIGINAL\\PRIMARY\\ASL\\NONE\\ND", "ORIGINAL\\PRIMARY\\ASL\\NONE\\ND\\NORM",
                               "ORIGINAL\\PRIMARY\\M\\ND"]))
    elif tech in ("asl_3d", "asl_3d_m0"):
        h = Header(("EP",), _pick(rng, [("SK",), ("SK", "OSP"), ("SK", "SP")]), _pick(rng, [["FS"], ["SAT3", "FS"]]),
                   f"{star if _p(rng, 0.5) else ''}tgse3d1_{int(rng.integers(1000, 23000))}",
                   _pick(rng, ["ORIGINAL\\PRIMARY\\ASL\\NONE\\ND", "ORIGINAL\\PRIMARY\\ASL\\NONE\\ND\\NORM"]))
    elif tech in ("tof", "mip"):
        h = Header(("GR",), ("SP", "OSP", "TOF") if _p(rng, 0.4) else ("SP", "OSP"), ["PFP", "SAT2"] if _p(rng, 0.6)
                   else ["SAT2"], f"{star}fl3d1r_t{int(rng.integers(40, 90))}")
    elif tech == "ciss":
        h = Header(("GR",), ("SP",) if _p(rng, 0.5) else ("SS", "SP"), [], f"{star}ci3d1")
    elif tech in ("fmap_mag", "fmap_phase"):
        h = Header(("GR",), ("SP",), [], f"{star}fm2d2r",
                   "ORIGINAL\\PRIMARY\\P\\ND" if tech == "fmap_phase" else "ORIGINAL\\PRIMARY\\M\\ND")
    elif tech == "fmap_sepi":
        h = Header(("EP",), ("SK",) if _p(rng, 0.7) else ("SK", "SP"), ["PFP", "FS"] if _p(rng, 0.4) else ["FS"],
                   f"{star}epse2d1_{m}", "ORIGINAL\\PRIMARY\\M\\ND")
    elif tech == "other_svs":
        h = Header(("SE",), ("SK",), [], f"{star}svs_se")
    elif tech in _PC:
        h = _siemens_pc(tech, spec, rng, star)
    else:
        h = Header(("GR",), ("SP",), [], f"{star}fl3d1")
    return h


def _siemens_pc(tech: str, spec: SeriesSpec, rng, star: str) -> Header:
    """Phase contrast: the velocity image names its VENC (cm/s) and direction (``*fl2d1_v120in``, ``in`` =
    through-plane; ``*fl3d1_v15rl``) and is DERIVED ``P``; the magnitude keeps that name or is ``*fl2d1r3``.
    RETRO marks retrospective cardiac gating (cine), ND a non-gated acquisition."""
    dim = spec.acquisition.lower()
    venc = int(spec.extra.get("venc", 20))
    venc_text = f"{venc:03d}" if _p(rng, 0.15) else str(venc)  # some releases pad (v004in)
    velocity_name = f"{star}fl{dim}1_v{venc_text}{spec.extra.get('venc_dir', 'in')}"
    gate = "RETRO" if spec.n_temporal > 1 else "ND"
    tail = f"{gate}\\DIS2D" if dim == "2d" else f"{gate}\\NORM" if _p(rng, 0.5) else gate
    sv = ("SK", "SP", "OSP") if _p(rng, 0.6) else ("SK", "SP")
    if tech == "other_pc_phase":
        return Header(("GR",), sv, [], velocity_name, f"DERIVED\\PRIMARY\\P\\{tail}")
    name = velocity_name if _p(rng, 0.5) else f"{star}fl{dim}1r{int(rng.integers(2, 5))}"
    return Header(("GR",), sv, [], name, f"ORIGINAL\\PRIMARY\\{_pick(rng, ['M', 'M', 'MAG'])}\\{tail}")


# --- GE -----------------------------------------------------------------------------------------------------------


def _ge(tech: str, spec: SeriesSpec, p: Profile, rng) -> Header:
    gen = p.generation or "DV"
    old = gen == "LX"
    edr = ["EDR_GEMS"] if _p(rng, 0.5) else []
    acc = ["ACC_GEMS"] if gen in ("MR29", "MR30", "DV") and _p(rng, 0.5) else []
    fast = ["FAST_GEMS"] if _p(rng, 0.7) else []
    h = (_ge_anatomy(tech, spec, rng, old, edr, acc, fast)
         or _ge_epi_angio_other(tech, spec, rng, gen, acc))
    if "ti_zero" not in h.extra:
        h.extra["ti_zero"] = _p(rng, 0.4)  # GE writes InversionTime 0 on many series that have none
    h.extra.setdefault("ge_psd", "")
    # the private b-value (0043,1039) sits on every image of most GE series, b = 0 where nothing was diffusion
    # weighted; Genesis-era files skip it now and then
    h.extra["ge_b_everywhere"] = _p(rng, 0.8 if old else 0.97)
    return h


def _ge_anatomy(tech: str, spec: SeriesSpec, rng, old: bool, edr: list, acc: list, fast: list) -> Header | None:
    """Localizers and the structural and susceptibility series (None for any other technique)."""
    h: Header | None = None
    if tech == "scout":
        h = Header(("RM",), ("NONE",) if _p(rng, 0.7) else ("OSP",),
                   _pick(rng, [["PFF"], ["NPW", "SEQ_GEMS", "PFF"], ["FAST_GEMS", "PFF"], ["SEQ_GEMS"]]), "",
                   "ORIGINAL\\PRIMARY\\OTHER", {"ge_psd": _pick(rng, ["3-Plane", "3-Plane", "3-plane", "fgre"]),
                                                "ti_zero": _p(rng, 0.7)})
    elif tech in ("scout_cal", "scout_mpr"):
        h = Header(("GR",) if tech == "scout_cal" else ("RM",), ("SS", "SP") if tech == "scout_cal" else ("NONE",),
                   ["FAST_GEMS", "SEQ_GEMS"], "", None, {"ge_psd": "calibration" if tech == "scout_cal" else "3-Plane"})
    elif tech == "t1_se":
        fse = int(spec.echo_train_length or 1) > 1
        h = Header(("SE",), ("SK",) if fse else ("NONE",) if _p(rng, 0.5) else ("SK",),
                   fast * fse + edr + ["FILTERED_GEMS"] * _p(rng, 0.5), "fse" if fse and old else "",
                   None, {"ge_psd": "fse-xl" if fse else "memp"})
    elif tech == "t1_flair":
        h = Header(("SE", "IR"), ("SK", "SP") if _p(rng, 0.5) else ("SK",), ["IR_GEMS", *fast, *edr], "",
                   None, {"ge_psd": _pick(rng, ["fse-ir", "t1flair"])})
    elif tech in ("t1_3d_ir", "t1_mpr"):
        mprage = spec.extra.get("ge_mprage", False)
        sv = _pick(rng, [("SS", "SP", "SK"), ("SK", "SS", "SP"), ("SS", "SP")])
        opts = ["FAST_GEMS", "EDR_GEMS"] + acc + (["IR_GEMS"] if _p(rng, 0.3) else []) + (["SEQ_GEMS"]
                                                                                         if _p(rng, 0.3) else [])
        h = Header(("GR",) if not mprage or _p(rng, 0.5) else ("GR", "IR"), sv, opts, "", None,
                   {"ge_psd": "mprage" if mprage and _p(rng, 0.5) else "efgre3d"})
    elif tech == "t1_3d_gre":
        h = Header(("GR",), ("SS", "SP") if _p(rng, 0.6) else ("SP",), ["FAST_GEMS", *edr, *acc], "", None,
                   {"ge_psd": _pick(rng, ["efgre3d", "fspgr3d", "efgre3d"])})
    elif tech in ("t2_tse", "pd_tse", "t1_se") and old and _p(rng, 0.4):
        # Genesis-era files: RM / NONE on spin-echo series too, the name in SequenceName
        h = Header(("RM",), ("NONE",), _pick(rng, [["FC", "EDR_GEMS"], ["GRAPH_GEMS", "EDR_GEMS"], ["SP"]]),
                   "fse" if int(spec.echo_train_length or 1) > 1 else "se", _pick(rng, ["ORIGINAL\\PRIMARY", None]),
                   {"ge_psd": ""})
    elif tech in ("t2_tse", "pd_tse"):
        psd = _pick(rng, ["fse-xl", "fse-xl", "frfse", "PROPELLER"]) if not old else "fse"
        h = Header(("SE",), ("SK",) if _p(rng, 0.7) else ("SK", "SP") if not old else ("SK",),
                   [*fast, *edr, "FILTERED_GEMS"] if _p(rng, 0.6) else ["SP"] if old else ["FC", *fast, *edr],
                   "fse" if old and _p(rng, 0.6) else "", None, {"ge_psd": psd})
    elif tech == "t2_3d":
        h = Header(("SE",), ("SK", "SS") if _p(rng, 0.5) else ("SK",), ["FAST_GEMS", "SEQ_GEMS", *acc, *edr], "",
                   None, {"ge_psd": _pick(rng, ["Cube", "cube_t2"])})
    elif tech == "haste":
        h = Header(("SE",), ("SK", "SS"), ["FAST_GEMS", "SSFSE_GEMS"] if _p(rng, 0.5) else ["FAST_GEMS"], "", None,
                   {"ge_psd": "ssfse"})
    elif tech == "flair_2d":
        if old and _p(rng, 0.8):  # Genesis-era: RM, no TI tag, the name in SequenceName
            h = Header(("RM",), ("NONE",), _pick(rng, [["GRAPH_GEMS", "FC", "EDR_GEMS"], ["FC", "EDR_GEMS"]]),
                       "flair", "ORIGINAL\\PRIMARY", {"ge_psd": "", "no_ti": True})
        else:
            h = Header(("SE", "IR"), ("SK", "SP", "MP") if _p(rng, 0.4) else ("SK",),
                       ["IR_GEMS", *fast, *edr, "FILTERED_GEMS"] if _p(rng, 0.6) else ["IR_GEMS", "FC", *fast],
                       "", None, {"ge_psd": _pick(rng, ["fse-ir", "t2flair", "fse-ir"])})
    elif tech == "flair_3d":
        h = Header(("SE", "IR"), ("SK", "SS") if _p(rng, 0.5) else ("SK",), ["IR_GEMS", "FAST_GEMS", "SEQ_GEMS", *acc],
                   "", None, {"ge_psd": _pick(rng, ["Cube", "cube_flair"])})
    elif tech in ("t2star", "t2star_me", "t2star_me2d"):
        psd = {"t2star": "fgre", "t2star_me2d": "mfgre"}.get(tech) or _pick(rng, ["mfgre", "swan"])
        h = Header(("GR",), ("SS", "SP") if _p(rng, 0.5) else ("SP",), [*fast, *edr] if _p(rng, 0.6) else ["FC"],
                   "", None, {"ge_psd": psd})
    elif tech.startswith("swi"):
        h = Header(("GR",), ("SS", "SP") if _p(rng, 0.6) else ("SP",), ["FAST_GEMS", "SEQ_GEMS", *acc], "", None,
                   {"ge_psd": "swan"})
    return h


def _ge_epi_angio_other(tech: str, spec: SeriesSpec, rng, gen: str, acc: list) -> Header:
    """Diffusion, perfusion, BOLD, angiography, field maps and the rest."""
    h: Header
    if tech in _DIFFUSION:
        opts = (["SAT_GEMS"] if _p(rng, 0.3) else []) + ["EPI_GEMS"] + (["FILTERED_GEMS"] if _p(rng, 0.4) else [])
        opts += acc + ["PFF"] + (["FS"] if _p(rng, 0.5) else [])
        h = Header(("EP", "SE"), ("NONE",) if _p(rng, 0.8) else ("SS",), opts, "", None,
                   {"ge_psd": _pick(rng, ["epi2", "epi2", "epi", "epi2_ARC"]) if tech not in ("adc", "fa", "eadc")
                    else _pick(rng, ["", "epi2"]), "ti_zero": _p(rng, 0.5)})
        if tech == "adc" and _p(rng, 0.5):
            h.image_type = "DERIVED\\SECONDARY\\PROCESSED"
    elif tech in ("dsc", "bold"):
        opts = (["EDR_GEMS"] if _p(rng, 0.4) else []) + (["MP_GEMS"] if _p(rng, 0.5) else []) + ["EPI_GEMS"]
        opts += acc + (["HYPERBAND_GEMS"] if tech == "bold" and gen in ("MR29", "MR30") and _p(rng, 0.3) else [])
        opts += ["PFF"] if _p(rng, 0.5) else []
        h = Header(("EP", "GR"), ("SS",) if _p(rng, 0.8) else ("NONE",), opts, "",
                   _pick(rng, ["ORIGINAL\\PRIMARY\\OTHER", "ORIGINAL\\PRIMARY\\EPI\\NONE"]) if tech == "bold"
                   else "ORIGINAL\\PRIMARY\\OTHER",
                   {"ge_psd": _pick(rng, ["epi", "epi", "epiRT", "epi2"]) if tech == "bold" else _pick(rng, ["epi",
                                                                                                             "epi2"])})
    elif tech in _ASL:  # eASL / 3D ASL: stack-of-spirals FSE readout; PLD written as the inversion time
        h = Header(("SE",), ("SK",) if _p(rng, 0.6) else ("NONE",), ["EDR_GEMS", "FILTERED_GEMS"] if _p(rng, 0.5)
                   else ["FILTERED_GEMS"], "", "ORIGINAL\\PRIMARY\\ASL", {"ge_psd": _pick(rng, ["3dasl", "easl"])})
    elif tech in ("tof", "mip"):
        h = Header(("GR",), ("SS", "SP") if _p(rng, 0.5) else ("SP",), ["FAST_GEMS", "SEQ_GEMS", "TOF_GEMS", *acc]
                   if _p(rng, 0.6) else ["FAST_GEMS", "SEQ_GEMS"], "", None, {"ge_psd": _pick(rng, ["tof3d", "3dtof"])})
    elif tech == "ciss":
        h = Header(("GR",), ("SS",), ["FAST_GEMS", "SEQ_GEMS"], "", None,
                   {"ge_psd": _pick(rng, ["fiesta3d", "fiesta-c"])})
    elif tech == "fmap_b0":
        h = _ge_b0map(spec, rng, acc)
    elif tech in ("fmap_mag", "fmap_phase"):  # a dual-echo GRE the site maps itself
        h = Header(("GR",), ("SP",) if _p(rng, 0.5) else ("SS", "SP"), ["FAST_GEMS"] if _p(rng, 0.5) else [], "",
                   "ORIGINAL\\PRIMARY\\OTHER", {"ge_psd": _pick(rng, ["fgre", "fgre", "mfgre"])})
    elif tech == "fmap_sepi":
        h = Header(("EP", "SE"), ("NONE",), ["EPI_GEMS", "PFF"] + acc, "", "ORIGINAL\\PRIMARY\\OTHER",
                   {"ge_psd": _pick(rng, ["epi2_pepolar", "epi_pepolar"])})
    elif tech == "other_svs":
        h = Header(("SE",), ("NONE",), [], "", None, {"ge_psd": "probe-p"})
    elif tech in _PC:  # cine phase contrast is pulse (PPG) or ECG (CG) gated; the psd names are plausible guesses
        gating = [_pick(rng, ["PPG", "PPG", "CG"])] if spec.n_temporal > 1 else []
        psd = _pick(rng, ["fastpc", "2dpc", "pc"]) if spec.acquisition == "2D" else _pick(rng, ["3dpc", "pc3d"])
        h = Header(("GR",), ("SS", "SP") if _p(rng, 0.5) else ("SP",), ["FAST_GEMS", *gating, *acc], "", None,
                   {"ge_psd": psd})
    else:
        h = Header(("GR",), ("SS", "SP"), ["FAST_GEMS"], "", None, {"ge_psd": "fgre"})
    return h


def _ge_b0map(spec: SeriesSpec, rng, acc: list) -> Header:
    """GE's direct field map: one series, the map in Hz first, then the magnitude of the first echo.

    dcm2niix issue 501 (GE's samples) and nii_dicom.cpp (isGEfieldMap): psd (0019,109C) B0map or B0rf, a link to
    it, with internal name (0019,109E) B0map in 2-D; 3db0map with internal EFGRE3D in 3-D (MR29 on). The two
    volumes share ImageType and private image type (GE's own note: nothing tells them apart), so readers split
    them by image number against (0021,104F). ScanningSequence is not documented; the plain GRE words stay.
    """
    three_d = spec.acquisition == "3D"
    return Header(("GR",), ("SP",) if _p(rng, 0.5) else ("SS", "SP"),
                  (["FAST_GEMS"] if _p(rng, 0.5) else []) + (acc if three_d else []), "", "ORIGINAL\\PRIMARY\\OTHER",
                  {"ge_psd": "3db0map" if three_d else _pick(rng, ["B0map", "B0map", "B0rf"]),
                   "ge_internal_psd": "EFGRE3D" if three_d else "B0map", "b0_with_magnitude": True})


# --- Philips ------------------------------------------------------------------------------------------------------

_PHILIPS_TECHNIQUE = {
    "scout": ["T1TFE", "FFE", "B-TFE"], "scout_cal": ["FFE"], "scout_mpr": ["FFE"], "t1_se": ["SE", "T1TSE", "TSE"],
    "t1_flair": ["IR", "TIR"], "t1_3d_ir": ["T1TFE", "TFE"], "t1_mpr": ["T1TFE"], "t1_3d_gre": ["T1FFE", "FFE"],
    "t2_tse": ["TSE", "T2TSE"], "pd_tse": ["TSE", "PDTSE"], "t2_3d": ["TSE", "T2TSE"], "haste": ["TSE", "SShTSE"],
    "flair_2d": ["IR", "TIR"], "flair_3d": ["IR", "TIR"], "t2star": ["FFE", "T2FFE"], "t2star_me": ["FFE", "T1FFE"],
    "t2star_me2d": ["FFE", "FFE", "T1FFE"], "other_pc_mag": ["FFE", "T1FFE"], "other_pc_phase": ["FFE", "T1FFE"],
    "swi": ["FFE", "T1FFE"], "swi_mag": ["FFE", "T1FFE"], "swi_phase": ["FFE", "T1FFE"], "swi_minip": ["FFE"],
    "dwi": ["DwiSE"], "adc": ["DwiSE"], "dti": ["DwiSE"], "fa": ["DwiSE"], "eadc": ["DwiSE"], "dsc": ["FEEPI"],
    "asl": ["FEEPI"], "asl_m0": ["FEEPI"], "asl_3d": ["TSE", "GRASE"], "asl_3d_m0": ["TSE", "GRASE"],
    "tof": ["T1FFE", "FFE"], "mip": ["T1FFE", "FFE"], "ciss": ["B-FFE", "BFFE"], "bold": ["FEEPI"],
    "fmap_mag": ["T1FFE", "FFE"], "fmap_phase": ["T1FFE", "FFE"], "fmap_b0": ["T1FFE", "FFE"],
    "fmap_sepi": ["SEEPI"], "other_mt": ["FFE"], "other_t1map": ["T1FFE"], "other_svs": ["SE"],
}


def _philips(tech: str, spec: SeriesSpec, p: Profile, rng) -> Header:
    gen = p.generation or "R5"
    technique = _pick(rng, _PHILIPS_TECHNIQUE.get(tech, ["FFE"]))
    if tech == "t2star" and spec.extra.get("fe_epi"):
        technique = "FEEPI"
    base = technique.upper()
    other = ["OTHER"] if _p(rng, 0.3) else []
    if tech == "fmap_b0":
        h = _philips_b0map(gen, rng, other)
    elif tech == "scout":
        h = Header(("GR",), ("MP",) if technique.endswith("TFE") else ("SS",) if technique == "B-TFE" else ("SP",),
                   other, "", "DERIVED\\PRIMARY\\M_FFE\\M\\FFE" if _p(rng, 0.4) else None)
    elif base in ("SE", "TSE", "T1TSE", "T2TSE", "PDTSE", "SSHTSE"):
        h = Header(("SE",), ("SK",) if _p(rng, 0.7) else ("OTHER",) if gen == "R2" else ("SK", "SP"), other, "")
    elif base in ("IR", "TIR"):
        h = Header(("IR",) if _p(rng, 0.7) else ("SE", "IR"), ("OSP",) if _p(rng, 0.5) else ("SK",), other, "")
    elif base in ("TFE", "T1TFE"):
        h = Header(("GR",), ("MP",) if _p(rng, 0.5) else ("SK", "MP"), other, "")
    elif base == "DWISE":
        h = Header(("SE",) if _p(rng, 0.7) else ("EP", "SE"), ("SK",), ["PFP"] if _p(rng, 0.5) else other, "")
    elif base in ("FEEPI",):
        h = Header(("GR",) if _p(rng, 0.8) else ("EP", "GR"), ("SK",) if _p(rng, 0.6) else ("OSP",), ["FS"], "")
        if tech == "t2star":
            h.image_type = "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE"
    elif base == "SEEPI":
        h = Header(("SE",) if _p(rng, 0.7) else ("EP", "SE"), ("SK",), ["FS"], "")
    elif base in ("B-FFE", "BFFE"):
        h = Header(("GR",), ("SS",), other, "")
    elif base == "GRASE":
        h = Header(("SE",), ("SK",), other, "")
    else:  # FFE family
        h = Header(("GR",), ("OSP",) if _p(rng, 0.4) else ("SP",) if _p(rng, 0.5) else ("NONE",), other, "")
    if tech in ("tof", "mip"):
        h.so = h.so or ["OTHER"]
    if tech in _PC:  # a QFlow/PCA scan: M_FFE or M_PCA magnitude, "PHASE CONTRAST M" or "VELOCITY MAP" velocity
        kinds = ["PHASE CONTRAST M\\P\\PCA", "VELOCITY MAP\\P\\PCA"] if tech == "other_pc_phase" else [
            "M_FFE\\M\\FFE", "M_PCA\\M\\PCA"]
        h.image_type = "ORIGINAL\\PRIMARY\\" + _pick(rng, kinds)
    h.extra["philips_technique"] = technique
    # (2001,1003) b-value: written as 0 on every classic image by R3 and later, by R2 only on diffusion
    h.extra["philips_b_everywhere"] = gen != "R2" and _p(rng, 0.9)
    if spec.storage == "enhanced":
        h.extra["enhanced_habit"] = "philips"
        h.extra["ti_zero"] = True  # enhanced objects carry InversionTimes 0 on non-IR frames
    return h


def _philips_b0map(gen: str, rng, other: list) -> Header:
    """Philips' B0 map: the field map in Hz, usually with its magnitude in the same series.

    ScanningSequence RM with SequenceVariant SS is what dcm2niix's BIDS guess asks of a Philips direct field map
    (nii_dicom_batch.cpp setBidsPhilips); ImageType carries B0 and MAP (nii_dicom.cpp; FILENAMING.md
    ``_fieldmaphz``): ``B0 MAP\\B0\\UNSPECIFIED`` from an R5 Achieva, ``B0\\B0\\UNSPECIFIED`` from R11 (dcm2niix issue
    455); ScanOptions FC there. Enhanced files hold magnitude and Hz frames together (dcm2niix issue 881); the map
    is stored unsigned with a negative intercept (issue 455: RescaleIntercept -203), RescaleType Hz (nii_dicom.cpp).
    """
    word = "B0" if gen == "R11" and _p(rng, 0.8) else "B0 MAP"
    return Header(("RM",), ("SS",), ["FC"] if _p(rng, 0.6) else other, "",
                  f"ORIGINAL\\PRIMARY\\{word}\\B0\\{_pick(rng, ['UNSPECIFIED', 'UNSPECIFIED', 'FFE'])}",
                  {"b0_with_magnitude": _p(rng, 0.85), "hz_unsigned": True, "hz_rescale_type": "Hz",
                   # the magnitude frames are an FFE magnitude, typed as the field maps' magnitude is (issue 170)
                   "b0_magnitude_image_type": ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")})


# --- Canon / Toshiba ----------------------------------------------------------------------------------------------


def _canon(tech: str, spec: SeriesSpec, p: Profile, rng) -> Header:
    toshiba = p.generation == "TOSHIBA"
    gdc = "\\GDC" if not toshiba and _p(rng, 0.6) else ""
    none = ("NONE",)
    table = {
        "scout": (("GR",), none, "FE2D"), "scout_cal": (("GR",), none, "FE3D"), "scout_mpr": (("GR",), none, "FE3D"),
        "t1_se": (("SE",), none, "SE2D"), "t1_flair": (("IR",), none, "FSE2D"),
        "t1_3d_ir": (("GR", "IR"), ("MP",), "FE3D"),
        "t1_mpr": (("GR", "IR"), ("MP",), "FE3D"), "t1_3d_gre": (("GR",), ("SP",), "FE3D"), "t2_tse": (("SE",), none,
                                                                                                      "FSE2D"),
        "pd_tse": (("SE",), none, "FSE2D"), "t2_3d": (("SE",), none, "FSE3D"), "haste": (("SE",), ("SS",), "FASE2D"),
        "flair_2d": (("IR",), none, "FSE2D"), "flair_3d": (("IR",), none, "FSE3D"), "t2star": (("GR",), none, "FE2D"),
        "t2star_me": (("GR",), none, "FE3D"), "dwi": (("SE", "EP"), none, "SEEPI2D"), "dti": (("SE", "EP"), none,
                                                                                             "SEEPI2D"),
        "adc": (("SE", "EP"), none, "SEEPI2D"), "fa": (("SE", "EP"), none, "SEEPI2D"), "eadc": (("SE", "EP"), none,
                                                                                              "SEEPI2D"),
        "dsc": (("GR", "EP"), none, "FEEPI2D"), "bold": (("GR", "EP"), none, "FEEPI2D"), "asl": (("GR", "EP"), none,
                                                                                                "FEEPI2D"),
        "asl_m0": (("GR", "EP"), none, "FEEPI2D"), "asl_3d": (("SE",), none, "FASE3D"), "asl_3d_m0": (("SE",), none,
                                                                                                     "FASE3D"),
        "tof": (("GR",), none, "FE3D"), "mip": (("GR",), none, "FE3D"), "ciss": (("GR",), ("SS",), "TrueSSFP3D"),
        "fmap_mag": (("GR",), none, "FE2D"), "fmap_phase": (("GR",), none, "FE2D"), "fmap_b0": (("GR",), none, "FE2D"),
        "fmap_sepi": (("SE", "EP"), none, "SEEPI2D"), "other_svs": (("SE",), none, "SE2D"),
    }
    ss, sv, name = table.get(tech, (("GR",), none, "FE3D"))
    if tech.startswith("swi"):
        ss, sv, name = ("GR",), none, "FE3D"
    if tech == "t2star_me2d":
        name = "FE2D"
    if tech in _PC:  # Toshiba called phase contrast "phase shift" (PS); the sequence name is a guess in that style
        name = f"PS{spec.acquisition}"
    if sv == none and _p(rng, 0.3):
        sv = ("SK",) if "SE" in ss or "IR" in ss else ("SP",)
    if name.startswith("SEEPI") and not toshiba and _p(rng, 0.5):
        name += f"+{_pick(rng, ['0.7', '0.5', '1.0'])}"
    opts = (["PFP"] if _p(rng, 0.5) else []) + (["NONE"] if _p(rng, 0.2) else [])
    if "EP" in ss and not toshiba and _p(rng, 0.5):
        opts.append("S2_0")
    base_it = None
    if not tech.startswith(("adc", "fa", "eadc", "mip", "swi", "t1_mpr", "scout_mpr", "other_t1map", "fmap_phase",
                            "fmap_b0", "other_pc_phase")):
        base_it = "ORIGINAL\\PRIMARY" + (gdc or ("\\OTHER" if _p(rng, 0.5) else ""))
    h = Header(ss, sv, opts, name, base_it)
    # Toshiba-era software writes DiffusionBValue only on b > 0 images (dcm2niix Canon notes)
    h.extra["public_b_positive_only"] = toshiba
    return h


# --- UIH ----------------------------------------------------------------------------------------------------------


def _uih(tech: str, spec: SeriesSpec, p: Profile, rng) -> Header:
    table = {
        "scout": (("GR",), ("SP",), "gre_fsp"), "scout_cal": (("GR",), ("SP",), "gre_fsp_3d"),
        "t1_se": (("SE",), ("SK", "SP"), "fse"), "t1_flair": (("SE", "IR"), ("SK", "SP", "MP"), "fse_ir"),
        "t1_3d_ir": (("GR", "IR"), ("SP", "MP"), "gre_fsp_3d_ir"), "t1_mpr": (("GR", "IR"), ("SP", "MP"),
                                                                             "gre_fsp_3d_ir"),
        "t1_3d_gre": (("GR",), ("SP",), "gre_fsp_3d"), "t2_tse": (("SE",), ("SK", "SP"), "fse"),
        "pd_tse": (("SE",), ("SK", "SP"), "fse"), "t2_3d": (("SE",), ("SK", "SP"), "fse_mx_3d"),
        "haste": (("SE",), ("SK", "SS"), "fse_ssh"), "flair_2d": (("SE", "IR"), ("SK", "SP", "MP"), "fse_ir"),
        "flair_3d": (("SE", "IR"), ("SK", "SP", "MP"), "fse_mx_3d_ir"), "t2star": (("GR",), ("SP",), "gre"),
        "t2star_me": (("GR",), ("SP",), "gre_me_3d"), "dwi": (("EP",), ("SK", "SP"), "epi_dwi"),
        "dti": (("EP",), ("SK", "SP"), "epi_dti"), "adc": (("EP",), ("SK", "SP"), "epi_dwi"),
        "fa": (("EP",), ("SK", "SP"), "epi_dti"), "eadc": (("EP",), ("SK", "SP"), "epi_dwi"),
        "dsc": (("EP",), ("SK",), "epi_perf"), "bold": (("EP",), ("SK",), "epi_bold"),
        "asl": (("EP",), ("SK",), "epi_asl"), "asl_m0": (("EP",), ("SK",), "epi_asl"),
        "asl_3d": (("SE",), ("SK",), "asl_3d"), "asl_3d_m0": (("SE",), ("SK",), "asl_3d"),
        "tof": (("GR",), ("SP", "OSP"), "gre_tof_3d"), "mip": (("GR",), ("SP", "OSP"), "gre_tof_3d"),
        "ciss": (("GR",), ("SS",), "gre_fiesta_3d"), "fmap_mag": (("GR",), ("SP",), "gre_fieldmap"),
        "fmap_phase": (("GR",), ("SP",), "gre_fieldmap"), "fmap_b0": (("GR",), ("SP",), "gre_fieldmap"),
        "fmap_sepi": (("EP",), ("SK",), "epi_se"), "other_svs": (("SE",), ("SK",), "svs_press"),
    }
    ss, sv, name = table.get(tech, (("GR",), ("SP",), "gre_3d"))
    if tech.startswith("swi"):
        ss, sv, name = ("GR",), ("SP",), "gre_swi_3d"
    if tech == "t2star_me2d":
        name = "gre_me"
    if tech in _PC:
        name = "gre_pc" if spec.acquisition == "2D" else "gre_pc_3d"
    opts = (["FS"] if "EP" in ss else []) + (["PFP"] if _p(rng, 0.3) else [])
    return Header(ss, sv, opts, name, None)


# --- Hitachi ------------------------------------------------------------------------------------------------------


def _hitachi(tech: str, spec: SeriesSpec, p: Profile, rng) -> Header:
    de = ("DE",) if tech in ("t2_tse", "pd_tse") and int(spec.extra.get("n_echoes", 1)) > 1 else ()
    table = {
        "scout": (("GR",), ("SP",), "GE"), "t1_se": (("SE",), ("SK", "OSP"), "SE"),
        "t1_flair": (("IR",), ("SK", "OSP"), "IR"), "t1_3d_ir": (("GR", "IR"), ("SP", "MP"), "RSSG"),
        "t1_mpr": (("GR", "IR"), ("SP", "MP"), "RSSG"), "t1_3d_gre": (("GR",), ("SP",), "RSSG"),
        "t2_tse": (("SE",), ("SK", *de, "OSP"), "FSE"), "pd_tse": (("SE",), ("SK", *de, "OSP"), "FSE"),
        "t2_3d": (("SE",), ("SK",), "FSE3D"), "haste": (("SE",), ("SK", "SS"), "SSFSE"),
        "flair_2d": (("IR",), ("SK", "OSP"), "FIR"), "flair_3d": (("IR",), ("SK",), "FIR3D"),
        "t2star": (("GR",), ("SP",), "GE"), "dwi": (("SE", "EP"), ("SK",), "SE-EPI"), "adc": (("SE", "EP"), ("SK",),
                                                                                           "SE-EPI"),
        "eadc": (("SE", "EP"), ("SK",), "SE-EPI"), "tof": (("GR",), ("SP",), "TOF3D"),
        "mip": (("GR",), ("SP",), "TOF3D"),
        "ciss": (("GR",), ("SS",), "BASG"),
    }
    ss, sv, name = table.get(tech, (("GR",), ("SP",), "GE"))
    if tech in _PC:
        name = f"PC{spec.acquisition}"
    opts = ["FC", "SP"] if _p(rng, 0.4) else ["SP"] if _p(rng, 0.5) else []
    h = Header(ss, sv, opts, name, "ORIGINAL\\PRIMARY\\OTHER" if not tech.startswith(("adc", "mip", "eadc", "t1_mpr",
                                                                                    "other_pc_phase")) else None)
    h.extra["ti_zero"] = True  # Hitachi writes InversionTime 0 on every non-IR series
    return h


_VENDOR = {"SIEMENS": _siemens, "GE": _ge, "PHILIPS": _philips, "CANON": _canon, "UIH": _uih, "HITACHI": _hitachi}


def vendor_header(tech: str, spec: SeriesSpec, profile: Profile, rng: np.random.Generator) -> Header:
    return _VENDOR[profile.vendor](tech, spec, profile, rng)
