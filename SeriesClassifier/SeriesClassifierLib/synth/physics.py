"""Tissue MR parameters and the signal equations of the simulated sequences.

All functions are vectorised over tissues: they take a ``TissueParams`` (arrays, one
entry per tissue) and return one signal per tissue; the renderer mixes them with the
phantom's fraction maps. Times in ms, ADC in mm²/s, concentrations in mM.

Sources of the relaxation values (rounded, brain at 37 °C):
  Stanisz GJ et al., MRM 2005;54:507 — T2 of WM and GM; T1/T2 of muscle, blood at 1.5 T and 3 T.
  Wright PJ et al., MAGMA 2008;21:121 — T1 of WM/GM in vivo at 1.5 T and 3 T (Stanisz's are of excised
    tissue: their WM T1 at 1.5 T, 884 ms, makes a spin-echo T1 image isointense, which scanners' are not).
  Wansapura JP et al., JMRI 1999;9:531 — WM/GM at 3 T in vivo (T1 832/1331 ms: Wright's WM, a shorter GM).
  Lu H et al., MRM 2005;54:1403 (CSF/blood T1 at 3 T); Lu H et al., JMRI 2004;20:400 (blood).
  de Bazelaire CMJ et al., Radiology 2004;230:652 — fat, muscle, marrow T1/T2 at 1.5/3 T.
  Peters AM et al., MRI 2007;25:748 and Wansapura 1999 — T2* of WM/GM.
  ADC: Helenius J et al., AJNR 2002 (WM ~0.7, GM ~0.8–0.9, CSF ~3.0 ×10⁻³ mm²/s).
  Gadolinium relaxivity r1 ≈ 4–5 /mM/s (Rohrer M et al., Invest Radiol 2005).
Lesion values are typical figures from the clinical literature (MS plaques, glioma,
vasogenic oedema, acute infarct) chosen for their relative contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# tissue: (PD, T1@1.5T, T2@1.5T, T2*@1.5T, T1@3T, T2@3T, T2*@3T, ADC 1e-3 mm²/s, FA, chi (ppm vs tissue), CBV)
_TABLE: dict[str, tuple[float, ...]] = {
    "GM": (0.80, 1197, 95, 70, 1607, 99, 50, 0.85, 0.15, 0.0, 0.045),
    "WM": (0.69, 646, 72, 60, 838, 69, 45, 0.75, 0.55, 0.0, 0.022),
    "CSF": (1.00, 4000, 2000, 1000, 4300, 1800, 900, 3.00, 0.03, 0.0, 0.0),
    "FAT": (0.90, 343, 100, 40, 382, 90, 30, 0.05, 0.05, 0.0, 0.005),
    "BONE": (0.05, 500, 2, 1, 600, 2, 1, 0.10, 0.05, -2.0, 0.0),
    "MUSCLE": (0.72, 1008, 44, 30, 1412, 50, 25, 1.40, 0.25, 0.0, 0.02),
    "EYE": (0.95, 3800, 1500, 600, 4100, 1300, 500, 2.90, 0.02, 0.0, 0.0),
    "DURA": (0.60, 900, 60, 40, 1100, 55, 30, 1.00, 0.10, 0.0, 0.05),
    "CHOROID": (0.85, 1400, 110, 60, 1800, 100, 50, 1.80, 0.05, 0.0, 0.1),
    "PITUITARY": (0.80, 900, 80, 50, 1200, 75, 40, 1.00, 0.10, 0.0, 0.1),
    "MS": (0.80, 1250, 130, 80, 1600, 125, 60, 1.10, 0.30, 0.0, 0.02),
    "EDEMA": (0.86, 1300, 160, 90, 1700, 150, 70, 1.50, 0.20, 0.0, 0.02),
    "TUMOR": (0.82, 1300, 120, 70, 1700, 110, 55, 1.00, 0.12, 0.0, 0.09),
    "NECROSIS": (0.92, 2600, 400, 200, 3000, 350, 150, 2.20, 0.05, 0.0, 0.0),
    "STROKE": (0.84, 1250, 110, 75, 1650, 105, 55, 0.40, 0.30, 0.0, 0.01),
    # subacute/chronic blood products: short T2*, strongly paramagnetic
    "BLEED": (0.70, 800, 40, 6, 900, 35, 4, 0.60, 0.05, 1.5, 0.0),
    "ARTERY": (0.85, 1441, 290, 150, 1932, 275, 100, 1.60, 0.05, 0.0, 1.0),
    # venous blood: deoxygenated, paramagnetic: Δχ = Hct·Δχ_do·(1 − Y) ≈ 0.4 × 3.4 ppm × 0.3 ≈ 0.4 ppm (SI)
    "VEIN": (0.85, 1441, 120, 25, 1932, 60, 12, 1.60, 0.05, 0.40, 1.0),
    # other body parts (synth/body.py); de Bazelaire 2004 for liver, spleen, kidney cortex, prostate,
    # vertebral marrow and cartilage; disc, tendon and a QA phantom's doped gel are typical figures
    "LIVER": (0.70, 586, 46, 28, 809, 34, 18, 1.10, 0.20, 0.0, 0.10),
    "SPLEEN": (0.80, 1057, 79, 40, 1328, 61, 30, 0.80, 0.10, 0.0, 0.15),
    "KIDNEY": (0.85, 966, 87, 50, 1142, 76, 35, 2.00, 0.25, 0.0, 0.20),
    "PROSTATE": (0.80, 1317, 88, 50, 1597, 74, 40, 1.40, 0.10, 0.0, 0.03),
    "MARROW": (0.80, 549, 49, 15, 586, 49, 10, 0.30, 0.05, -0.5, 0.03),
    "CARTILAGE": (0.75, 1024, 30, 20, 1168, 27, 15, 1.40, 0.10, 0.0, 0.0),
    "TENDON": (0.40, 600, 6, 3, 800, 5, 2, 1.00, 0.70, 0.0, 0.0),
    "DISC": (0.85, 1100, 100, 50, 1300, 90, 40, 1.60, 0.10, 0.0, 0.0),
    "GEL": (1.00, 700, 350, 250, 900, 300, 150, 2.20, 0.02, 0.0, 0.0),
}
TISSUES: tuple[str, ...] = tuple(_TABLE)
BODY_TISSUES: tuple[str, ...] = TISSUES[TISSUES.index("LIVER"):]  # last in the table: see render._Context.params

# gadolinium concentration (mM) per tissue shortly after a standard dose (0.1 mmol/kg):
# blood pool ~0.5–1 mM, enhancing structures outside the blood-brain barrier less.
_GD = {"ARTERY": 0.9, "VEIN": 0.9, "DURA": 0.5, "CHOROID": 0.6, "PITUITARY": 0.6, "MUSCLE": 0.15, "FAT": 0.05,
       "LIVER": 0.4, "SPLEEN": 0.5, "KIDNEY": 0.8, "PROSTATE": 0.3, "MARROW": 0.1}
GD_R1 = 4.5  # /mM/s
GD_R2 = 5.0  # /mM/s

FAT_SUPPRESSION = 0.08  # residual fat signal after spectral fat saturation


@dataclass
class TissueParams:
    """Per-tissue parameters (arrays aligned with ``names``) at one field strength."""

    names: tuple[str, ...]
    pd: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t2s: np.ndarray
    adc: np.ndarray  # mm²/s
    fa: np.ndarray
    chi: np.ndarray
    cbv: np.ndarray
    is_fat: np.ndarray  # bool
    is_blood: np.ndarray  # 0 none, 1 artery, 2 vein

    def index(self, name: str) -> int:
        return self.names.index(name)


def tissue_params(
    field_strength: float,
    contrast: bool = False,
    gd_dose: float = 1.0,
    enhancing: dict[str, float] | None = None,
    t1_scale: float = 1.0,
    t2_scale: float = 1.0,
) -> TissueParams:
    """Parameters at ``field_strength`` (interpolated in T1 between 1.5 and 3 T), optionally post-gadolinium.

    ``enhancing`` adds lesion concentrations (e.g. {"TUMOR": 0.6}).
    """
    a = np.array([_TABLE[n] for n in TISSUES], dtype=np.float64)
    w = float(np.clip((field_strength - 1.5) / 1.5, -0.3, 1.0))
    pd = a[:, 0]
    t1 = (a[:, 1] * (1 - w) + a[:, 4] * w) * t1_scale
    t2 = (a[:, 2] * (1 - w) + a[:, 5] * w) * t2_scale
    t2s = a[:, 3] * (1 - w) + a[:, 6] * w
    if contrast:
        conc = dict(_GD)
        conc.update(enhancing or {})
        c = np.array([conc.get(n, 0.0) for n in TISSUES]) * gd_dose
        t1 = 1.0 / (1.0 / t1 + GD_R1 * c / 1000.0)
        t2 = 1.0 / (1.0 / t2 + GD_R2 * c / 1000.0)
    names = TISSUES
    is_fat = np.array([n == "FAT" for n in names])
    is_blood = np.array([1 if n == "ARTERY" else 2 if n == "VEIN" else 0 for n in names])
    return TissueParams(
        names=names,
        pd=pd,
        t1=t1,
        t2=t2,
        t2s=np.minimum(t2s, t2),
        adc=a[:, 7] * 1e-3,
        fa=a[:, 8],
        chi=a[:, 9],
        cbv=a[:, 10],
        is_fat=is_fat,
        is_blood=is_blood,
    )


# ---------------------------------------------------------------- signal equations


def spin_echo(p: TissueParams, tr: float, te: float) -> np.ndarray:
    """S = PD (1 − e^{−TR/T1}) e^{−TE/T2}."""
    return p.pd * (1 - np.exp(-tr / p.t1)) * np.exp(-te / p.t2)


def inversion_recovery(p: TissueParams, tr: float, te: float, ti: float) -> np.ndarray:
    """Magnitude IR: S = PD |1 − 2e^{−TI/T1} + e^{−TR/T1}| e^{−TE/T2}."""
    return p.pd * np.abs(1 - 2 * np.exp(-ti / p.t1) + np.exp(-tr / p.t1)) * np.exp(-te / p.t2)


def spoiled_gre(p: TissueParams, tr: float, te: float, flip_deg: float, t2star: bool = True) -> np.ndarray:
    """Ernst equation: S = PD sinα (1 − E1) / (1 − cosα E1) e^{−TE/T2*}."""
    a = np.deg2rad(flip_deg)
    e1 = np.exp(-tr / p.t1)
    decay = np.exp(-te / (p.t2s if t2star else p.t2))
    return p.pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * decay


def inflow_gre(p: TissueParams, tr: float, te: float, flip_deg: float, artery: float, vein: float) -> np.ndarray:
    """Spoiled GRE with inflow: blood flowing into the slice has not felt the earlier pulses.

    ``artery`` and ``vein`` are the fractions of each vessel's spins that arrive fresh within a TR: fast arterial
    blood replaces a thin 2-D slice within a TR or two, so vessels shine in a 2-D localiser before any contrast
    agent; slow veins and a thick 3-D slab refresh far less.
    """
    stationary = spoiled_gre(p, tr, te, flip_deg)
    fresh = p.pd * np.sin(np.deg2rad(flip_deg)) * np.exp(-te / p.t2s)
    f = np.where(p.is_blood == 1, artery, np.where(p.is_blood == 2, vein, 0.0))
    return (1 - f) * stationary + f * np.maximum(fresh, stationary)


# bound (macromolecular) pool of each tissue relative to white matter's (WM f ≈ 0.13, GM ≈ 0.06: Sled JG &
# Pike GB, MRM 2001;46:923); free fluids, fat and blood have almost none. Lesions lose myelin, so less than WM.
_MT_RELATIVE = {"WM": 1.0, "GM": 0.5, "MUSCLE": 0.75, "DURA": 0.7, "CHOROID": 0.2, "PITUITARY": 0.5, "MS": 0.5,
                "EDEMA": 0.3, "TUMOR": 0.4, "STROKE": 0.5, "BLEED": 0.3, "LIVER": 0.6, "SPLEEN": 0.4,
                "KIDNEY": 0.4, "PROSTATE": 0.5, "MARROW": 0.2, "CARTILAGE": 0.9, "TENDON": 1.0, "DISC": 0.5}


def incidental_mt(p: TissueParams, wm_loss: float) -> np.ndarray:
    """Per-tissue signal factor of the magnetisation transfer a multi-slice spin-echo train causes by itself.

    The refocusing pulses of the other slices are off-resonance for this one: they saturate the bound pool,
    which passes the saturation to free water by exchange (Melki PS & Mulkern RV, MRM 1992;24:189). White
    matter loses ``wm_loss`` of its signal, other tissues in proportion to their bound pool: grey matter
    becomes brighter than white in T2, PD and FLAIR images than the relaxation times alone make it.
    """
    return 1.0 - wm_loss * np.array([_MT_RELATIVE.get(n, 0.0) for n in p.names])


def mprage(
    p: TissueParams,
    ti: float,
    tr: float,
    flip_deg: float,
    echo_spacing: float = 8.0,
    n_echoes: int = 176,
    te: float = 3.0,
) -> np.ndarray:
    """MPRAGE-like: steady state of inversion → spoiled GRE readout train → recovery (Deichmann 2000).

    The centre of k-space is acquired mid-train; the signal is the longitudinal
    magnetisation there, which carries the T1 weighting of the inversion.
    """
    a = np.deg2rad(flip_deg)
    t1 = p.t1
    e1 = np.exp(-echo_spacing / t1)
    ca = np.cos(a)
    # readout train approaches the GRE steady state mss with rate e1*cos(a)
    mss = (1 - e1) / (1 - ca * e1)
    t_train = n_echoes * echo_spacing
    ti_eff = max(ti - t_train / 2, 10.0)
    td = max(tr - ti - t_train / 2, 10.0)
    ek = (e1 * ca) ** n_echoes
    # solve the periodic steady state for the magnetisation before inversion (m0)
    # m0 -> inversion: -m0 -> recovery for ti_eff -> train -> recovery td -> m0
    eti = np.exp(-ti_eff / t1)
    etd = np.exp(-td / t1)
    # after recovery to start of train: ms = 1 - (1 + m0) eti ; after train: me = mss + (ms - mss) ek
    # after td: m0 = 1 - (1 - me) etd  => linear in m0
    # m0 = 1 - etd + etd*(mss + (1 - eti - mss) ek) - etd*ek*eti*m0
    m0 = (1 - etd + etd * (mss + (1 - eti - mss) * ek)) / (1 + etd * ek * eti)
    ms = 1 - (1 + m0) * eti
    half = (e1 * ca) ** (n_echoes / 2)
    mz_center = mss + (ms - mss) * half
    return p.pd * np.abs(mz_center) * np.sin(a) * np.exp(-te / p.t2s)


def bssfp(p: TissueParams, tr: float, te: float, flip_deg: float) -> np.ndarray:
    """Balanced SSFP on resonance: S = PD sinα (1−E1) / (1 − (E1−E2)cosα − E1E2) e^{−TE/T2}."""
    a = np.deg2rad(flip_deg)
    e1 = np.exp(-tr / p.t1)
    e2 = np.exp(-tr / p.t2)
    return p.pd * np.sin(a) * (1 - e1) / (1 - (e1 - e2) * np.cos(a) - e1 * e2) * np.exp(-te / p.t2)


def diffusion(s0: np.ndarray, adc: np.ndarray, b: float) -> np.ndarray:
    """S = S0 e^{−b·ADC} (b in s/mm², ADC in mm²/s)."""
    return s0 * np.exp(-b * adc)


def tof_inflow(p: TissueParams, tr: float, te: float, flip_deg: float, mt: float = 0.7) -> np.ndarray:
    """TOF: stationary tissue saturated by short TR (and MT pulses); arterial blood arrives fully relaxed.

    Venous blood is pre-saturated by a superior saturation band.
    """
    # fat: short T1 keeps it bright, partly cancelled at the opposed-phase TE most TOF protocols use
    s = spoiled_gre(p, tr, te, flip_deg) * np.where(p.is_fat, 0.45, mt)
    a = np.deg2rad(flip_deg)
    fresh = p.pd * np.sin(a) * np.exp(-te / p.t2s) * 0.9
    s = np.where(p.is_blood == 1, fresh, s)
    s = np.where(p.is_blood == 2, s * 0.3, s)
    return s


def gd_concentration(names: tuple[str, ...], contrast: bool, enhancing: dict[str, float] | None = None) -> np.ndarray:
    if not contrast:
        return np.zeros(len(names))
    conc = dict(_GD)
    conc.update(enhancing or {})
    return np.array([conc.get(n, 0.0) for n in names])


def dsc_signal_ratio(cbv: np.ndarray, concentration: np.ndarray, te: float, k: float = 450.0) -> np.ndarray:
    """DSC: S(t)/S0 = exp(−TE·ΔR2*(t)), ΔR2* = k·CBV·C(t) in 1/s with C normalised to 1 at the arterial peak.

    k is chosen so that grey matter (CBV ≈ 4.5 %) loses ~40 % of its signal at the peak at TE 30 ms,
    as in clinical DSC at 3 T.
    """
    return np.exp(-te / 1000.0 * k * cbv[..., None] * concentration)


def gamma_variate(t: np.ndarray, t0: float, alpha: float = 3.0, beta: float = 1.5, peak: float = 1.0) -> np.ndarray:
    """Bolus passage (first pass) plus a small recirculation tail: arterial concentration over time (s)."""
    x = np.clip(t - t0, 0, None)
    g = x**alpha * np.exp(-x / beta)
    tmax = alpha * beta
    g = g / (tmax**alpha * np.exp(-alpha))
    tail = 0.12 * (1 - np.exp(-x / 6.0)) * np.exp(-x / 200.0)
    return peak * (g + tail)


def field_tesla_gamma() -> float:
    """Gyromagnetic ratio γ/2π in Hz/T."""
    return 42.577e6
