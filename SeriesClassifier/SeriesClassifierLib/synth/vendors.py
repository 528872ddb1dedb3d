"""Per-vendor naming grammars and header conventions.

A *technique* is what the scanner ran (``t2_tse``, ``t1_mprage``, ``swi_phase``…);
each maps to one vocabulary sequence code (see ``TECHNIQUES``) and, per vendor,
to the strings a real scanner of that make writes: SeriesDescription /
ProtocolName templates, SequenceName, ScanningSequence, SequenceVariant,
ScanOptions, ImageType and private tags. Sources: /work/shared/VENDOR_NAMING.md,
dcm2niix's vendor notes, and common clinical conventions. The templates are
seeds: ``style_name`` varies case, separators, abbreviations and language.

Template placeholders: ``{p}`` plane word, ``{c}`` contrast suffix (post only),
``{f}`` fat-suppression token (when fat suppressed), ``{m}`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .habits import epi_factor, vendor_header
from .profiles import Profile
from .spec import SeriesSpec


@dataclass(frozen=True)
class Technique:
    key: str
    code: str  # vocabulary sequence code (POST codes are chosen at spec time for T1)
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    acquisition: str  # MRAcquisitionType
    derived: bool = False
    epi: bool = False
    signed: bool = False  # phase-like images


def _t(key, code, ss, sv, acq, **kw) -> Technique:
    return Technique(key, code, tuple(ss.split("\\")), tuple(sv.split("\\")), acq, **kw)


TECHNIQUES: dict[str, Technique] = {
    t.key: t
    for t in [
        _t("scout", "SCOUT", "GR", "SP", "2D"),
        _t("scout_cal", "SCOUT", "GR", "SP", "3D"),
        _t("scout_mpr", "SCOUT", "GR", "SP", "3D", derived=True),
        _t("t1_se", "T1_2D_PRE", "SE", "SK\\SP", "2D"),
        _t("t1_flair", "T1_2D_PRE", "SE\\IR", "SK\\SP\\MP\\OSP", "2D"),
        _t("t1_3d_ir", "T1_3D_PRE", "GR\\IR", "SK\\SP\\MP", "3D"),
        _t("t1_3d_gre", "T1_3D_PRE", "GR", "SP\\SS", "3D"),
        _t("t1_mpr", "T1_3D_PRE", "GR\\IR", "SK\\SP\\MP", "3D", derived=True),
        _t("t2_tse", "T2_2D", "SE", "SK\\SP\\OSP", "2D"),
        _t("t2_3d", "T2_3D", "SE", "SK\\SP\\OSP", "3D"),
        _t("haste", "T2_HASTE", "SE", "SK\\SS\\SP", "2D"),
        _t("flair_2d", "FLAIR_2D", "SE\\IR", "SK\\SP\\MP\\OSP", "2D"),
        _t("flair_3d", "FLAIR_3D", "SE\\IR", "SK\\SP\\MP\\OSP", "3D"),
        _t("pd_tse", "PD", "SE", "SK\\SP\\OSP", "2D"),
        _t("t2star", "T2STAR_GRE", "GR", "SP", "2D"),
        _t("swi", "SWI", "GR", "SP", "3D", derived=True),
        _t("swi_mag", "SWI_MAG", "GR", "SP", "3D"),
        _t("swi_phase", "SWI_PHASE", "GR", "SP", "3D", signed=True),
        _t("swi_minip", "SWI_MINIP", "GR", "SP", "3D", derived=True),
        _t("dwi", "DWI", "EP", "SK\\SP", "2D", epi=True),
        _t("adc", "ADC", "EP", "SK\\SP", "2D", derived=True, epi=True),
        _t("dti", "DWI", "EP", "SK\\SP", "2D", epi=True),
        _t("fa", "DIFFUSION_DERIVED", "EP", "SK\\SP", "2D", derived=True, epi=True),
        _t("eadc", "DIFFUSION_DERIVED", "EP", "SK\\SP", "2D", derived=True, epi=True),
        _t("dsc", "PERFUSION_DSC", "EP", "SK\\SP", "2D", epi=True),
        _t("asl", "PERFUSION_ASL", "EP", "SK\\SP", "2D", epi=True),
        _t("asl_3d", "PERFUSION_ASL", "SE", "SK\\SP", "3D"),
        _t("asl_m0", "PERFUSION_ASL", "EP", "SK", "2D", epi=True),
        _t("asl_3d_m0", "PERFUSION_ASL", "SE", "SK", "3D"),
        _t("tof", "TOF_MRA", "GR", "SP\\OSP", "3D"),
        _t("mip", "MRA_MIP", "GR", "SP\\OSP", "3D", derived=True),
        _t("ciss", "CISS", "GR", "SS\\SP", "3D"),
        _t("bold", "FMRI_BOLD", "EP", "SK\\SP", "2D", epi=True),
        _t("fmap_mag", "FIELDMAP", "GR", "SP", "2D"),
        _t("fmap_phase", "FIELDMAP", "GR", "SP", "2D", signed=True),
        _t("fmap_b0", "FIELDMAP", "GR", "SP", "2D", signed=True),
        _t("fmap_sepi", "FIELDMAP", "EP", "SK", "2D", epi=True),
        _t("t2star_me", "T2STAR_GRE", "GR", "SP", "3D"),
        _t("t2star_me2d", "T2STAR_GRE", "GR", "SP", "2D"),  # 2-D multi-echo GRE (T2*/R2* mapping)
        _t("other_mt", "OTHER", "GR", "SP", "3D"),
        _t("other_t1map", "OTHER", "GR", "SP", "3D", derived=True),
        _t("other_svs", "OTHER", "SE", "SK", "2D"),
        # phase contrast (velocity encoded): no class of its own; 3-D PC angiography sets acquisition per spec
        _t("other_pc_mag", "OTHER", "GR", "SP", "2D"),
        _t("other_pc_phase", "OTHER", "GR", "SP", "2D", signed=True),
    ]
}

# --- descriptions -------------------------------------------------------------------------------------------------

_SIEMENS = {
    "t2star_me2d": ["gre_me_{p}", "t2star_map_{p}", "gre_2D_multi-echo_{p}", "R2star_{p}", "T2star_mapping_{p}"],
    "other_pc_mag": ["Brain {d} PhCon {k}", "pc_{k}_{p}", "flow_{k}_{p}", "PC_{k}", "{k}_fl{dl}_{p}"],
    "other_pc_phase": ["{parent}_P", "{parent}_P", "{parent}_PHASE"],
    "scout": ["localizer", "AAHead_Scout_32ch-head-coil", "AAHead_Scout", "localizer_3pl", "Localizer"],
    "scout_cal": ["AAHead_Scout_64ch-head-coil", "AutoAlign_Scout"],
    "scout_mpr": ["AAHead_Scout_MPR_{p}", "AAHead_Scout_32ch-head-coil_MPR_{p}"],
    "t1_se": ["t1_se_{p}{f}{c}", "t1_se_{p}_{m}{f}{c}", "t1_tse_{p}{f}{c}"],
    "t1_flair": ["t1_tirm_{p}{c}", "t1_tse_dark-fl_{p}{c}", "t1_flair_{p}{c}"],
    "t1_3d_ir": ["t1_mprage_{p}_p2_iso{c}", "t1_mprage_{p}{c}", "t1_mpr_{p}_iso{c}", "MPRAGE{c}"],
    "t1_3d_gre": ["t1_vibe_{p}{f}{c}", "t1_fl3d_{p}_iso{f}{c}"],
    "t1_mpr": ["{parent}_MPR_{p}", "{parent}_{p}_MPR"],
    "t2_tse": ["t2_tse_{p}", "t2_tse_{p}_{m}", "t2_tse_{p}_p2", "t2_blade_{p}"],
    "t2_3d": ["t2_space_{p}_p2_iso", "t2_spc_{p}_iso", "t2_space_{p}"],
    "haste": ["t2_haste_{p}", "HASTE_{p}", "t2_haste_{p}_bh"],
    "flair_2d": ["t2_tirm_{p}_dark-fluid", "t2_flair_{p}", "t2_tirm_{p}_dark-fluid{f}"],
    "flair_3d": ["t2_spc_da-fl_{p}_p2_iso", "t2_space_flair_{p}_iso", "t2_spcir_{p}_iso"],
    "pd_tse": ["pd_tse_{p}", "pd_tse_{p}{f}"],
    "t2star": ["t2_fl2d_{p}_hemo", "t2_gre_{p}", "t2_fl2d_{p}"],
    "swi": ["SWI_Images"],
    "swi_mag": ["Mag_Images"],
    "swi_phase": ["Pha_Images"],
    "swi_minip": ["mIP_Images(SW)"],
    "dwi": ["{parent}_TRACEW", "{parent}_TRACEW"],
    "adc": ["{parent}_ADC"],
    "dti": ["{parent}"],
    "fa": ["{parent}_FA", "{parent}_ColFA"],
    "eadc": ["{parent}_EXP"],
    "dsc": ["ep2d_perf_p2", "ep2d_perf", "perf_dsc_{p}"],
    "asl": ["ep2d_pasl", "ep2d_tra_pasl", "pasl_3d"],
    "asl_3d": ["tgse_pcasl_3d", "pcasl_3d_{p}"],
    "tof": ["tof_fl3d_{p}_p2_multi-slab", "tof_3d_multi-slab", "TOF_3D_{p}"],
    "mip": ["{parent}_MIP_SAG", "{parent}_MIP_COR", "{parent}_MIP_TRA", "<MIP Range>"],
    "ciss": ["ci3d_{p}_iso", "CISS_3D_{p}", "t2_ciss3d_{p}_iso"],
    "bold": ["ep2d_bold_moco", "ep2d_bold_rest", "rfMRI_REST_{p}"],
    "fmap_mag": ["gre_field_mapping", "gre_field_map"],
    "fmap_phase": ["gre_field_mapping", "gre_field_map"],
    "other_mt": ["gre_MT_{p}", "fl3d_MT_on"],
    "other_t1map": ["t1_map_vfa_T1_Images", "T1map_{p}"],
    "other_svs": ["svs_se_135_loc", "csi_se_loc_{p}"],
    "asl_m0": ["{parent}_M0", "pasl_m0", "pcasl_2d_m0", "ep2d_pasl_M0"],
    "asl_3d_m0": ["tgse_pcasl_M0", "pasl_3d_m0", "pcasl_3d_m0"],
    "fmap_b0": ["B0map", "b0_map"],
    "fmap_sepi": ["SpinEchoFieldMap_AP", "SpinEchoFieldMap_PA", "ep2d_se_fmap_PA", "dMRI_revPE_PA"],
    "t2star_me": ["gre_me_{p}", "gre_3D_multi-echo", "t2star_me_qsm_{p}", "qsm_gre_me_{p}"],
}
_SIEMENS_PARENT = {
    "dwi": ["ep2d_diff_3scan_trace_p2", "ep2d_diff_{p}_b1000", "ep2d_diff_3scan_trace_p2_s2"],
    "dti": ["ep2d_diff_mddw_20_p2", "DTI_30dir_{p}", "ep2d_diff_mddw_12"],
    "tof": ["tof_fl3d_tra_p2_multi-slab"],
    "t1_3d_ir": ["t1_mprage_sag_p2_iso"],
}

_GE = {
    "t2star_me2d": ["{p} MFGRE", "{p} T2* map", "{p} 2D mGRE", "T2* multi-echo", "{p} MFGRE R2*"],
    "other_pc_mag": ["{p} {d} PC {k}", "{p} Cine PC {k}", "PC {k}", "{p} FastPC {k}"],
    "other_pc_phase": ["{parent} Phase", "{p} PC {k} phase", "{parent}"],
    "scout": ["3-Plane Loc", "3Plane Loc SSFSE", "Localizer", "3-pl T2* FGRE"],
    "scout_cal": ["ASSET Cal", "Calibration", "PURE Cal"],
    "scout_mpr": ["Reformat {p} Loc"],
    "t1_se": ["{p} T1 SE{f}{c}", "{p} T1{f}{c}", "{p} T1 FSE{f}{c}"],
    "t1_flair": ["{p} T1 FLAIR{c}", "{p} T1 FLAIR{f}{c}", "{p} T1FLAIR{c}"],
    "t1_3d_ir": ["{p} 3D T1 BRAVO{c}", "{p} BRAVO{c}", "{p} 3D MPRAGE{c}"],
    "t1_3d_gre": ["{p} FSPGR 3D{f}{c}", "{p} 3D SPGR{c}", "{p} LAVA{f}{c}"],
    "t1_mpr": ["{parent} {p} Reformat", "REFORMAT {p}"],
    "t2_tse": ["{p} T2 FSE", "{p} T2 PROPELLER", "{p} T2", "{p} T2 FRFSE"],
    "t2_3d": ["{p} CUBE T2", "{p} T2 CUBE", "{p} 3D T2 CUBE"],
    "haste": ["{p} SSFSE", "{p} SSFSE T2", "{p} T2 SSFSE"],
    "flair_2d": ["{p} T2 FLAIR", "{p} FLAIR", "{p} T2FLAIR"],
    "flair_3d": ["{p} CUBE FLAIR", "{p} 3D FLAIR", "{p} T2 CUBE FLAIR"],
    "pd_tse": ["{p} PD FSE", "{p} PD"],
    "t2star": ["{p} T2* GRE", "{p} GRE", "{p} GRADIENT", "{p} T2*"],
    "swi": ["{p} SWAN", "{p} SWAN 3D", "SWAN"],
    "swi_mag": ["{p} SWAN Mag", "SWAN Magnitude"],
    "swi_phase": ["{p} SWAN Phase", "SWAN Filtered Phase"],
    "swi_minip": ["{p} SWAN mIP", "MinIP SWAN", "SWAN MinIP {p}"],
    "dwi": ["{p} DWI 1000b", "{p} DWI", "DIFFUSION {p} EPI b1000", "{p} FOCUS DWI b1000"],
    "adc": ["Apparent Diffusion Coefficient (mm2/s)", "{p} ADC", "ADC"],
    "dti": ["{p} DTI 25 dir", "DTI 30", "{p} DTI"],
    "fa": ["FA {p} DTI", "Fractional Aniso."],
    "eadc": ["Exponential Apparent Diffusion Coefficient", "eADC"],
    "dsc": ["{p} PERFUSION", "{p} GRE EPI PERF", "Perfusion DSC"],
    "asl": ["2D ASL", "{p} ASL"],
    "asl_3d": ["3D ASL", "3D ASL (non-contrast)", "3D pCASL"],
    "tof": ["{p} 3D TOF", "3D TOF COW", "{p} 3D TOF Circle of Willis"],
    "mip": ["{p} 3D TOF MIP", "MIP 3D TOF", "COW MIP", "TOF MIP {p}"],
    "ciss": ["{p} FIESTA", "{p} 3D FIESTA-C", "FIESTA IAC", "{p} FIESTA-C IAC"],
    "bold": ["fMRI rest", "{p} rs-fMRI", "BOLD EPI", "{p} fMRI"],
    "fmap_mag": ["B0 Map", "{p} B0MAP", "Fieldmap"],
    "fmap_phase": ["B0 Map", "{p} B0MAP", "Fieldmap"],
    "other_mt": ["{p} MT GRE", "MTC"],
    "other_t1map": ["T1 MAP", "{p} VFA T1map"],
    "other_svs": ["PROBE-P loc", "{p} PRESS loc"],
    "asl_m0": ["{p} ASL PD", "ASL M0"],
    "asl_3d_m0": ["3D ASL PD", "eASL PD reference"],
    "fmap_b0": ["B0 Map", "{p} B0MAP", "B0map Hz", "Field Map", "B0rf map"],
    "fmap_sepi": ["{p} EPI pepolar=1", "fMRI fieldmap PA", "DTI Reverse blip", "{p} rev PE b0"],
    "t2star_me": ["{p} 3D mGRE", "{p} Multi-Echo GRE", "QSM mGRE", "{p} SWAN multi echo"],
}

_PHILIPS = {
    "t2star_me2d": ["T2star_mFFE", "mFFE_{p}", "T2*_map_mFFE", "R2*_mFFE", "mFFE_T2star_{p}"],
    "other_pc_mag": ["QFlow_{k}", "Q-flow_{k}", "PCA_{k}", "PCA_{k}_{p}"],
    "other_pc_phase": ["{parent}", "{parent}", "{parent}_P"],
    "scout": ["Survey", "Survey_32ch_HeadCoil", "SURVEY", "3pl_Survey", "sSurvey"],
    "scout_cal": ["SmartBrain", "SENSE-ref", "Coil Survey SENSE"],
    "scout_mpr": ["SmartExam_{p}"],
    "t1_se": ["T1W_SE{f}{c}", "T1W_SE_{p}{f}{c}", "T1W/SE/1024{c}", "T1W_TSE_{p}{c}"],
    "t1_flair": ["T1W_IR_{p}{c}", "T1W_FLAIR{c}", "T1_IR{c}"],
    "t1_3d_ir": ["sT1W_3D_TFE{c}", "3D_T1W_TFE{c}", "T1W_3D_TFE_{p}{c}", "MPRAGE_S2 SENSE{c}"],
    "t1_3d_gre": ["T1W_3D_FFE{f}{c}", "3D_T1_FFE{c}", "mDIXON_3D{c}"],
    "t1_mpr": ["{parent}_MPR_{p}", "MPR_{p}_{parent}"],
    "t2_tse": ["T2W_TSE", "T2W_TSE_{p}", "WIP T2W_TSE", "T2_TSE_{p}"],
    "t2_3d": ["T2W_VISTA", "3D_T2W_VISTA", "VISTA_T2_{p}"],
    "haste": ["T2W_SSh_TSE", "SShTSE_{p}", "T2_SSH"],
    "flair_2d": ["T2W_FLAIR", "T2W_FLAIR_{p}", "FLAIR_{p}"],
    "flair_3d": ["VISTA_FLAIR", "3D_FLAIR_VISTA", "3D_BRAIN_VIEW_FLAIR", "3D_FLAIR"],
    "pd_tse": ["PDW_TSE", "PDW_TSE_{p}"],
    "t2star": ["T2*W_FFE", "T2* SENSE", "FFE_T2*", "T2*_FFE_{p}", "T2W/FE-EPI"],
    "swi": ["SWIp", "SWIp_{p}"],
    "swi_mag": ["SWIp_M", "SWIp_mag"],
    "swi_phase": ["SWIp_P", "SWIp_pha"],
    "swi_minip": ["SWIp_mIP", "mIP_SWIp"],
    "dwi": ["DWI", "DWI_SENSE", "DWI_b1000", "DWI_{p}"],
    "adc": ["dADC", "ADC_Map", "DWI_ADC", "dADC_{p}"],
    "dti": ["WIP DTI SENSE", "DTI_32", "DTI_high_iso"],
    "fa": ["DTI_FA", "FA", "dFA"],
    "eadc": ["dExpADC", "eADC"],
    "dsc": ["PERFUSION", "DSC_perf", "FE_EPI_perf", "perfusie"],
    "asl": ["pCASL", "ASL_pCASL", "pCASL_2D"],
    "asl_3d": ["pCASL_3D", "3D_ASL"],
    "tof": ["3D_TOF", "TOF_3D_multi-chunk", "Inflow_3D", "3D_TOF_{p}"],
    "mip": ["MIP_3D_TOF", "3D_TOF MIP", "MIP_{parent}"],
    "ciss": ["3D_bFFE", "BFFE_IAC", "3D_bFFE_{p}"],
    "bold": ["fMRI_rest", "FEEPI_BOLD", "rs_fMRI"],
    "fmap_mag": ["B0_map", "B0map"],
    "fmap_phase": ["B0_map", "B0map"],
    "other_mt": ["MTC_FFE", "MT_3D"],
    "other_t1map": ["T1_map", "VFA_T1map"],
    "other_svs": ["PRESS_loc", "SV_PRESS_144"],
    "asl_m0": ["pCASL_M0", "M0_pCASL", "ASL_M0"],
    "asl_3d_m0": ["pCASL_3D_M0", "3D_ASL_M0"],
    "fmap_b0": ["B0_map", "B0map_BH", "B0map", "{p}_B0map"],
    "fmap_sepi": ["DTI_revPE", "SE_EPI_PA", "fmap_topup", "b0_PA"],
    "t2star_me": ["mFFE_{p}", "3D_mFFE", "QSM_mFFE", "T2star_mFFE"],
}

_CANON = {
    "t2star_me2d": ["T2* map {p}", "FE2D multi echo", "mFFE2D {p}"],
    "other_pc_mag": ["PS {k}", "{d} PS {k} {p}", "Flow {k}"],
    "other_pc_phase": ["{parent} PHASE", "{parent}"],
    "scout": ["Locator", "LOC 3-plane", "locator"],
    "scout_cal": ["Map", "Coil map"],
    "scout_mpr": ["MPR {p} Locator"],
    "t1_se": ["T1W SE {p}{f}{c}", "T1 SE {p}{c}", "T1WI {p}{c}"],
    "t1_flair": ["T1 FLAIR {p}{c}", "T1W IR {p}{c}"],
    "t1_3d_ir": ["3D MPRAGE{c}", "MPRAGE {p}{c}", "3D T1 MPRAGE{c}"],
    "t1_3d_gre": ["3D T1 FFE{f}{c}", "FE3D T1 {p}{c}"],
    "t1_mpr": ["MPR {p}", "{parent} MPR {p}"],
    "t2_tse": ["T2W FSE {p}", "T2 FSE {p}", "T2WI {p}"],
    "t2_3d": ["3D T2 FSE", "3D mVox T2", "3D T2 {p}"],
    "haste": ["FASE {p}", "FASE2D {p}", "SS FASE {p}"],
    "flair_2d": ["FLAIR {p}", "T2 FLAIR {p}", "FLAIR"],
    "flair_3d": ["3D FLAIR", "3D mVox FLAIR", "3D FLAIR {p}"],
    "pd_tse": ["PDW FSE {p}", "PD {p}"],
    "t2star": ["FFE2D T2*", "T2* {p}", "T2*WI {p}"],
    "swi": ["FSBB", "SWI", "FSBB {p}"],
    "swi_mag": ["FSBB MAG", "SWI Mag"],
    "swi_phase": ["FSBB PHASE", "SWI Phase"],
    "swi_minip": ["FSBB mIP", "SWI MinIP"],
    "dwi": ["DWI", "DWI b1000 {p}", "DWI {p}"],
    "adc": ["ADC", "ADC map", "ADC {p}"],
    "dti": ["DTI", "DTI 32"],
    "fa": ["FA", "FA map"],
    "eadc": ["eADC", "exp ADC"],
    "dsc": ["Perfusion", "DSC", "EPI Perfusion"],
    "asl": ["ASL", "ASL {p}"],
    "asl_3d": ["3D ASL", "3D pCASL"],
    "tof": ["TOF", "3D TOF", "TOF {p}"],
    "mip": ["TOF MIP", "MIP", "MIP {p}"],
    "ciss": ["3D TrueSSFP", "TrueSSFP IAC", "3D TrueSSFP {p}"],
    "bold": ["BOLD", "fMRI BOLD"],
    "fmap_mag": ["B0 map", "Field map"],
    "fmap_phase": ["B0 map", "Field map"],
    "other_mt": ["MTC", "MT FE3D"],
    "other_t1map": ["T1 map", "T1 mapping"],
    "other_svs": ["SVS loc", "MRS locator"],
    "asl_m0": ["ASL M0", "ASL PD"],
    "asl_3d_m0": ["3D ASL M0"],
    "fmap_b0": ["B0 map", "Field map Hz"],
    "fmap_sepi": ["EPI reverse PE", "SE EPI PA"],
    "t2star_me": ["3D mFFE", "multi echo FE3D", "QSM {p}"],
}

_UIH = {
    "scout": ["localizer", "3plane_loc", "Localizer"], "scout_cal": ["calibration", "coil_cal"],
    "scout_mpr": ["localizer_MPR_{p}"],
    "t1_se": ["t1_fse_{p}{f}{c}", "t1_se_{p}{c}"], "t1_flair": ["t1_flair_{p}{c}", "t1_fse_ir_{p}{c}"],
    "t1_3d_ir": ["t1_gre_fsp_3d_ir_{p}{c}", "t1_mprage_{p}_iso{c}", "T1_3D_{p}{c}"],
    "t1_3d_gre": ["t1_gre_fsp_3d_{p}{f}{c}", "t1_quick3d_{p}{c}"], "t1_mpr": ["{parent}_MPR_{p}"],
    "t2_tse": ["t2_fse_{p}", "t2_fse_{p}_{m}", "T2_{p}"], "t2_3d": ["t2_fse_mx_3d_{p}", "t2_matrix_3d_{p}"],
    "haste": ["t2_fse_ssh_{p}", "t2_ssfse_{p}"], "flair_2d": ["t2_flair_{p}", "t2_fse_ir_{p}_dark-fluid"],
    "flair_3d": ["t2_flair_mx_3d_{p}", "flair_3d_{p}"], "pd_tse": ["pd_fse_{p}{f}"],
    "t2star": ["t2star_gre_{p}", "t2_gre_{p}"], "t2star_me": ["gre_me_3d_{p}", "qsm_gre_{p}"],
    "swi": ["swi_{p}", "SWI"], "swi_mag": ["swi_mag_{p}", "SWI_MAG"], "swi_phase": ["swi_pha_{p}", "SWI_PHA"],
    "swi_minip": ["swi_mip_{p}", "SWI_MinIP"], "dwi": ["dwi_epi_{p}_b1000", "DWI_{p}", "epi_dwi_{p}"],
    "adc": ["dwi_epi_{p}_ADC", "ADC"], "dti": ["dti_epi_{p}_30dir", "DTI"], "fa": ["dti_FA", "FA"],
    "eadc": ["dwi_eADC", "eADC"], "dsc": ["perf_epi_{p}", "DSC_perfusion"], "asl": ["asl_epi_{p}", "pcasl_2d"],
    "asl_3d": ["asl_3d_{p}", "pcasl_3d"], "asl_m0": ["asl_epi_M0"], "asl_3d_m0": ["asl_3d_M0"],
    "tof": ["tof_3d_{p}", "TOF_3D_multi-slab"], "mip": ["tof_3d_MIP", "MIP_{p}"],
    "ciss": ["t2_fiesta_3d_{p}", "3D_FIESTA"],
    "bold": ["bold_epi_rest", "fMRI_bold_{p}"], "fmap_mag": ["gre_fieldmap"], "fmap_phase": ["gre_fieldmap"],
    "fmap_b0": ["B0_map"], "fmap_sepi": ["epi_se_PA", "topup_PA"], "other_mt": ["gre_mt_{p}"],
    "other_t1map": ["t1_map_{p}"], "other_svs": ["svs_press_loc"],
    "t2star_me2d": ["gre_me_2d_{p}", "t2star_map_{p}"], "other_pc_mag": ["gre_pc_{k}_{p}", "pc_{k}"],
    "other_pc_phase": ["{parent}_P", "{parent}_pha"],
}

_HITACHI = {
    "scout": ["Scanogram", "Survey", "3-plane scano"], "scout_cal": ["Scanogram"], "scout_mpr": ["Scanogram {p}"],
    "t1_se": ["T1 SE {p}{c}", "T1WI {p}{c}", "T1 {p}{c}"], "t1_flair": ["T1 IR {p}{c}", "T1 FLAIR {p}{c}"],
    "t1_3d_ir": ["3D T1 RSSG {p}{c}", "MPRAGE {p}{c}"], "t1_3d_gre": ["3D T1 GE {p}{c}", "RSSG 3D {p}{c}"],
    "t1_mpr": ["MPR {p}"], "t2_tse": ["T2 FSE {p}", "T2WI {p}", "T2 DE {p}"], "t2_3d": ["3D T2 {p}"],
    "haste": ["SSFSE {p}"], "flair_2d": ["FLAIR {p}", "FLAIR", "FIR {p}"], "flair_3d": ["3D FLAIR"],
    "pd_tse": ["PD FSE {p}", "PD DE {p}"], "t2star": ["T2* GE {p}", "T2*WI {p}", "GE {p}"],
    "t2star_me": ["T2* GE multi echo"], "swi": ["BSI {p}"], "swi_mag": ["BSI mag"], "swi_phase": ["BSI phase"],
    "swi_minip": ["BSI mIP"], "dwi": ["DWI {p}", "DWI", "DWI b800"], "adc": ["ADC", "ADC map"], "dti": ["DTI"],
    "fa": ["FA"], "eadc": ["eADC"], "dsc": ["Perfusion"], "asl": ["ASL"], "asl_3d": ["3D ASL"], "asl_m0": ["ASL M0"],
    "asl_3d_m0": ["3D ASL M0"], "tof": ["TOF {p}", "3D TOF", "MRA TOF"], "mip": ["MRA MIP", "MIP {p}"],
    "ciss": ["3D BASG {p}", "BASG IAC"], "bold": ["BOLD"], "fmap_mag": ["B0 map"], "fmap_phase": ["B0 map"],
    "fmap_b0": ["B0 map"], "fmap_sepi": ["EPI PA"], "other_mt": ["MTC GE"], "other_t1map": ["T1 map"],
    "other_svs": ["MRS loc"], "t2star_me2d": ["T2* GE multi echo 2D", "T2* map {p}"],
    "other_pc_mag": ["PC {k} {p}", "Flow {k}"], "other_pc_phase": ["{parent} phase"],
}

_TEMPLATES = {"SIEMENS": _SIEMENS, "GE": _GE, "PHILIPS": _PHILIPS, "CANON": _CANON, "UIH": _UIH, "HITACHI": _HITACHI}

_PLANE_WORDS = {
    "SIEMENS": {"AXIAL": ["tra", "tra", "ax"], "SAGITTAL": ["sag"], "CORONAL": ["cor"]},
    "GE": {"AXIAL": ["Ax", "AX", "Axial"], "SAGITTAL": ["Sag", "SAG"], "CORONAL": ["Cor", "COR", "Coronal"]},
    "PHILIPS": {"AXIAL": ["TRA", "tra", "AX"], "SAGITTAL": ["SAG", "sag"], "CORONAL": ["COR", "cor"]},
    "CANON": {"AXIAL": ["AX", "Ax", "Axial"], "SAGITTAL": ["SAG", "Sag"], "CORONAL": ["COR", "Cor"]},
    "UIH": {"AXIAL": ["tra", "ax"], "SAGITTAL": ["sag"], "CORONAL": ["cor"]},
    "HITACHI": {"AXIAL": ["AX", "Ax"], "SAGITTAL": ["SAG", "Sag"], "CORONAL": ["COR", "Cor"]},
}
_PLANE_WORDS_LANG = {
    "fr": {"AXIAL": ["AX", "AXIAL", "AXIALE"], "SAGITTAL": ["SAG", "SAGITTAL"], "CORONAL": ["COR", "CORONAL"]},
    "es": {"AXIAL": ["AX", "AXIAL"], "SAGITTAL": ["SAG", "SAGITAL"], "CORONAL": ["COR", "CORONAL"]},
}
_CONTRAST_WORDS = {
    "en": ["+C", "_+C", " POST", "_post", " +Gd", " C+", " GAD", "_CE"],
    "de": ["_KM", "_+KM", "_nach_KM", "_KM", " KM"],
    "fr": [" GADO", " +GADO", " INJ", "_post_gado", " APRES INJ"],
    "es": [" CON", " +C", " CONTRASTE", " GD", "_con_gd"],
}
_PRE_WORDS = {"en": ["_pre", " PRE", " pre"], "de": ["_nativ", "_vor_KM"], "fr": [" SANS", " sans inj"],
              "es": [" SIN", " sin contraste"]}
_FS_WORDS = {"SIEMENS": ["_fs", "_FS"], "GE": [" FS", " FAT SAT"], "PHILIPS": ["_SPIR", "_SPAIR"],
             "CANON": [" FS", " FatSat"], "UIH": ["_fs", "_FS"], "HITACHI": [" FS", " FatSat"]}
# what a phase-contrast protocol is named after (the flow it measures), by ``pc_kind``
_PC_WORDS = {"csf": ["aqueduct", "CSF_flow", "csf", "Aqueduct", "CSF", "liquor"],
             "artery": ["carotids", "basilar", "flow", "ICA"], "venous": ["venous", "veno", "PCV", "sinus"],
             "angio": ["angio", "PCA", "MRA"]}
_ABBREV = [("FLAIR", "FL"), ("flair", "fl"), ("mprage", "mpr"), ("MPRAGE", "MPR"), ("_tse", "_ts"),
           ("DIFFUSION", "DIFF"), ("PERFUSION", "PERF"), ("Localizer", "Loc"), ("localizer", "loc"),
           ("SWAN", "SWN"), ("t2_", "T2"), ("dark-fluid", "DF"), ("Survey", "Surv"), ("3D TOF", "TOF")]


def plane_word(profile: Profile, plane: str, rng: np.random.Generator) -> str:
    # syngo protocol names keep tra/sag/cor whatever the site's language
    lang = _PLANE_WORDS_LANG.get(profile.language) if profile.vendor != "SIEMENS" else None
    words = lang or _PLANE_WORDS[profile.vendor]
    plane = plane if plane in words else "AXIAL"
    return str(rng.choice(words[plane]))


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def name_series(tech: str, spec: SeriesSpec, profile: Profile, rng: np.random.Generator) -> tuple[str, str]:
    """(SeriesDescription, ProtocolName) as the profile's scanner would write them, before the mess."""
    vendor = profile.vendor
    templates = _TEMPLATES[vendor]
    plane = spec.extra.get("base_plane", spec.orientation)
    parent = spec.extra.get("parent_protocol") or ""
    if not parent:
        parents = _SIEMENS_PARENT.get(tech) if vendor == "SIEMENS" else None
        parent = _pick(rng, parents) if parents else ""
    words = {
        "p": plane_word(profile, plane, rng),
        "c": _pick(rng, _CONTRAST_WORDS[profile.language]) if spec.contrast and tech != "dsc" else "",
        "f": _pick(rng, _FS_WORDS[vendor]) if spec.fat_suppressed and not TECHNIQUES[tech].epi else "",
        "m": str(spec.columns),
        "d": spec.acquisition,
        "dl": spec.acquisition.lower(),
        "k": _pick(rng, _PC_WORDS[spec.extra["pc_kind"]]) if spec.extra.get("pc_kind") else "",
    }
    words["parent"] = parent.format(**words) if parent else ""
    if (
        not spec.contrast
        and spec.sequence.startswith("T1_")
        and spec.extra.get("study_has_contrast")
        and rng.random() < 0.3
    ):
        words["c"] = _pick(rng, _PRE_WORDS[profile.language])
    template = _pick(rng, templates[tech])
    desc = template.format(**words).strip("_ ")
    protocol = spec.extra.get("parent_protocol") or desc
    if vendor == "SIEMENS" and tech.startswith("swi") and not spec.extra.get("parent_protocol"):
        protocol = f"swi_{words['p']}"
    if vendor == "SIEMENS" and tech in ("dwi", "adc", "fa", "eadc", "dti", "mip") and parent:
        protocol = words["parent"]
    if profile.site_prefix and rng.random() < 0.5:
        protocol = profile.site_prefix + protocol
    return style_name(desc, profile, rng), protocol


