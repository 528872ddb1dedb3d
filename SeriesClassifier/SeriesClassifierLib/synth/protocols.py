"""Study protocols → ordered ``SeriesSpec`` lists with realistic randomised parameters.

A study type (routine, stroke, tumour, research, IAC, MRA) is a list of
techniques in scanner order, some optional. Each technique gets acquisition
parameters from ranges around the vendor's defaults at the profile's field
strength, an orientation drawn from what sites really do for it, a name from
the vendor grammar (vendors.py) and then the profile's mess.

Orientation decisions (documented here because labels depend on them):
- 3-plane localizers are MIXED; their single-plane MPRs take that plane.
- Straight planes get small tilts (< 8°); OBLIQUE series (AC-PC / hippocampal
  angulation) are tilted 25–40° from their nominal plane; about 5–10 % of 2-D
  series per profile (``Profile.oblique_rate``), some 3-D series too.
- MRA_MIP: radial MIP sets (one projection per angle, rotating about the
  head's S-I or L-R axis over ≥ 90°) lie in many planes → MIXED; a single
  projection image (``_MIP_TRA``) takes its plane.
- Derived series share their source's geometry (ADC/FA ← DWI, minIP/phase ← SWI).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .profiles import Profile
from .spec import SeriesSpec
from .vendors import TECHNIQUES, header_style, name_series

STUDY_TYPES = ("routine", "stroke", "tumour", "research", "iac", "mra")
_SPEC_FIELDS = {f.name for f in dataclasses.fields(SeriesSpec)}

# head coverage (mm) along each plane's normal
_COVERAGE = {"AXIAL": (120.0, 150.0), "SAGITTAL": (130.0, 150.0), "CORONAL": (140.0, 170.0)}
# field of view (mm) in-plane
_FOV = (220.0, 250.0)

# orientation habits per technique: plane -> weight
_PLANES = {
    "t1_se": {"AXIAL": 0.55, "SAGITTAL": 0.3, "CORONAL": 0.15},
    "t1_flair": {"AXIAL": 0.5, "SAGITTAL": 0.35, "CORONAL": 0.15},
    "t1_3d_ir": {"SAGITTAL": 0.65, "AXIAL": 0.3, "CORONAL": 0.05},
    "t1_3d_gre": {"AXIAL": 0.5, "SAGITTAL": 0.4, "CORONAL": 0.1},
    "t2_tse": {"AXIAL": 0.75, "CORONAL": 0.2, "SAGITTAL": 0.05},
    "t2_3d": {"SAGITTAL": 0.8, "AXIAL": 0.15, "CORONAL": 0.05},
    "haste": {"AXIAL": 0.6, "CORONAL": 0.2, "SAGITTAL": 0.2},
    "flair_2d": {"AXIAL": 0.8, "CORONAL": 0.15, "SAGITTAL": 0.05},
    "flair_3d": {"SAGITTAL": 0.8, "AXIAL": 0.15, "CORONAL": 0.05},
    "pd_tse": {"AXIAL": 0.8, "CORONAL": 0.2},
    "ciss": {"AXIAL": 0.7, "CORONAL": 0.2, "SAGITTAL": 0.1},
    "other_mt": {"AXIAL": 0.7, "SAGITTAL": 0.3},
    "other_t1map": {"AXIAL": 0.5, "SAGITTAL": 0.5},
    "other_svs": {"AXIAL": 0.4, "SAGITTAL": 0.3, "CORONAL": 0.3},
    "t2star_me": {"AXIAL": 0.8, "SAGITTAL": 0.2},
    "t2star_me2d": {"AXIAL": 0.85, "CORONAL": 0.15},
}
_ALWAYS_AXIAL = ("t2star", "swi", "dwi", "dti", "dsc", "asl", "asl_3d", "asl_m0", "asl_3d_m0", "tof", "bold",
                 "fmap_mag", "fmap_b0", "fmap_sepi", "scout_cal")


def _u(rng: np.random.Generator, lo: float, hi: float, nd: int = 2) -> float:
    return round(float(rng.uniform(lo, hi)), nd)


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


@dataclasses.dataclass
class _Ctx:
    profile: Profile
    rng: np.random.Generator
    storage: str  # study-level export habit: classic | enhanced
    has_contrast: bool = False


# --- parameters ---------------------------------------------------------------------------------------------------


def _refocus_flip(ctx: _Ctx, choices: tuple[float, ...]) -> float:
    """FlipAngle of a spin-echo series as the vendor writes it: Siemens the refocusing angle, most others 90."""
    rng, v = ctx.rng, ctx.profile.vendor
    if v == "SIEMENS":
        return float(rng.choice(choices))
    if v == "GE" and rng.random() < 0.2:
        return float(rng.choice([111, 125, 142]))
    if v == "UIH" and rng.random() < 0.3:
        return float(rng.choice(choices))
    return 90.0


def _timing(tech: str, ctx: _Ctx) -> dict:
    """TR/TE/TI/flip/ETL around the vendor's defaults at the profile's field strength.

    Physics sets the field dependence (tissue T1 grows with B0: longer TR/TI for T1 contrast and FLAIR at
    3 T, shorter at low field; T2* shortens: shorter TE for T2*, SWI, BOLD and DSC at 3 T); habits set the
    vendor's (Siemens writes the refocusing flip of spin-echo trains, GE/Philips/Canon/Hitachi 90°; GE and
    Philips 3-D T1 are TFE/BRAVO with a short TR, Siemens MPRAGE the inversion TR; Siemens ASL has no TI).
    """
    rng, prof = ctx.rng, ctx.profile
    fs, v = prof.field_strength, prof.vendor
    b3, low = fs >= 2.5, fs < 1.0
    u = lambda lo, hi, nd=2: _u(rng, lo, hi, nd)  # noqa: E731
    if tech in ("scout", "scout_mpr"):
        if v == "GE":
            return dict(repetition_time=u(4.5, 40.0) if rng.random() < 0.7 else u(60, 80), echo_time=u(1.2, 1.8),
                        flip_angle=30.0)
        if v == "PHILIPS":
            if rng.random() < 0.4:  # balanced TFE survey
                return dict(repetition_time=u(2.9, 3.3), echo_time=u(1.4, 1.7), flip_angle=float(rng.choice([45, 50,
                                                                                                           60])),
                            echo_train_length=int(rng.integers(60, 90)))
            return dict(repetition_time=u(6.5, 15.0), echo_time=u(2.3, 5.4), flip_angle=float(rng.choice([15, 20])),
                        echo_train_length=int(rng.integers(30, 60)))
        if v == "HITACHI":
            return dict(repetition_time=u(30, 60), echo_time=u(6, 10), flip_angle=30.0)
        return dict(repetition_time=u(7.5, 9.0) if v == "SIEMENS" else u(5, 20), echo_time=u(3.0, 4.0),
                    flip_angle=20.0)
    if tech == "scout_cal":
        return dict(repetition_time=u(3.0, 4.5), echo_time=u(1.0, 1.6), flip_angle=u(5, 10, 0))
    if tech == "t1_se":
        etl = None if rng.random() < 0.5 else int(rng.integers(2, 7))
        tr = u(350, 500) if low else u(450, 650) if not b3 else u(500, 800)
        return dict(repetition_time=tr, echo_time=u(8, 15) if not low else u(15, 25), flip_angle=90.0,
                    echo_train_length=etl or 1)
    if tech == "t1_flair":
        ti = u(750, 1000) if b3 else u(700, 860) if not low else u(400, 550)
        return dict(repetition_time=u(1800, 2600), echo_time=u(8, 20), inversion_time=ti,
                    flip_angle=_refocus_flip(ctx, (90, 120, 150)), echo_train_length=int(rng.integers(6, 11)))
    if tech in ("t1_3d_ir", "t1_mpr"):
        ge_mprage = v == "GE" and prof.generation in ("MR29", "MR30") and rng.random() < 0.35
        if ge_mprage:  # MR29/MR30 3D MPRAGE: TR is the inversion repetition
            return dict(repetition_time=u(2100, 2500), echo_time=u(2.8, 3.6), inversion_time=u(850, 1000),
                        flip_angle=8.0, echo_train_length=1, ge_mprage=True)
        if v in ("GE", "PHILIPS", "UIH", "HITACHI"):
            ti = u(400, 1000) if v != "HITACHI" else u(500, 750)
            if v == "GE" and b3:
                ti = float(rng.choice([400, 450, 500, 600, 900]))
            out = dict(repetition_time=u(6.0, 9.5) if v != "HITACHI" else u(9, 14), echo_time=u(2.5, 4.0),
                       inversion_time=ti, flip_angle=u(8, 13, 0),
                       echo_train_length=1 if v == "GE" else int(rng.integers(150, 260)))
            if v == "PHILIPS" and rng.random() < 0.5:
                out["inversion_time"] = None  # Philips TFE often keeps the prepulse delay private
            return out
        return dict(repetition_time=u(1900, 2530) if b3 else u(2000, 2700), echo_time=u(2.2, 4.2),
                    inversion_time=u(850, 1200) if b3 else u(1000, 1150), flip_angle=u(7, 9, 0),
                    echo_train_length=1)
    if tech == "t1_3d_gre":
        return dict(repetition_time=u(4, 12), echo_time=u(1.8, 5.0), flip_angle=u(10, 20, 0), echo_train_length=1)
    if tech == "t2_tse":
        te = u(80, 115) if not low else u(100, 130)
        return dict(repetition_time=u(3000, 6500), echo_time=te, flip_angle=_refocus_flip(ctx, (120, 150, 180)),
                    echo_train_length=int(rng.integers(8, 25)))
    if tech == "t2_3d":
        return dict(repetition_time=u(2500, 3200), echo_time=u(300, 450) if v == "SIEMENS" else u(90, 140),
                    flip_angle=120.0 if v == "SIEMENS" else 90.0, echo_train_length=int(rng.integers(80, 285)))
    if tech == "haste":
        return dict(repetition_time=u(1000, 2000), echo_time=u(80, 100), flip_angle=_refocus_flip(ctx, (150, 160, 180)),
                    echo_train_length=int(rng.integers(128, 256)))
    if tech == "flair_2d":
        ti = u(2400, 2800) if b3 else u(2200, 2500) if not low else u(1700, 2000)
        return dict(repetition_time=u(8000, 11000) if not low else u(6000, 8000), echo_time=u(80, 160),
                    inversion_time=ti, flip_angle=_refocus_flip(ctx, (150, 180)),
                    echo_train_length=int(rng.integers(12, 30)))
    if tech == "flair_3d":
        return dict(repetition_time=u(4800, 8000), echo_time=u(300, 450) if v == "SIEMENS" else u(90, 140),
                    inversion_time=u(1600, 2200) if not b3 else u(1650, 2500),
                    flip_angle=120.0 if v == "SIEMENS" else 90.0, echo_train_length=int(rng.integers(150, 285)))
    if tech == "pd_tse":
        out = dict(repetition_time=u(2300, 4500), echo_time=u(8, 30), flip_angle=_refocus_flip(ctx, (150, 160, 180)),
                   echo_train_length=int(rng.integers(5, 11)))
        dual = {"SIEMENS": 0.35, "HITACHI": 0.5, "GE": 0.1, "CANON": 0.2}.get(v, 0.0)
        if rng.random() < dual:  # PD + T2 dual echo in one series: the PD echo first
            out["n_echoes"] = 2
            out["echo_times"] = (out["echo_time"], u(80, 110))
        return out
    if tech == "t2star":
        if v == "PHILIPS" and rng.random() < 0.25:  # "T2W/FE-EPI": a T2*-weighted FFE with an EPI readout
            return dict(repetition_time=u(900, 3000), echo_time=u(30, 45), flip_angle=float(rng.choice([30, 40, 90])),
                        echo_train_length=int(rng.integers(7, 31)), fe_epi=True)
        te = u(15, 25) if b3 else u(20, 30) if not low else u(25, 40)
        return dict(repetition_time=u(500, 800), echo_time=te, flip_angle=u(15, 20, 0) if v != "PHILIPS" else 18.0,
                    echo_train_length=1)
    if tech == "t2star_me":
        n = int(rng.integers(4, 9))
        te1, dte = u(2.5, 6.0), u(3.5, 8.0)
        return dict(repetition_time=u(30, 55), echo_time=te1, flip_angle=u(12, 20, 0), echo_train_length=n,
                    n_echoes=n, echo_times=tuple(round(te1 + k * dte, 2) for k in range(n)))
    if tech == "t2star_me2d":  # T2*/R2* mapping: many short echoes, a longer TR and a larger flip than 3-D
        n = int(rng.integers(6, 17))
        tr, te1 = u(100, 1500) if rng.random() < 0.4 else u(100, 600), u(1.0, 5.0)
        dte = u(0.7, 3.5) if b3 else u(1.0, 5.0)
        dte = round(min(dte, (min(0.8 * tr, 70.0) - te1) / (n - 1)), 2)  # every echo inside the TR
        return dict(repetition_time=tr, echo_time=te1, flip_angle=u(20, 60, 0), echo_train_length=n, n_echoes=n,
                    echo_times=tuple(round(te1 + k * dte, 2) for k in range(n)))
    if tech in ("other_pc_mag", "other_pc_phase"):  # per cardiac phase in a cine; _pc_group sets 3-D PC-MRA's
        return dict(repetition_time=u(20, 60), echo_time=u(2.5, 5.0) if b3 else u(3.5, 8.0), flip_angle=u(10, 30, 0),
                    echo_train_length=1)
    if tech.startswith("swi"):
        return dict(repetition_time=u(27, 49), echo_time=u(20, 28) if b3 else u(35, 42), flip_angle=u(12, 15, 0),
                    echo_train_length=1)
    if tech in ("dwi", "adc", "dti", "fa", "eadc"):
        te = u(55, 95) if b3 else u(80, 110) if not low else u(100, 130)
        return dict(repetition_time=u(3000, 10000), echo_time=te, flip_angle=90.0, echo_train_length=1)
    if tech == "dsc":
        return dict(repetition_time=u(1200, 2000), echo_time=u(25, 35) if b3 else u(40, 50), flip_angle=u(60, 90, 0),
                    echo_train_length=1)
    if tech in ("asl", "asl_m0"):
        tr = u(2500, 4500) if tech == "asl" else u(2000, 8000)
        ti = None if v in ("SIEMENS", "PHILIPS", "CANON") else u(1500, 2000)  # Siemens 2D ASL: no TI tag
        return dict(repetition_time=tr, echo_time=u(11, 14.5) if v == "SIEMENS" else u(11, 18), inversion_time=ti,
                    flip_angle=90.0)
    if tech in ("asl_3d", "asl_3d_m0"):
        if v == "SIEMENS":  # 3-D GRASE: long TE, refocusing flip, no TI
            return dict(repetition_time=u(3400, 4600), echo_time=u(28, 40), inversion_time=None,
                        flip_angle=float(rng.choice([120, 150, 180])), echo_train_length=int(rng.integers(20, 64)))
        if v == "GE":  # 3-D spiral FSE; the post-labelling delay is written as TI
            return dict(repetition_time=u(4500, 5500), echo_time=u(9.5, 11.5),
                        inversion_time=float(rng.choice([1525, 2025, 2525])), flip_angle=111.0,
                        echo_train_length=int(rng.integers(8, 40)))
        return dict(repetition_time=u(4000, 5000), echo_time=u(10, 16), inversion_time=None, flip_angle=90.0,
                    echo_train_length=int(rng.integers(8, 40)))
    if tech in ("tof", "mip"):
        return dict(repetition_time=u(20, 25), echo_time=u(3.4, 4.2) if b3 else u(6.0, 7.2), flip_angle=u(18, 25, 0),
                    echo_train_length=1)
    if tech == "ciss":
        return dict(repetition_time=u(5, 10), echo_time=u(2.2, 5.0), flip_angle=u(40, 70, 0), echo_train_length=1)
    if tech == "bold":
        mb = rng.random() < 0.3
        fa = u(70, 90, 0) if v != "GE" or rng.random() < 0.6 else float(rng.choice([30, 60]))
        return dict(repetition_time=u(700, 1500, 0) if mb else u(1500, 3000, 0),
                    echo_time=u(25, 35) if b3 else u(40, 55), flip_angle=fa if not mb else u(50, 65, 0),
                    echo_train_length=1)
    if tech in ("fmap_mag", "fmap_phase"):
        te1 = u(4.0, 5.2) if b3 else u(4.5, 5.0)
        te2 = round(te1 + (2.46 if b3 else 4.76), 2)
        return dict(repetition_time=u(400, 700), echo_time=te1 if tech == "fmap_mag" else te2,
                    flip_angle=60.0 if v == "SIEMENS" else u(20, 60, 0), echo_times=(te1, te2), echo_time_2=te2)
    if tech == "fmap_b0":  # two echoes a fat-water cycle apart (in phase: 2.3 ms at 3 T, 4.6 at 1.5 T)
        te1, dte = (u(2.3, 4.6), 2.3) if v == "PHILIPS" else (u(2.0, 3.0), u(2.2, 2.4))
        dte = dte if b3 else 2 * dte
        if v == "PHILIPS":
            return dict(repetition_time=u(30, 130), echo_time=te1, flip_angle=u(15, 25, 0) if rng.random() < 0.8
                        else 60.0, echo_train_length=2, echo_time_2=round(te1 + dte, 2))
        return dict(repetition_time=u(500, 700), echo_time=te1, flip_angle=u(20, 60, 0), echo_train_length=1,
                    echo_time_2=round(te1 + dte, 2))
    if tech == "fmap_sepi":
        return dict(repetition_time=u(5000, 9000), echo_time=u(50, 80), flip_angle=90.0, echo_train_length=1)
    if tech == "other_mt":
        return dict(repetition_time=u(25, 40), echo_time=u(3, 6), flip_angle=u(8, 15, 0))
    if tech == "other_t1map":
        return dict(repetition_time=u(10, 20), echo_time=u(2, 4), flip_angle=u(3, 20, 0))
    if tech == "other_svs":
        return dict(repetition_time=u(1500, 2000), echo_time=u(30, 135, 0), flip_angle=90.0)
    raise KeyError(tech)


def _geometry(tech: str, plane: str, ctx: _Ctx) -> dict:
    """Matrix, pixel spacing, thickness, slice count for a technique in a plane."""
    rng, prof = ctx.rng, ctx.profile
    t = TECHNIQUES[tech]
    fov = _u(rng, *_FOV, 0)
    cov = _u(rng, *_COVERAGE.get(plane, _COVERAGE["AXIAL"]), 0)
    if tech in ("scout", "scout_mpr"):
        m, th, sp, n = 256, _u(rng, 6, 10, 0), None, int(rng.integers(3, 6))
    elif tech == "scout_cal":
        m, th, n = int(rng.choice([64, 96])), _u(rng, 4, 6, 1), int(rng.integers(24, 40))
        sp = th
    elif t.epi:
        m = int(rng.choice([96, 128, 128, 160])) if tech not in ("bold", "asl", "asl_m0") else int(
            rng.choice([64, 80, 96]))
        if tech == "dsc":
            m = int(rng.choice([96, 128]))
        if tech in ("dti", "fa", "eadc"):
            m, th = int(rng.choice([96, 112, 128])), _u(rng, 2.0, 2.5, 1)
            n = int(rng.integers(30, 46))
            sp = th
        else:
            th = _u(rng, 3.0, 5.0, 1)
            sp = round(th * float(rng.choice([1.0, 1.1, 1.2])), 2)
            n = int(np.clip(round(cov / sp), 12, 40))
            if tech == "dsc":
                n = int(rng.integers(12, 21))
                sp = round(max(sp, cov / n), 2)
    elif t.acquisition == "3D":
        m = int(rng.choice(prof.matrix_3d))
        if tech in ("tof", "mip"):
            m, th, n = int(rng.choice([256, 256, 320])), _u(rng, 0.5, 0.8, 2), int(rng.integers(80, 121))
        elif tech == "ciss":
            m, fov, th = int(rng.choice([256, 320])), _u(rng, 160, 200, 0), _u(rng, 0.5, 0.7, 2)
            n = int(rng.integers(48, 81))
        elif tech.startswith("swi"):
            m, th, n = int(rng.choice([256, 256, 320])), _u(rng, 1.5, 2.5, 1), int(rng.integers(48, 73))
        elif tech in ("asl_3d", "asl_3d_m0"):
            m, th, n = 64, _u(rng, 3.0, 4.0, 1), int(rng.integers(30, 41))
        elif tech == "t2star_me":
            m, th, n = int(rng.choice([256, 256, 320])), _u(rng, 1.0, 2.0, 1), int(rng.integers(48, 97))
        elif tech == "other_t1map":
            m, th, n = 192, _u(rng, 1.5, 2.5, 1), int(rng.integers(60, 81))
        elif tech == "other_mt":
            m, th, n = 256, _u(rng, 1.5, 3.0, 1), int(rng.integers(40, 61))
        else:  # 1 mm-ish isotropic anatomy
            th = _u(rng, 0.9, 1.2, 2)
            n = int(np.clip(round(cov / th), 120, 176))
            fov = round(m * th, 0) if rng.random() < 0.6 else fov
        sp = th
    elif tech in ("fmap_mag", "fmap_phase", "fmap_b0"):
        m, th = int(rng.choice([64, 80, 96])), _u(rng, 3.0, 4.0, 1)
        sp = th
        n = int(np.clip(round(cov / sp), 30, 48))
    else:  # 2-D anatomy
        m = int(rng.choice(prof.matrix_2d))
        if tech == "haste":
            m = int(rng.choice([256, 320]))
        th = float(rng.choice(prof.thickness_2d))
        if tech == "t2star" and rng.random() < 0.5:
            th = 5.0
        sp = round(th * float(rng.choice([1.0, 1.1, 1.2, 1.3])), 2)
        n = int(np.clip(round(cov / sp), 16, 40))
        if tech == "other_svs":
            n = int(rng.integers(1, 4))
        if tech.startswith("other_pc"):  # flow quantification: one slice or a few, placed on the vessel
            m, th = int(rng.choice([192, 256, 256])), _u(rng, 4.0, 7.0, 1)
            n = 1 if rng.random() < 0.7 else int(rng.integers(2, 6))
    ps = round(fov / m, 4)
    rows = m
    if t.acquisition == "2D" and not t.epi and tech not in ("scout", "scout_mpr") and rng.random() < 0.4:
        rows = int(m * float(rng.choice([0.75, 0.8125, 0.875])))  # rectangular FOV, rows = phase
        rows -= rows % 2
    return dict(rows=rows, columns=m, pixel_spacing=(ps, ps), slice_thickness=th,
                slice_spacing=sp if sp is not None else th, n_slices=n)


def _orientation(tech: str, ctx: _Ctx, plane: str | None = None) -> tuple[str, str, tuple[float, float]]:
    """(orientation label, nominal plane, tilts)."""
    rng = ctx.rng
    if plane is None:
        plane = "AXIAL" if tech in _ALWAYS_AXIAL else _choice(rng, _PLANES.get(tech, {"AXIAL": 1.0}))
    tilt = (float(np.clip(rng.normal(0, 3.0), -8, 8)), float(np.clip(rng.normal(0, 2.0), -6, 6)))
    t = TECHNIQUES[tech]
    rate = ctx.profile.oblique_rate if t.acquisition == "2D" else ctx.profile.oblique_rate / 3
    if tech not in ("scout", "scout_cal", "scout_mpr", "fmap_mag", "fmap_phase", "fmap_b0", "fmap_sepi",
                    "other_svs") and rng.random() < rate:
        angle = float(rng.uniform(25, 40)) * float(rng.choice([-1, 1]))
        return "OBLIQUE", plane, (round(angle, 1), round(tilt[1] / 2, 1))
    return plane, plane, (round(tilt[0], 1), round(tilt[1], 1))


# --- building specs -----------------------------------------------------------------------------------------------


def _spec(tech: str, ctx: _Ctx, *, contrast: bool = False, fs: bool | None = None, plane: str | None = None,
          like: SeriesSpec | None = None, **overrides) -> SeriesSpec:
    """A spec for one technique; ``like`` copies geometry (derived series, SWI parts, DWI/ADC)."""
    rng, prof = ctx.rng, ctx.profile
    t = TECHNIQUES[tech]
    code = t.code
    if code.startswith("T1_") and contrast:
        code = code.replace("_PRE", "_POST")
    if fs is None:
        fs = t.epi or (contrast and code.startswith("T1_") and rng.random() < 0.35)
    if like is not None:
        geo = {k: getattr(like, k) for k in ("rows", "columns", "pixel_spacing", "slice_thickness", "slice_spacing",
                                             "n_slices", "tilt_degrees", "orientation")}
        base_plane = like.extra.get("base_plane", like.orientation)
        timing = {k: getattr(like, k) for k in ("repetition_time", "echo_time", "inversion_time", "flip_angle",
                                                "echo_train_length")}
    else:
        orientation, base_plane, tilt = _orientation(tech, ctx, plane)
        geo = _geometry(tech, base_plane, ctx)
        geo.update(orientation=orientation, tilt_degrees=tilt)
        timing = _timing(tech, ctx)
    timing_extra = {k: timing.pop(k) for k in list(timing) if k not in _SPEC_FIELDS}
    if like is not None:
        timing_extra = {k: like.extra[k] for k in ("n_echoes", "echo_times", "echo_time_2", "ge_mprage")
                        if k in like.extra}
    spec = SeriesSpec(
        sequence=code, contrast=contrast, acquisition=t.acquisition, fat_suppressed=bool(fs), derived=t.derived,
        vendor=prof.vendor, field_strength=prof.field_strength, **geo, **timing,
    )
    spec.extra.update(timing_extra)
    spec.extra["base_plane"] = spec.extra["oblique_base"] = base_plane  # render.py reads oblique_base
    spec.extra["noise_scale"] = _u(rng, *prof.noise_scale)
    spec.extra["study_has_contrast"] = ctx.has_contrast
    if like is not None:
        spec.extra["_parent"] = like  # named after its source (see _name); removed before rendering
    for key, value in overrides.items():
        if hasattr(spec, key):
            setattr(spec, key, value)
        else:
            spec.extra[key] = value
    spec.storage = _storage(tech, ctx)
    if tech == "adc" and prof.vendor != "SIEMENS" and rng.random() < 0.3:
        spec.extra["adc_si_units"] = True
    header_style(tech, spec, prof, rng)
    return spec


def _storage(tech: str, ctx: _Ctx) -> str:
    t = TECHNIQUES[tech]
    if ctx.storage == "enhanced" and tech not in ("scout",) and not (tech == "fa" and ctx.rng.random() < 0.5):
        return "enhanced"
    if ctx.profile.vendor == "SIEMENS" and tech in ("dti", "bold", "dsc", "asl", "asl_m0", "asl_3d", "asl_3d_m0",
                                                    "fmap_sepi") and (t.epi or tech.startswith("asl_3d")):
        return "mosaic" if ctx.rng.random() < ctx.profile.mosaic_rate else "classic"
    return "classic"


def _dwi_group(ctx: _Ctx, *, dti: bool = False) -> list[SeriesSpec]:
    rng, prof = ctx.rng, ctx.profile
    if dti:
        n_dirs = int(rng.integers(12, 21))
        src = _spec("dti", ctx, b_values=(0.0,) + (1000.0,) * n_dirs)
        src.storage = "mosaic" if prof.vendor == "SIEMENS" and rng.random() < prof.mosaic_rate else src.storage
        header_style("dti", src, prof, rng)
        out = [src]
        out.append(_spec("fa", ctx, like=src, diffusion_map="FA", b_values=()))
        if rng.random() < 0.5:
            out.append(_spec("fa", ctx, like=src, diffusion_map="FA", b_values=(), colour=True))
        out.append(_spec("adc", ctx, like=src, b_values=()))
        return out
    b = (0.0, 1000.0) if rng.random() < 0.7 else (0.0, 500.0, 1000.0)
    if prof.field_strength >= 2.5 and rng.random() < 0.15:
        b = (0.0, 1000.0, 2000.0)
    elif rng.random() < 0.12:
        b = (0.0, float(rng.choice([800.0, 1500.0, 2000.0, 3000.0])))
    src = _spec("dwi", ctx, b_values=b)
    out = []
    if prof.vendor == "SIEMENS" and rng.random() < prof.mosaic_rate * 0.4:
        raw = _spec("dwi", ctx, like=src, b_values=(0.0, 1000.0, 1000.0, 1000.0))
        raw.storage = "mosaic"
        header_style("dwi", raw, prof, rng)
        out.append(raw)
    out += [src, _spec("adc", ctx, like=src, b_values=())]
    if rng.random() < 0.15:
        out.append(_spec("eadc", ctx, like=src, diffusion_map="EADC", b_values=()))
    return out


def _low_field(ctx: _Ctx) -> bool:
    return ctx.profile.field_strength < 1.0


def _swi_group(ctx: _Ctx) -> list[SeriesSpec]:
    rng, v = ctx.rng, ctx.profile.vendor
    if _low_field(ctx) or v == "HITACHI":
        return [_spec("t2star", ctx)]  # no SWI at low field
    if rng.random() < 0.1:
        return [_multi_echo_gre(ctx)]  # multi-echo GRE (QSM-ready or T2* mapping) in place of SWI
    if rng.random() < 0.4 and v != "GE":
        return [_spec("t2star", ctx)]
    mag = _spec("swi_mag", ctx)
    if v == "SIEMENS":
        parts = ["swi_mag", "swi_phase", "swi_minip", "swi"]
    elif v == "GE":
        parts = ["swi"] + (["swi_minip"] if rng.random() < 0.5 else []) + (["swi_phase"] if rng.random() < 0.3 else [])
    elif v == "PHILIPS":
        parts = ["swi_mag", "swi_phase", "swi"] + (["swi_minip"] if rng.random() < 0.6 else [])
    else:
        parts = ["swi", "swi_minip"] + (["swi_mag", "swi_phase"] if rng.random() < 0.5 else [])
    out = []
    for p in parts:
        out.append(mag if p == "swi_mag" else _spec(p, ctx, like=mag, minip_slab_mm=_u(rng, 8, 16, 0)))
    return out


def _multi_echo_gre(ctx: _Ctx) -> SeriesSpec:
    """A multi-echo GRE: 3-D (QSM-ready, short TR) or, about a third of the time, 2-D (T2*/R2* mapping)."""
    return _spec("t2star_me2d" if ctx.rng.random() < 1 / 3 else "t2star_me", ctx)


# phase-contrast flow studies: VENC range (cm/s) and whether the acquisition is a cardiac-gated cine
_PC_KINDS = {"csf": ((5, 20), True), "artery": ((60, 120), True), "venous": ((10, 40), False),
             "angio": ((40, 80), False)}


def _pc_group(ctx: _Ctx, kind: str) -> list[SeriesSpec]:
    """A phase-contrast acquisition as a magnitude series and its velocity series (both OTHER): CSF flow
    through the aqueduct or arterial flow (2-D cine, through-plane), venography or angiography (2-D thick slab
    or 3-D, not gated, sometimes one velocity series per direction)."""
    rng = ctx.rng
    (lo, hi), cine = _PC_KINDS[kind]
    venc = int(round(rng.uniform(lo, hi))) if hi <= 20 else int(5 * round(rng.uniform(lo, hi) / 5))
    extra: dict = dict(other_kind="PC", pc_kind=kind, venc=venc)
    if cine:
        extra.update(n_temporal=int(rng.integers(15, 41)), rr_interval=_u(rng, 700, 1100, 0))
        through = kind == "artery" or rng.random() < 0.65  # CSF: through the aqueduct, or along it (sagittal)
        plane, dirs = ("AXIAL", ["in"]) if through else ("SAGITTAL", ["fh"])
        if through and kind == "csf" and rng.random() < 0.5:  # perpendicular to the aqueduct: angled
            extra.update(orientation="OBLIQUE", tilt_degrees=(round(float(rng.uniform(25, 40)), 1), 0.0))
    else:
        plane = str(rng.choice(["SAGITTAL", "AXIAL", "CORONAL"], p=[0.5, 0.3, 0.2]))
        dirs = ["rl", "ap", "fh"] if rng.random() < 0.3 else [str(rng.choice(["rl", "ap", "fh"]))]
        if rng.random() < 0.5:  # 3-D PC angiography / venography
            extra.update(acquisition="3D", n_slices=int(rng.integers(60, 121)), repetition_time=_u(rng, 10, 20),
                         echo_time=_u(rng, 3.0, 6.5), flip_angle=_u(rng, 8, 20, 0))
            extra["slice_thickness"] = extra["slice_spacing"] = _u(rng, 1.0, 1.6)
        else:  # 2-D thick slab
            extra["n_slices"] = 1
            extra["slice_thickness"] = extra["slice_spacing"] = _u(rng, 30, 60, 0)
    mag = _spec("other_pc_mag", ctx, plane=plane, pc_part="magnitude", venc_dir=dirs[0], **extra)
    shared = {k: v for k, v in extra.items() if k not in ("orientation", "tilt_degrees", "n_slices",
                                                          "slice_thickness", "slice_spacing")}
    return [mag] + [_spec("other_pc_phase", ctx, like=mag, pc_part="phase", venc_dir=d, **shared) for d in dirs]


def _tof_group(ctx: _Ctx) -> list[SeriesSpec]:
    rng = ctx.rng
    tof = _spec("tof", ctx)
    out = [tof]
    # radial sets over >= 90 degrees lie in many planes (MIXED); a single projection or a small-angle
    # set (<= 24 degrees, every frame within 12 degrees of its plane) takes its plane
    kinds = ["RADIAL"] if rng.random() < 0.7 else []
    kinds += [str(p) for p in rng.choice(["AXIAL", "CORONAL", "SAGITTAL"], size=int(rng.integers(1, 3)), replace=False)]
    for kind in kinds:
        if kind == "RADIAL":
            n = int(rng.integers(9, 19))
            mip = _spec("mip", ctx, like=tof, mip_axis="CORONAL", mip_span_deg=float(rng.choice([180.0, 120.0, 90.0])),
                        n_slices=n)
            mip.orientation, base = "MIXED", "CORONAL"
        else:
            n = 1 if rng.random() < 0.5 else int(rng.integers(3, 8))
            mip = _spec("mip", ctx, like=tof, mip_axis=kind, mip_span_deg=float(rng.uniform(10, 24)), n_slices=n)
            mip.orientation, base = kind, kind
        mip.tilt_degrees = (0.0, 0.0)
        mip.extra["base_plane"] = mip.extra["oblique_base"] = base
        mip.rows = mip.columns
        header_style("mip", mip, ctx.profile, rng)
        out.append(mip)
    return out


def _scouts(ctx: _Ctx) -> list[SeriesSpec]:
    rng, v = ctx.rng, ctx.profile.vendor
    k = int(rng.integers(3, 6))
    out = [_spec("scout", ctx, plane="AXIAL", orientation="MIXED", n_slices=3 * k, slices_per_plane=k)]
    out[0].orientation = "MIXED"
    if v in ("GE", "PHILIPS") and rng.random() < 0.6:
        out.append(_spec("scout_cal", ctx, plane="AXIAL" if v == "GE" else "CORONAL"))
    if v == "SIEMENS" and rng.random() < 0.25:
        for plane in ("SAGITTAL", "CORONAL", "AXIAL"):
            out.append(_spec("scout_mpr", ctx, plane=plane, n_slices=int(rng.integers(5, 11))))
    return out


def _t1_2d(ctx: _Ctx, contrast: bool, plane: str | None = None) -> SeriesSpec:
    tech = "t1_flair" if ctx.rng.random() < (0.45 if ctx.profile.vendor == "GE" else 0.2) else "t1_se"
    return _spec(tech, ctx, contrast=contrast, plane=plane)


def _t1_3d(ctx: _Ctx, contrast: bool, plane: str | None = None) -> SeriesSpec:
    tech = "t1_3d_ir" if ctx.rng.random() < 0.8 else "t1_3d_gre"
    return _spec(tech, ctx, contrast=contrast, plane=plane)


def _mprs(src: SeriesSpec, ctx: _Ctx) -> list[SeriesSpec]:
    planes = [p for p in ("AXIAL", "CORONAL", "SAGITTAL") if p != src.extra["base_plane"]]
    out = []
    for plane in planes[: int(ctx.rng.integers(1, 3))]:
        geo = _geometry("t1_3d_ir", plane, ctx)
        geo["slice_thickness"] = geo["slice_spacing"] = float(ctx.rng.choice([1.0, 2.0, 3.0]))
        geo["n_slices"] = int(np.clip(round(_COVERAGE[plane][1] / geo["slice_spacing"]), 40, 160))
        mpr = _spec("t1_mpr", ctx, contrast=src.contrast, like=src, mpr=True, **geo)
        mpr.orientation = plane
        mpr.tilt_degrees = (0.0, 0.0)
        mpr.extra["base_plane"] = plane
        mpr.sequence = src.sequence
        mpr.fat_suppressed = src.fat_suppressed
        header_style("t1_mpr", mpr, ctx.profile, ctx.rng)
        out.append(mpr)
    return out


def _occasional(ctx: _Ctx) -> list[SeriesSpec]:
    """PD, HASTE and OTHER (MT, T1 map, spectroscopy locator, CSF flow) turn up now and then in any protocol."""
    rng, out = ctx.rng, []
    if rng.random() < 0.3:
        out.append(_spec("pd_tse", ctx))
    if rng.random() < 0.15:
        out.append(_spec("haste", ctx))
    if rng.random() < 0.15:
        tech = str(rng.choice(["other_mt", "other_t1map", "other_svs"]))
        out.append(_spec(tech, ctx, other_kind={"other_mt": "MT", "other_t1map": "T1MAP", "other_svs": "CSI"}[tech]))
    if rng.random() < 0.07:  # CSF flow (normal-pressure hydrocephalus work-up)
        out += _pc_group(ctx, "csf")
    return out


def _bold_volumes(rng: np.random.Generator) -> int:
    """Time points of a BOLD run: mostly a real run, now and then a short test run or a few exported volumes."""
    return int(rng.integers(2, 7)) if rng.random() < 0.15 else int(rng.integers(20, 41))


def _fieldmaps(ctx: _Ctx) -> list[SeriesSpec]:
    """Each vendor's field maps: GRE magnitude + phase difference, GE/Philips B0 map, reverse-PE spin-echo EPI."""
    rng, v = ctx.rng, ctx.profile.vendor
    if rng.random() < 0.35:  # a spin-echo EPI pair with opposite phase encoding (for TOPUP)
        first = _spec("fmap_sepi", ctx, fieldmap_part="sepi")
        return [first, _spec("fmap_sepi", ctx, like=first, fieldmap_part="sepi")]
    if v in ("GE", "PHILIPS") and rng.random() < 0.7:
        b0 = _spec("fmap_b0", ctx, fieldmap_part="b0map", **_b0_acquisition(ctx))
        # a separate magnitude series only where the map's own series does not hold one (habits.py)
        alone = not b0.extra.get("b0_with_magnitude")
        out = [_spec("fmap_mag", ctx, like=b0, fieldmap_part="magnitude")] if alone and rng.random() < 0.6 else []
        return out + [b0]
    mag = _spec("fmap_mag", ctx, fieldmap_part="magnitude", n_echoes=2)
    return [mag, _spec("fmap_phase", ctx, like=mag, fieldmap_part="phasediff",
                       echo_time=mag.extra.get("echo_time_2", 7.38))]


