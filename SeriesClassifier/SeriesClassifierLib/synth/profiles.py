"""Named site profiles: which scanner, which naming habits, which mess.

A profile imitates one kind of site (vendor, model, field strength, software
generation, storage habit, naming grammar, parameter habits and how untidy its
archive is). ``PROFILES`` holds all of them; ``HOLDOUT_PROFILES`` names the
sites that training must never see, so evaluation measures a new site.
docs/PROFILES.md describes each profile in prose.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mess:
    """Per-series probabilities of the untidiness real archives have."""

    empty_description: float = 0.03  # SeriesDescription present but empty
    protocol_only: float = 0.03  # SeriesDescription tag absent, ProtocolName kept
    wrong_description: float = 0.06  # copied protocol: says pre on post, T1 on FLAIR, ...
    abbreviated: float = 0.10  # shortened tokens
    missing_optional: float = 0.10  # per optional tag (EchoTrainLength, InversionTime, SequenceName, ...)
    anonymised_agent: float = 0.10  # ContrastBolusAgent replaced by a placeholder on post series
    missing_agent: float = 0.10  # ContrastBolusAgent absent on post series
    strip_descriptions: float = 0.0  # both SeriesDescription and ProtocolName removed (anonymised data)
    reexported: float = 0.0  # ImageType rewritten to DERIVED\\SECONDARY by a workstation or PACS re-export


@dataclass(frozen=True)
class Profile:
    name: str
    imitates: str
    vendor: str  # SIEMENS | GE | PHILIPS | CANON | UIH | HITACHI: selects the grammar in vendors.py
    manufacturer: str  # the DICOM Manufacturer string
    model: str
    field_strength: float
    software_versions: str
    grammar: str  # naming variant inside the vendor grammar (see vendors.py)
    # software generation: selects the header habits in habits.py (Siemens VB | VE | XA, GE LX | DV | MR29 |
    # MR30, Philips R2 | R3 | R5 | R11, Canon TOSHIBA | CANON, UIH, HITACHI)
    generation: str = ""
    language: str = "en"  # en | de | fr | es: contrast and plane words
    enhanced_rate: float = 0.0  # share of series written as Enhanced MR multi-frame
    mosaic_rate: float = 0.0  # share of EPI series (DWI, BOLD, DSC, ASL raw) written as Siemens mosaic
    rescale: bool = False  # writes RescaleSlope/Intercept on magnitude images (Philips habit)
    matrix_2d: tuple[int, ...] = (256, 320)  # in-plane matrices of 2-D anatomical series
    matrix_3d: tuple[int, ...] = (256,)
    thickness_2d: tuple[float, ...] = (5.0,)
    noise_scale: tuple[float, float] = (0.8, 1.2)
    oblique_rate: float = 0.07  # share of 2-D series angled 25–45° (AC-PC, hippocampus)
    coils: tuple[str, ...] = ("HEAD",)
    contrast_agents: tuple[str, ...] = ("GADOVIST",)
    institution: str = "Synthetic Hospital"
    site_prefix: str = ""  # prepended to some protocol names (e.g. "NEURO_")
    study_weights: dict = field(default_factory=dict)  # study type -> relative weight
    mess: Mess = field(default_factory=Mess)
    holdout: bool = False
    site_only: bool = False  # neither training nor the standard held-out set: a "new site" for adaptation studies


_CLINICAL = {"routine": 4, "stroke": 2, "tumour": 3, "iac": 1.5, "mra": 1, "research": 1.5}
_RESEARCH = {"routine": 1, "research": 5, "tumour": 1}

_PROFILE_LIST = [
    Profile(
        name="siemens_skyra_3t", generation="VE",
        imitates="Siemens MAGNETOM Skyra 3T, syngo MR E11, classic single-frame files, EPI as mosaics",
        vendor="SIEMENS", manufacturer="SIEMENS", model="Skyra", field_strength=3.0,
        software_versions="syngo MR E11", grammar="syngo", language="en", mosaic_rate=0.85,
        matrix_2d=(320, 384, 512), matrix_3d=(256,), thickness_2d=(4.0, 5.0),
        coils=("HeadNeck_20", "Head_32"), contrast_agents=("Gadovist", "GADOVIST 1.0", "Dotarem"),
        institution="Synthetic University Hospital", study_weights=_CLINICAL,
    ),
    Profile(
        name="siemens_aera_15t", generation="VE",
        imitates="Siemens MAGNETOM Aera 1.5T, syngo MR E11, German site (KM = Kontrastmittel), mosaics",
        vendor="SIEMENS", manufacturer="SIEMENS", model="Aera", field_strength=1.5,
        software_versions="syngo MR E11", grammar="syngo", language="de", mosaic_rate=0.7,
        matrix_2d=(256, 320), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("HeadNeck_20", "HE1-4"), contrast_agents=("Gadovist", "Dotarem", "KM"),
        institution="Synthetisches Klinikum", site_prefix="NR_", noise_scale=(0.9, 1.4), study_weights=_CLINICAL,
        mess=Mess(wrong_description=0.08, abbreviated=0.15),
    ),
    Profile(
        name="siemens_xa_vida_3t", generation="XA",
        imitates="Siemens MAGNETOM Vida 3T, syngo MR XA50, Enhanced MR multi-frame by default",
        vendor="SIEMENS", manufacturer="Siemens Healthineers", model="MAGNETOM Vida", field_strength=3.0,
        software_versions="syngo MR XA50", grammar="xa", language="en", enhanced_rate=0.85,
        matrix_2d=(320, 384), matrix_3d=(256,), thickness_2d=(3.0, 4.0, 5.0),
        coils=("HeadNeck_64", "Head_32"), contrast_agents=("Gadovist", "Clariscan"),
        institution="Synthetic Imaging Centre", study_weights=_CLINICAL,
    ),
    Profile(
        name="ge_signa_premier_3t", generation="MR29",
        imitates="GE SIGNA Premier 3T, MR29, 'Ax T2 FSE' style names, classic files",
        vendor="GE", manufacturer="GE MEDICAL SYSTEMS", model="SIGNA Premier", field_strength=3.0,
        software_versions="29\\LX\\MR Software release:MR29.1_EA_2040.a", grammar="ge_title", language="en",
        matrix_2d=(256, 320, 384), matrix_3d=(256,), thickness_2d=(4.0, 5.0),
        coils=("48HAP", "HNU"), contrast_agents=("MULTIHANCE", "Gadavist", "DOTAREM"),
        institution="Synthetic Medical Center", study_weights=_CLINICAL,
    ),
    Profile(
        name="ge_optima_15t", generation="DV",
        imitates="GE Optima MR450w 1.5T, DV26, community hospital, terse upper-case names",
        vendor="GE", manufacturer="GE MEDICAL SYSTEMS", model="Optima MR450w", field_strength=1.5,
        software_versions="26\\LX\\MR Software release:DV26.0_R03_1831.b", grammar="ge_upper", language="en",
        matrix_2d=(256, 288), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("HNS Head", "8HRBRAIN"), contrast_agents=("MAGNEVIST", "OMNISCAN", "GAD"),
        institution="Synthetic Community Hospital", noise_scale=(1.0, 1.5), study_weights=_CLINICAL,
        mess=Mess(empty_description=0.05, wrong_description=0.08, missing_agent=0.2),
    ),
    Profile(
        name="philips_ingenia_3t", generation="R5",
        imitates="Philips Ingenia 3T, R5.7, Enhanced MR multi-frame, rescaled pixel values",
        vendor="PHILIPS", manufacturer="Philips", model="Ingenia", field_strength=3.0,
        software_versions="5.7.1\\5.7.1.2", grammar="philips", language="en", enhanced_rate=0.85, rescale=True,
        matrix_2d=(288, 320, 400), matrix_3d=(240, 256), thickness_2d=(4.0, 5.0),
        coils=("dS Head 32ch", "dS HeadNeckSpine"), contrast_agents=("Gadovist", "ProHance"),
        institution="Synthetic Academic Medical Centre", study_weights=_CLINICAL,
    ),
    Profile(
        name="philips_achieva_15t", generation="R3",
        imitates="Philips Achieva 1.5T, R3.2, classic single-frame files, rescaled pixel values, Dutch/English",
        vendor="PHILIPS", manufacturer="Philips Medical Systems", model="Achieva", field_strength=1.5,
        software_versions="3.2.3\\3.2.3.2", grammar="philips_old", language="en", rescale=True,
        matrix_2d=(256, 288), matrix_3d=(240, 256), thickness_2d=(5.0, 6.0),
        coils=("SENSE-Head-8", "SENSE-NV-16"), contrast_agents=("Dotarem", "Gd"),
        institution="Synthetisch Ziekenhuis", noise_scale=(0.9, 1.4), study_weights=_CLINICAL,
    ),
    Profile(
        name="anonymised_research", generation="VE",
        imitates="Siemens Prisma 3T research data set after anonymisation: descriptions stripped, mosaics",
        vendor="SIEMENS", manufacturer="SIEMENS", model="Prisma", field_strength=3.0,
        software_versions="syngo MR E11", grammar="syngo", language="en", mosaic_rate=0.9,
        matrix_2d=(256, 320), matrix_3d=(256,), thickness_2d=(3.0, 4.0),
        coils=("Head_32", "HeadNeck_64"), contrast_agents=("Gadovist",),
        institution="", study_weights=_RESEARCH,
        mess=Mess(strip_descriptions=0.85, missing_optional=0.15, anonymised_agent=0.5),
    ),
    Profile(
        name="siemens_trio_3t_vb17", generation="VB",
        imitates="Siemens MAGNETOM TrioTim 3T, syngo MR B17 (VB17), research hospital, EPI as mosaics, "
                 "SE\\EP diffusion",
        vendor="SIEMENS", manufacturer="SIEMENS", model="TrioTim", field_strength=3.0,
        software_versions="syngo MR B17", grammar="syngo", language="en", mosaic_rate=0.9,
        matrix_2d=(256, 320, 384), matrix_3d=(256,), thickness_2d=(4.0, 5.0),
        coils=("HeadMatrix", "32Ch_Head"), contrast_agents=("Magnevist", "Gadovist"),
        institution="Synthetic Brain Imaging Centre", study_weights={**_CLINICAL, "research": 4},
    ),
    Profile(
        name="ge_signa_architect_3t", generation="MR30",
        imitates="GE SIGNA Architect 3T, MR30, 'Ax T2 FSE' style names, MPRAGE-style 3-D T1 next to BRAVO",
        vendor="GE", manufacturer="GE MEDICAL SYSTEMS", model="SIGNA Architect", field_strength=3.0,
        software_versions="30\\LX\\MR Software release:MR30.1_R01_2224.a", grammar="ge_title", language="en",
        matrix_2d=(256, 320, 384), matrix_3d=(256,), thickness_2d=(3.0, 4.0, 5.0),
        coils=("48HAP", "AIR 48 Head"), contrast_agents=("Gadavist", "CLARISCAN"),
        institution="Synthetic Neuroscience Institute", study_weights={**_CLINICAL, "research": 3},
    ),
    Profile(
        name="ge_signa_excite_15t_lx", generation="LX",
        imitates="GE Signa EXCITE/HDxt 1.5T, 12.x/LX era (Genesis habits): RM localisers and FLAIR without TI",
        vendor="GE", manufacturer="GE MEDICAL SYSTEMS", model="Signa HDxt", field_strength=1.5,
        software_versions="15\\LX\\MR Software release:15.0_M4_0910.a", grammar="ge_upper", language="en",
        matrix_2d=(256,), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("8HRBRAIN", "HEAD"), contrast_agents=("MAGNEVIST", "OMNISCAN"),
        institution="Synthetic District Hospital", noise_scale=(1.0, 1.5), study_weights=_CLINICAL,
        mess=Mess(empty_description=0.05, missing_agent=0.2),
    ),
    Profile(
        name="philips_intera_15t_r2", generation="R2",
        imitates="Philips Intera 1.5T, release 2.x, classic files, no b-value on non-diffusion images",
        vendor="PHILIPS", manufacturer="Philips Medical Systems", model="Intera", field_strength=1.5,
        software_versions="2.6.3\\2.6.3.4", grammar="philips_old", language="en", rescale=True,
        matrix_2d=(256,), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("SENSE-head-6", "SENSE-Head-8"), contrast_agents=("Magnevist", "Dotarem"),
        institution="Synthetic Regional Clinic", noise_scale=(1.0, 1.4), study_weights=_CLINICAL,
    ),
    Profile(
        name="toshiba_titan_3t", generation="TOSHIBA",
        imitates="Toshiba Vantage Titan 3T, V4.x (manufacturer TOSHIBA_MEC), classic files, b-value public only "
                 "when > 0",
        vendor="CANON", manufacturer="TOSHIBA_MEC", model="MRT200PP6", field_strength=3.0,
        software_versions="V4.50*R208", grammar="canon", language="en",
        matrix_2d=(256, 320, 384), matrix_3d=(256,), thickness_2d=(4.0, 5.0),
        coils=("Head SPEEDER", "Head 32ch"), contrast_agents=("Gadovist", "MAGNESCOPE"),
        institution="Synthetic Tokyo Clinic", study_weights=_CLINICAL,
    ),
    Profile(
        name="uih_umr780_3t", generation="UIH",
        imitates="United Imaging uMR 780 3T (manufacturer UIH), classic files",
        vendor="UIH", manufacturer="UIH", model="uMR 780", field_strength=3.0,
        software_versions="R006", grammar="uih", language="en",
        matrix_2d=(256, 320, 384), matrix_3d=(256,), thickness_2d=(4.0, 5.0),
        coils=("H_24", "HNU_48"), contrast_agents=("Gadovist", "Magnevist"),
        institution="Synthetic People's Hospital", study_weights=_CLINICAL,
    ),
    # held-out sites: never used for training
    Profile(
        name="canon_vantage_15t", generation="CANON",
        imitates="Canon Vantage Orian 1.5T, MPower, Enhanced MR multi-frame part of the time",
        vendor="CANON", manufacturer="CANON_MEC", model="Vantage Orian", field_strength=1.5,
        software_versions="V6.0", grammar="canon", language="en", enhanced_rate=0.5,
        matrix_2d=(256, 320), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("Head SPEEDER", "Atlas Head/Neck"), contrast_agents=("Gadovist", "MAGNESCOPE"),
        institution="Synthetic Regional Hospital", noise_scale=(0.9, 1.3), study_weights=_CLINICAL, holdout=True,
    ),
    Profile(
        name="ge_discovery_750_3t_fr", generation="DV",
        imitates="GE Discovery MR750 3T, DV25, French site ('AX T2 FLAIR GADO'), classic files",
        vendor="GE", manufacturer="GE MEDICAL SYSTEMS", model="DISCOVERY MR750", field_strength=3.0,
        software_versions="25\\LX\\MR Software release:DV25.0_R02_1549.b", grammar="ge_upper", language="fr",
        matrix_2d=(256, 320, 384), matrix_3d=(256,), thickness_2d=(4.0, 5.0),
        coils=("8HRBRAIN", "32Ch Head"), contrast_agents=("DOTAREM", "ARTIREM", "GADO"),
        institution="Hopital Synthetique", study_weights=_CLINICAL, holdout=True,
        mess=Mess(wrong_description=0.08, protocol_only=0.05),
    ),
    Profile(
        name="siemens_avanto_15t_es", generation="VB",
        imitates="Siemens MAGNETOM Avanto 1.5T, syngo B17 (older), Spanish site, classic files, few mosaics",
        vendor="SIEMENS", manufacturer="SIEMENS", model="Avanto", field_strength=1.5,
        software_versions="syngo MR B17", grammar="syngo", language="es", mosaic_rate=0.4,
        matrix_2d=(256, 320), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("HeadMatrix", "HEA;HEP"), contrast_agents=("Gadovist", "Dotarem"),
        institution="Hospital Sintetico", site_prefix="CR_", noise_scale=(1.0, 1.5), study_weights=_CLINICAL,
        holdout=True, mess=Mess(abbreviated=0.2),
    ),
    Profile(
        name="philips_elition_3t_r11", generation="R11",
        imitates="Philips Ingenia Elition 3T, R11, Enhanced MR for most studies (empty ScanningSequence), b=0 on "
                 "every classic image",
        vendor="PHILIPS", manufacturer="Philips", model="Ingenia Elition X", field_strength=3.0,
        software_versions="5.9.0\\5.9.0.1", grammar="philips", language="en", enhanced_rate=0.7, rescale=True,
        matrix_2d=(320, 400, 448), matrix_3d=(256, 288), thickness_2d=(3.0, 4.0),
        coils=("dS Head 32ch", "dS HeadNeck 20ch"), contrast_agents=("Gadovist", "Dotarem"),
        institution="Synthetic Clinique Universitaire", study_weights=_CLINICAL, holdout=True,
    ),
    Profile(
        name="hitachi_airis_03t", generation="HITACHI",
        imitates="Hitachi AIRIS Vento 0.3T open low-field scanner: long TEs, no EPI perfusion/fMRI/SWI, dual-echo FSE",
        vendor="HITACHI", manufacturer="Hitachi Medical Corporation", model="AIRIS Vento", field_strength=0.3,
        software_versions="V5.0F", grammar="hitachi", language="en",
        matrix_2d=(256,), matrix_3d=(192, 256), thickness_2d=(5.0, 6.0, 7.0),
        coils=("QD HEAD", "MA HEAD"), contrast_agents=("Magnevist", "Omniscan"),
        institution="Synthetic Open MRI Clinic", noise_scale=(1.2, 1.8), holdout=True,
        study_weights={"routine": 6, "stroke": 2, "tumour": 2, "iac": 1, "mra": 1},
    ),
    # a new site for the site-adaptation experiment (docs/SITE_ADAPTATION.md): never trained on
    Profile(
        name="canon_galan_3t_anon", generation="CANON",
        imitates="Canon Vantage Galan 3T whose archive went through an aggressive anonymiser: descriptions, "
                 "contrast agent and many optional tags (TI, ETL, sequence names) removed",
        vendor="CANON", manufacturer="CANON_MEC", model="Vantage Galan 3T", field_strength=3.0,
        software_versions="V7.0", grammar="canon", language="en", enhanced_rate=0.3,
        matrix_2d=(320, 384), matrix_3d=(256, 320), thickness_2d=(3.0, 4.0),
        coils=("Head/Neck 32ch",), contrast_agents=("Gadovist",),
        institution="", study_weights=_CLINICAL, site_only=True,
        mess=Mess(strip_descriptions=0.9, missing_optional=0.6, missing_agent=0.95, anonymised_agent=0.05),
    ),
    Profile(
        name="ge_signa_15t_reexport", generation="DV",
        imitates="GE SIGNA Explorer 1.5T whose studies reach the archive through a third-party workstation "
                 "that re-exports every image as DERIVED\\SECONDARY, terse upper-case names",
        vendor="GE", manufacturer="GE MEDICAL SYSTEMS", model="SIGNA Explorer", field_strength=1.5,
        software_versions="27\\LX\\MR Software release:DV27.0_R01_1845.b", grammar="ge_upper", language="en",
        matrix_2d=(256, 288), matrix_3d=(256,), thickness_2d=(5.0, 6.0),
        coils=("8HRBRAIN",), contrast_agents=("DOTAREM",),
        institution="Synthetic Imaging Partners", study_weights=_CLINICAL, site_only=True,
        mess=Mess(reexported=0.9),
    ),
]

PROFILES: dict[str, Profile] = {p.name: p for p in _PROFILE_LIST}
HOLDOUT_PROFILES: tuple[str, ...] = tuple(p.name for p in _PROFILE_LIST if p.holdout)
TRAINING_PROFILES: tuple[str, ...] = tuple(p.name for p in _PROFILE_LIST if not p.holdout and not p.site_only)
SITE_PROFILES: tuple[str, ...] = tuple(p.name for p in _PROFILE_LIST if p.site_only)


def get_profiles(names: list[str] | tuple[str, ...] | None = None) -> list[Profile]:
    """The profiles named (training profiles when None; "training"/"holdout" name the groups); clear errors."""
    if names is None:
        names = TRAINING_PROFILES
    groups = {"training": TRAINING_PROFILES, "holdout": HOLDOUT_PROFILES, "site": SITE_PROFILES}
    names = [n for name in names for n in groups.get(name, (name,))]
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        raise ValueError(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(PROFILES)}")
    return [PROFILES[n] for n in names]