def style_name(name: str, profile: Profile, rng: np.random.Generator) -> str:
    """Case and separator habits of the profile's grammar."""
    if profile.grammar == "ge_upper":
        name = name.upper().replace(" ", "_").replace("__", "_")
    elif profile.grammar == "xa" and rng.random() < 0.2 or profile.grammar == "philips_old" and rng.random() < 0.3:
        name = name.replace("_", " ")
    if rng.random() < profile.mess.abbreviated:
        for long, short in _ABBREV:
            name = name.replace(long, short)
    if name and rng.random() < 0.04:  # a repeated or renumbered acquisition
        name += _pick(rng, ["_2", " 2", " (2)", "_rep", "_NEW"])
    return name.strip()


# --- header conventions -------------------------------------------------------------------------------------------

_FS_OPTION = {"SIEMENS": ["FS", "FS", "SFS"], "GE": ["FS", "FAT_SAT"], "PHILIPS": ["FS", "FS", "SPIR", "SPAIR"],
              "CANON": ["FAT_SAT", "FS"], "UIH": ["FS"], "HITACHI": ["FS", "FAT_SAT"]}
_FS_TOKENS = {"FS", "SFS", "FAT_SAT", "SPIR", "SPAIR"}


def _image_type(tech: str, vendor: str, spec: SeriesSpec) -> tuple[str, ...]:
    mosaic = spec.storage == "mosaic"
    if vendor == "SIEMENS":
        table = {
            "scout_mpr": "DERIVED\\PRIMARY\\MPR\\NORM\\DIS2D", "t1_mpr": "DERIVED\\PRIMARY\\MPR\\ND\\NORM",
            "swi": "DERIVED\\PRIMARY\\M\\SWI\\NORM\\DIS2D", "swi_mag": "ORIGINAL\\PRIMARY\\M\\ND\\NORM",
            "swi_phase": "ORIGINAL\\PRIMARY\\P\\ND", "swi_minip": "DERIVED\\PRIMARY\\MNIP\\SWI\\NORM\\DIS2D",
            "dwi": "DERIVED\\PRIMARY\\DIFFUSION\\TRACEW\\ND\\NORM", "adc": "DERIVED\\PRIMARY\\DIFFUSION\\ADC\\ND\\NORM",
            "dti": "ORIGINAL\\PRIMARY\\DIFFUSION\\NONE\\ND", "fa": "DERIVED\\PRIMARY\\DIFFUSION\\FA\\ND",
            "eadc": "DERIVED\\PRIMARY\\DIFFUSION\\EXP\\ND", "dsc": "ORIGINAL\\PRIMARY\\PERFUSION\\NONE\\ND",
            "asl": "ORIGINAL\\PRIMARY\\ASL\\NONE\\ND", "asl_3d": "ORIGINAL\\PRIMARY\\ASL\\NONE\\ND",
            "mip": "DERIVED\\SECONDARY\\PROJECTION IMAGE\\CSA MIP", "bold": "ORIGINAL\\PRIMARY\\M\\ND\\MOSAIC",
            "fmap_phase": "ORIGINAL\\PRIMARY\\P\\ND", "other_t1map": "DERIVED\\PRIMARY\\T1 MAP\\ND",
        }
        it = table.get(tech, "ORIGINAL\\PRIMARY\\M\\ND\\NORM")
        if tech == "dwi" and mosaic:
            it = "ORIGINAL\\PRIMARY\\DIFFUSION\\NONE\\ND"
        if mosaic and not it.endswith("MOSAIC"):
            it += "\\MOSAIC"
        if not mosaic and it.endswith("\\MOSAIC"):
            it = it[: -len("\\MOSAIC")]
    elif vendor == "GE":
        table = {
            "scout_mpr": "DERIVED\\SECONDARY\\REFORMATTED", "t1_mpr": "DERIVED\\SECONDARY\\REFORMATTED\\AVERAGE",
            "swi": "ORIGINAL\\PRIMARY\\OTHER", "swi_minip": "DERIVED\\SECONDARY\\REFORMATTED\\MINIP",
            "swi_phase": "ORIGINAL\\PRIMARY\\PHASE", "adc": "DERIVED\\PRIMARY\\ADC",
            "fa": "DERIVED\\PRIMARY\\FA", "eadc": "DERIVED\\PRIMARY\\EADC",
            "mip": "DERIVED\\SECONDARY\\REFORMATTED\\MIP",
            "fmap_phase": "ORIGINAL\\PRIMARY\\PHASE", "other_t1map": "DERIVED\\PRIMARY\\T1MAP",
            "asl_3d": "ORIGINAL\\PRIMARY\\ASL", "swi_mag": "ORIGINAL\\PRIMARY\\OTHER",
            "other_pc_phase": "ORIGINAL\\PRIMARY\\PHASE",
        }
        it = table.get(tech, "ORIGINAL\\PRIMARY\\OTHER")
    elif vendor == "PHILIPS":
        table = {
            "t2_tse": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE", "t1_se": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE",
            "pd_tse": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE", "haste": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE",
            "t2_3d": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE", "flair_2d": "ORIGINAL\\PRIMARY\\M_IR\\M\\IR",
            "flair_3d": "ORIGINAL\\PRIMARY\\M_IR\\M\\IR", "t1_flair": "ORIGINAL\\PRIMARY\\M_IR\\M\\IR",
            "swi": "DERIVED\\PRIMARY\\SWI\\M\\FFE", "swi_phase": "ORIGINAL\\PRIMARY\\PHASE MAP\\P\\FFE",
            "swi_minip": "DERIVED\\PRIMARY\\MINIP\\M\\FFE", "dwi": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE",
            "dti": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE", "adc": "DERIVED\\PRIMARY\\ADC\\ADC",
            "fa": "DERIVED\\PRIMARY\\FA\\FA", "eadc": "DERIVED\\PRIMARY\\EADC\\EADC",
            "mip": "DERIVED\\SECONDARY\\PROJECTION IMAGE\\MIP\\FFE", "t1_mpr": "DERIVED\\SECONDARY\\MPR\\M\\FFE",
            "scout_mpr": "DERIVED\\SECONDARY\\MPR\\M\\FFE", "fmap_phase": "ORIGINAL\\PRIMARY\\PHASE MAP\\P\\FFE",
            "other_t1map": "DERIVED\\PRIMARY\\T1 MAP\\T1\\FFE", "asl_3d": "ORIGINAL\\PRIMARY\\M_SE\\M\\SE",
        }
        it = table.get(tech, "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE")
    else:
        table = {
            "adc": "DERIVED\\SECONDARY\\ADC", "fa": "DERIVED\\SECONDARY\\FA", "eadc": "DERIVED\\SECONDARY\\EADC",
            "mip": "DERIVED\\SECONDARY\\MIP", "swi": "DERIVED\\PRIMARY\\SWI", "swi_minip": "DERIVED\\SECONDARY\\MINIP",
            "swi_phase": "ORIGINAL\\PRIMARY\\PHASE", "fmap_phase": "ORIGINAL\\PRIMARY\\PHASE",
            "t1_mpr": "DERIVED\\SECONDARY\\MPR", "scout_mpr": "DERIVED\\SECONDARY\\MPR",
            "other_t1map": "DERIVED\\PRIMARY\\T1MAP", "other_pc_phase": "ORIGINAL\\PRIMARY\\PHASE",
        }
        it = table.get(tech, "ORIGINAL\\PRIMARY\\OTHER")
    return tuple(it.split("\\"))