def _b0_acquisition(ctx: _Ctx) -> dict:
    """GE's 3-D B0 map (psd 3db0map, introduced with MR29 software; dcm2niix issue 501) beside the 2-D one."""
    if ctx.profile.vendor == "GE" and ctx.profile.generation in ("MR29", "MR30") and ctx.rng.random() < 0.3:
        return {"acquisition": "3D"}
    return {}


def _asl_group(ctx: _Ctx) -> list[SeriesSpec]:
    """ASL as each vendor runs it: 2-D EPI PASL/pCASL pairs, 3-D GRASE/spiral, sometimes a separate M0 series."""
    rng, v = ctx.rng, ctx.profile.vendor
    if _low_field(ctx):
        return []
    three_d = v == "GE" or (v in ("SIEMENS", "PHILIPS", "UIH") and rng.random() < 0.4)
    if three_d:
        if v == "GE":
            main = _spec("asl_3d", ctx, asl_map="CBF")
        else:
            main = _spec("asl_3d", ctx, n_temporal=int(rng.integers(2, 7)), asl_map="PAIRS")
    else:
        main = _spec("asl", ctx, n_temporal=int(rng.integers(8, 17)), asl_map="PAIRS")
    out = [main]
    if v != "GE" and rng.random() < 0.5:
        out.append(_spec("asl_3d_m0" if three_d else "asl_m0", ctx, like=main, asl_map="M0", n_temporal=1))
    return out


def _routine(ctx: _Ctx) -> list[SeriesSpec]:
    """A general brain examination: T1, T2, FLAIR, diffusion and SWI, contrast in about a third."""
    rng = ctx.rng
    s: list[SeriesSpec] = []
    threed = rng.random() < 0.45
    s.append(_t1_3d(ctx, False) if threed else _t1_2d(ctx, False))
    s.append(_spec("t2_tse", ctx))
    s.append(_spec("flair_3d", ctx) if rng.random() < 0.25 else _spec("flair_2d", ctx))
    s += _dwi_group(ctx)
    s += _swi_group(ctx)
    s += _occasional(ctx)
    if rng.random() < 0.3:
        ctx.has_contrast = True
        s.append(_t1_3d(ctx, True) if threed else _t1_2d(ctx, True))  # post as pre: same acquisition
        if rng.random() < 0.5:
            s.append(_t1_2d(ctx, True, plane="CORONAL"))
    return s


def _stroke(ctx: _Ctx) -> list[SeriesSpec]:
    """Diffusion first, then vessels (TOF) and often perfusion: what an acute stroke work-up needs."""
    rng = ctx.rng
    s: list[SeriesSpec] = []
    s += _dwi_group(ctx)
    s.append(_spec("flair_2d", ctx))
    s += _swi_group(ctx)
    s += _tof_group(ctx)
    if rng.random() < 0.5:
        s.append(_spec("t2_tse", ctx))
    if rng.random() < 0.6 and not _low_field(ctx):
        ctx.has_contrast = True
        s.append(_spec("dsc", ctx, contrast=True, n_temporal=int(rng.integers(25, 41))))
    if rng.random() < 0.3:
        s.append(_spec("haste", ctx))
    if rng.random() < 0.2:
        s += _asl_group(ctx)
    return s