# what habits.py may put in ``spec.extra`` (read by the writer); cleared before the habits are drawn again
_HABIT_KEYS = ("ge_psd", "philips_technique", "enhanced_habit", "ti_zero", "no_ti", "ge_b_everywhere",
               "philips_b_everywhere", "public_b_positive_only", "no_private_b", "ge_internal_psd",
               "b0_with_magnitude", "hz_unsigned", "hz_rescale_type", "b0_magnitude_image_type", "derived_b_value",
               "derived_keeps_acquisition", "xa_b_matrix")


def header_style(tech: str, spec: SeriesSpec, profile: Profile, rng: np.random.Generator) -> None:
    """Fill the spec's header fields (sequence name, scanning sequence, image type, private tags) in place.

    The vendor and software generation decide (habits.py); the technique's defaults are the fallback.
    """
    t = TECHNIQUES[tech]
    vendor = profile.vendor
    for key in _HABIT_KEYS:
        spec.extra.pop(key, None)  # header_style may run again on a copied spec
    h = vendor_header(tech, spec, profile, rng)
    spec.scanning_sequence = h.ss or t.scanning_sequence
    spec.sequence_variant = h.sv or t.sequence_variant
    opts = list(h.so)
    if spec.fat_suppressed and not t.epi and not _FS_TOKENS & set(opts):
        opts.append(_pick(rng, _FS_OPTION[vendor]))
    spec.scan_options = tuple(opts)
    # the label follows the header: a fat-suppression token as the vendor writes it (Siemens and Philips EPI
    # always carry one; GE and Canon EPI often do not)
    spec.fat_suppressed = bool(_FS_TOKENS & set(opts))
    it = _image_type(tech, vendor, spec)
    if h.image_type and it[0] == "ORIGINAL" and not t.derived:
        it = tuple(h.image_type.split("\\"))
        if spec.storage == "mosaic" and it[-1] != "MOSAIC":
            it = (*it, "MOSAIC")
    spec.image_type = it
    epi_like = (t.epi and not t.derived) or (vendor == "SIEMENS" and tech in ("asl_3d", "asl_3d_m0"))
    if vendor in ("SIEMENS", "PHILIPS", "CANON", "UIH") and epi_like:
        # the EPI factor, where GE writes 1; syngo VB 2-D EPI wrote 1 as well
        vb_one = profile.generation == "VB" and t.epi and rng.random() < 0.8
        spec.echo_train_length = 1 if vb_one else epi_factor(spec, rng)
    spec.extra.update(h.extra)
    if h.extra.get("no_ti"):
        spec.inversion_time = None
    if vendor == "PHILIPS":
        spec.sequence_name = "" if rng.random() < 0.9 else h.extra["philips_technique"]
        pulse = h.extra["philips_technique"]
    elif vendor == "GE":
        spec.sequence_name = h.name
        spec.extra["ge_b_offset"] = bool(rng.random() < 0.3)  # some GE releases add 1e9 to the private b-value
        pulse = h.extra.get("ge_psd") or h.name
    else:
        spec.sequence_name = h.name
        pulse = h.name if vendor == "SIEMENS" else h.name.strip("*")
    spec.extra["technique"] = tech
    spec.derived = spec.image_type[0] == "DERIVED"  # the label follows what the header says
    spec.extra["pulse_sequence_name"] = pulse