def _tumour(ctx: _Ctx) -> list[SeriesSpec]:
    """Pre- and post-contrast T1 around perfusion, sometimes presurgical fMRI and reformats of the 3-D T1."""
    rng = ctx.rng
    s: list[SeriesSpec] = []
    if rng.random() < 0.25 and not _low_field(ctx):  # presurgical language/motor fMRI
        s.append(_spec("bold", ctx, n_temporal=_bold_volumes(rng)))
    s.append(_spec("t2_tse", ctx))
    s.append(_spec("flair_3d", ctx) if rng.random() < 0.3 else _spec("flair_2d", ctx))
    s += _dwi_group(ctx)
    pre3d = _t1_3d(ctx, False) if rng.random() < 0.6 else None
    s.append(_t1_2d(ctx, False))
    if pre3d is not None:  # planned before the 2-D T1 (the draws' order), acquired after it
        s.append(pre3d)
    s += _swi_group(ctx)
    if rng.random() < 0.5:
        s += _asl_group(ctx)
    ctx.has_contrast = True
    if rng.random() < 0.7 and not _low_field(ctx):
        s.append(_spec("dsc", ctx, contrast=True, n_temporal=int(rng.integers(25, 41))))
    post3d = _t1_3d(ctx, True)
    s.append(post3d)
    if rng.random() < 0.5:
        s += _mprs(post3d, ctx)
    s.append(_t1_2d(ctx, True, plane=str(rng.choice(["AXIAL", "CORONAL", "SAGITTAL"]))))
    s += _occasional(ctx)
    return s


def _research(ctx: _Ctx) -> list[SeriesSpec]:
    """A research protocol: 3-D anatomy, DTI, field maps and BOLD runs, often ASL."""
    rng = ctx.rng
    s: list[SeriesSpec] = []
    mprage = _spec("t1_3d_ir", ctx)
    s.append(mprage)
    if rng.random() < 0.3:
        s += _mprs(mprage, ctx)
    s.append(_spec("t2_3d", ctx))
    s.append(_spec("flair_3d", ctx))
    s += _dwi_group(ctx, dti=True)
    s += _fieldmaps(ctx)
    s.append(_spec("bold", ctx, n_temporal=_bold_volumes(rng)))
    if rng.random() < 0.35:  # a second run (task or rest)
        s.append(_spec("bold", ctx, n_temporal=_bold_volumes(rng)))
    if rng.random() < 0.45:
        s += _asl_group(ctx)
    if rng.random() < 0.25:
        s.append(_multi_echo_gre(ctx))
    if rng.random() < 0.3:
        s += _swi_group(ctx)
    s += _occasional(ctx)
    return s


def _iac(ctx: _Ctx) -> list[SeriesSpec]:
    """Internal auditory canals: thin T2 and CISS through the petrous bone, post-contrast T1 in two planes."""
    rng = ctx.rng
    s: list[SeriesSpec] = []
    s.append(_spec("t2_tse", ctx))
    s.append(_spec("ciss", ctx))
    s.append(_spec("t2_tse", ctx, plane="CORONAL", slice_thickness=2.0, slice_spacing=2.2, n_slices=20))
    s += _dwi_group(ctx)
    ctx.has_contrast = True
    s.append(_t1_2d(ctx, True, plane="AXIAL"))
    s.append(_t1_2d(ctx, True, plane="CORONAL"))
    if rng.random() < 0.4:
        s.append(_t1_3d(ctx, True))
    return s


def _mra(ctx: _Ctx) -> list[SeriesSpec]:
    """An angiography study: TOF and its projections, sometimes a T2 and diffusion."""
    rng = ctx.rng
    s: list[SeriesSpec] = []
    s += _tof_group(ctx)
    if rng.random() < 0.4:  # venous sinuses or flow in the arteries by phase contrast
        s += _pc_group(ctx, str(rng.choice(["venous", "angio", "artery"])))
    if rng.random() < 0.5:
        s.append(_spec("t2_tse", ctx))
    if rng.random() < 0.5:
        s += _dwi_group(ctx)
    return s


# One planner per study type; each draws from ctx.rng in a fixed order (a seed's studies depend on it).
_PLANNERS = {"routine": _routine, "stroke": _stroke, "tumour": _tumour, "research": _research, "iac": _iac,
             "mra": _mra}


def _study(kind: str, ctx: _Ctx) -> list[SeriesSpec]:
    """The scouts, then the series of a study of type ``kind`` (the scouts' draws come first, as acquired)."""
    s: list[SeriesSpec] = _scouts(ctx)
    planner = _PLANNERS.get(kind)
    if planner is None:
        raise ValueError(f"unknown study type {kind!r}; known: {', '.join(STUDY_TYPES)}")
    return s + planner(ctx)


def plan_study(profile: Profile, rng: np.random.Generator, kind: str | None = None) -> list[SeriesSpec]:
    """The series of one study as the profile's site would acquire and export them (naming mess applied)."""
    weights = profile.study_weights or {k: 1.0 for k in STUDY_TYPES}
    kind = kind or _choice(rng, weights)
    if profile.field_strength < 1.0 and kind == "research":
        kind = "routine"  # no DTI, fMRI or field maps on a low-field open scanner
    storage = "enhanced" if rng.random() < profile.enhanced_rate else "classic"
    ctx = _Ctx(profile, rng, storage)
    specs = _study(kind, ctx)
    # sources first: derived series are named after their source's protocol
    for spec in sorted(specs, key=lambda sp: "_parent" in sp.extra):
        spec.extra["study_type"] = kind
        _name(spec, ctx)
    _share_grids(specs)
    for spec in specs:
        spec.extra.pop("_parent", None)
        _contrast_agent(spec, ctx)
        _mess(spec, ctx)
    return specs


def _share_grids(specs: list[SeriesSpec]) -> None:
    """Derived series and their source get one ``grid_of`` key (and the source's sequence for the anchor):
    render.slice_geometry then lays them on the very same planes, as a scanner writes an ADC on its DWI's
    grid. The source need not be among the specs (GE writes the SWI without its magnitude)."""
    keys: dict[int, int] = {}
    for spec in specs:
        root = spec.extra.get("_parent")
        if root is None:
            continue
        while root.extra.get("_parent") is not None:
            root = root.extra["_parent"]
        key = keys.setdefault(id(root), next((i for i, s in enumerate(specs) if s is root), len(specs) + len(keys)))
        for member in (spec, root):
            member.extra["grid_of"], member.extra["grid_sequence"] = key, root.sequence


def _name(spec: SeriesSpec, ctx: _Ctx) -> None:
    parent = spec.extra.get("_parent")
    if parent is not None:
        spec.extra["parent_protocol"] = parent.protocol_name
    desc, protocol = name_series(spec.extra["technique"], spec, ctx.profile, ctx.rng)
    if spec.extra["technique"] == "dwi" and spec.storage == "mosaic" and parent is not None:
        desc = parent.protocol_name  # raw diffusion directions keep the protocol's name
    spec.series_description, spec.protocol_name = desc, protocol


_CONFUSE = {"flair_2d": "t1_se", "flair_3d": "t2_3d", "t2_tse": "flair_2d", "t1_se": "t2_tse", "dwi": "adc",
            "adc": "dwi", "t1_3d_ir": "t2_3d", "swi_mag": "swi", "swi_phase": "swi", "t2star": "swi",
            "pd_tse": "t2_tse", "haste": "t2_tse", "ciss": "t2_3d", "t1_flair": "flair_2d", "dsc": "dwi"}


def _mess(spec: SeriesSpec, ctx: _Ctx) -> None:
    rng, mess = ctx.rng, ctx.profile.mess
    drop: list[str] = list(spec.extra.get("drop_tags", []))
    if mess.reexported and rng.random() < mess.reexported:  # draws only for such sites: others stay as they were
        spec.image_type = ("DERIVED", "SECONDARY")
    if rng.random() < mess.wrong_description:
        tech = spec.extra["technique"]
        wrong = dataclasses.replace(spec, extra=dict(spec.extra))
        if spec.sequence.startswith("T1_"):
            wrong.contrast = not spec.contrast  # copied protocol: "pre" on a post series or vice versa
            wrong.extra["study_has_contrast"] = True
            name_tech = tech
        else:
            name_tech = _CONFUSE.get(tech, "t2_tse")
        wrong.extra.pop("parent_protocol", None)
        desc, protocol = name_series(name_tech, wrong, ctx.profile, rng)
        spec.series_description = desc
        spec.protocol_name = protocol if rng.random() < 0.7 else spec.protocol_name
        spec.extra["wrong_description"] = True
    if rng.random() < mess.strip_descriptions:
        drop += ["SeriesDescription", "ProtocolName"]
    elif rng.random() < mess.protocol_only:
        drop.append("SeriesDescription")
    elif rng.random() < mess.empty_description:
        spec.series_description = ""
    for tag in ("EchoTrainLength", "InversionTime", "SequenceName", "FlipAngle", "SpacingBetweenSlices",
                "PercentPhaseFieldOfView", "ReceiveCoilName", "ScanOptions", "PixelBandwidth"):
        if rng.random() < mess.missing_optional:
            drop.append(tag)
    spec.extra["drop_tags"] = sorted(set(drop))


_PLACEHOLDERS = ("ANONYMIZED", "XXXX", "", "NONE", "REMOVED")


def _contrast_agent(spec: SeriesSpec, ctx: _Ctx) -> None:
    rng, prof = ctx.rng, ctx.profile
    if not spec.contrast:
        return
    r = rng.random()
    if r < prof.mess.missing_agent:
        spec.extra["contrast_agent"] = None
    elif r < prof.mess.missing_agent + prof.mess.anonymised_agent:
        spec.extra["contrast_agent"] = str(rng.choice(_PLACEHOLDERS))
    else:
        spec.extra["contrast_agent"] = str(rng.choice(prof.contrast_agents))
