"""A DCE-MRI mixture phantom: voxels mixing K tissue classes, with the true fractions kept.

Geometry (in mm): an elliptical body in air; a tumour (an enhancing rim around a necrotic core) and a
few vessels (tubes running along z) inside healthy tissue. Each class has a signed distance to its
region (positive inside), perturbed by a smooth random field; the fractions are the softmax of these
distances divided by an edge width, so they are smooth, on the simplex, and near-pure inside regions.

Class curves come from the Parker AIF and the (extended) Tofts model (nisca.data.dce). Fast exchange:
R1 = sum_k f_k (R10_k + r1 C_k(t)) per voxel, then the SPGR equation (a post-nonlinear mixture).
Slow exchange: each class has its own signal and the signals mix linearly. Rician noise at
SNR_dB = 20 log10(S_baseline / sigma), S_baseline = mean noiseless pre-contrast signal in the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from nisca.data import dce
from nisca.data.scene import Scene, Truth, VolumeGeometry
from nisca.errors import ConfigError

MIXING_MODELS = ("fast", "slow")


@dataclass(frozen=True)
class TissueClass:
    """Kinetic and relaxation parameters of one tissue class.

    model "blood": the voxel is whole blood, C = (1 - Hct) Cp = Cb. model "tofts": extended Tofts
    with Ktrans (min^-1), ve, vp (vp = 0 gives the standard Tofts model). T10 is the native T1 (s).
    """

    name: str
    model: str
    t10_s: float
    ktrans_per_min: float = 0.0
    ve: float = 1.0
    vp: float = 0.0
    description: str = ""


# Physiological defaults at 1.5 T, inside the ranges reported for tumours and normal tissue
# (tumour Ktrans 0.1-0.5 /min, ve 0.2-0.5, vp 0.02-0.1; normal tissue Ktrans ~0.05 /min, ve 0.1-0.2).
TISSUE_CLASSES: dict[str, TissueClass] = {
    "vessel": TissueClass("vessel", "blood", 1.44, description="whole blood (artery/vein); T10 of blood"),
    "rim": TissueClass("rim", "tofts", 1.40, 0.25, 0.30, 0.06, "enhancing tumour rim: fast wash-in"),
    "core": TissueClass("core", "tofts", 1.80, 0.02, 0.50, 0.0, "necrotic core: slow, weak enhancement"),
    "healthy": TissueClass("healthy", "tofts", 1.00, 0.06, 0.15, 0.02, "healthy tissue: modest enhancement"),
}
DEFAULT_CLASSES = ("vessel", "rim", "core", "healthy")


@dataclass
class PhantomResult:
    """Everything the phantom made: volumes (x, y, z[, t|K]), class curves (T, K) and the Scene."""

    signal: np.ndarray  # (x, y, z, T) float32, with noise
    clean_signal: np.ndarray  # (x, y, z, T) noiseless
    concentration: np.ndarray  # (x, y, z, T) fraction-weighted tissue concentration (mM)
    fractions: np.ndarray  # (x, y, z, K), zero outside the mask
    labels: np.ndarray  # (x, y, z) uint8: 0 outside the mask, k + 1 for the dominant class k
    mask: np.ndarray  # (x, y, z) bool: the body
    t10_map: np.ndarray  # (x, y, z) effective T10 (s) of each voxel, 0 outside the mask
    m0_map: np.ndarray  # (x, y, z) M0 of each voxel
    frame_times: np.ndarray  # (T,) seconds
    class_names: tuple[str, ...]
    class_concentrations: np.ndarray  # (T, K) mM
    class_signals: np.ndarray  # (T, K) pure-class signal at the nominal M0 and T10
    aif_blood: np.ndarray  # (T,) whole-blood Parker AIF (mM)
    noise_sigma: float
    baseline_signal: float
    affine: np.ndarray
    parameters: dict[str, Any]
    scene: Scene = field(repr=False)


def _validate(classes: Sequence[str], library: Mapping[str, TissueClass], shape: Sequence[int], frames: int,
              dt_s: float, mixing: str, t10_variation: float, m0_variation: float,
              voxel_size_mm: Sequence[float], edge_width_mm: float, seed: int) -> None:
    unknown = [c for c in classes if c not in library]
    if unknown:
        raise ConfigError(f"unknown DCE phantom class(es) {unknown}; known: {sorted(library)}")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ConfigError(f"the phantom needs at least 2 distinct classes, got {list(classes)}")
    if len(shape) != 3 or any(int(n) < 1 for n in shape) or min(shape[0], shape[1]) < 8:
        raise ConfigError(f"phantom shape must be 3 positive sizes (x, y >= 8), got {tuple(shape)}")
    if len(voxel_size_mm) != 3 or any(v <= 0 for v in voxel_size_mm):
        raise ConfigError(f"voxel sizes must be 3 positive values in mm, got {tuple(voxel_size_mm)}")
    if int(frames) < 2 or not dt_s > 0:
        raise ConfigError(f"the phantom needs frames >= 2 and a positive frame interval, got {frames}, {dt_s}")
    if mixing not in MIXING_MODELS:
        raise ConfigError(f"mixing must be one of {MIXING_MODELS}, got {mixing!r}")
    for label, value in (("t10-variation", t10_variation), ("m0-variation", m0_variation)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{label} must be a fraction in [0, 1), got {value}")
    if not edge_width_mm > 0:
        raise ConfigError(f"edge width must be positive, got {edge_width_mm}")
    if int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: Sequence[float]) -> np.ndarray:
    """A smooth random field with zero mean and unit maximum magnitude."""
    f = gaussian_filter(rng.standard_normal(shape), sigma=sigma_vox, mode="reflect")
    f -= f.mean()
    return f / max(np.abs(f).max(), 1e-12)


def _class_fractions(classes: Sequence[str], coords: np.ndarray, fov: np.ndarray, rng: np.random.Generator,
                     sigma_vox: Sequence[float], edge_width_mm: float) -> np.ndarray:
    """Fractions (x, y, z, K) as the softmax of perturbed signed distances (mm) to each class region."""
    x, y, z = coords
    radius = 0.28 * min(fov[0], fov[1])
    centre = rng.uniform(-0.12, 0.12, size=2) * fov[:2]
    radius_z = max(radius, 0.75 * fov[2])
    d = radius * np.sqrt(((x - centre[0]) / radius) ** 2 + ((y - centre[1]) / radius) ** 2 + (z / radius_z) ** 2)
    core_radius = 0.5 * radius
    # vessels: tubes roughly along z through random in-plane points of the body
    vessel_radius = 2.0
    dist_vessel = np.full(x.shape, np.inf)
    for _ in range(3):
        angle, r = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0.0, 1.0)) * 0.7
        p = np.array([r * np.cos(angle) * fov[0] / 2, r * np.sin(angle) * fov[1] / 2, 0.0])
        u = np.array([*rng.uniform(-0.3, 0.3, size=2), 1.0])
        u /= np.linalg.norm(u)
        rel = np.stack([x - p[0], y - p[1], z - p[2]], axis=-1)
        along = rel @ u
        dist_vessel = np.minimum(dist_vessel, np.linalg.norm(rel - along[..., None] * u, axis=-1))
    has = set(classes)
    outside_vessels = dist_vessel - vessel_radius if "vessel" in has else np.full(x.shape, np.inf)
    signed = {
        "vessel": vessel_radius - dist_vessel,
        "core": (core_radius if "rim" in has else radius) - d,
        "rim": np.minimum(radius - d, d - core_radius) if "core" in has else radius - d,
        "healthy": d - radius,
    }
    logits = []
    for name in classes:
        sd = signed[name] if name == "vessel" else np.minimum(signed[name], outside_vessels)
        logits.append((sd + 0.8 * _smooth_field(rng, x.shape, sigma_vox)) / edge_width_mm)
    logits = np.stack(logits, axis=-1)
    logits -= logits.max(axis=-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=-1, keepdims=True)


def class_curves(classes: Sequence[TissueClass], frame_times: np.ndarray, *, bolus_arrival_s: float,
                 hematocrit: float) -> tuple[np.ndarray, np.ndarray]:
    """Concentration curves (T, K) of the classes and the whole-blood AIF (T,), in mM.

    Computed on a fine 0.1 s grid with the exact piecewise-linear convolution, then sampled at the
    frame times, so coarse frames do not blur the model.
    """
    t_end = float(frame_times[-1])
    fine = np.arange(0.0, t_end + 0.1, 0.1)
    cb = dce.parker_aif(fine, delay_s=bolus_arrival_s)
    cp = dce.plasma_from_blood(cb, hematocrit)
    curves = []
    for c in classes:
        if c.model == "blood":
            curves.append(cb)
        else:
            curves.append(dce.extended_tofts(fine, cp, c.ktrans_per_min, c.ve, c.vp))
    out = np.stack([np.interp(frame_times, fine, curve) for curve in curves], axis=1)
    return out, np.interp(frame_times, fine, cb)


def phantom_affine(shape: Sequence[int], voxel_size_mm: Sequence[float]) -> np.ndarray:
    """Diagonal RAS affine with the given voxel sizes and the volume centred on the origin."""
    affine = np.diag([*map(float, voxel_size_mm), 1.0])
    affine[:3, 3] = -(np.asarray(shape, dtype=float) - 1) / 2 * np.asarray(voxel_size_mm, dtype=float)
    return affine


def simulate_dce_phantom(
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    shape: Sequence[int] = (32, 32, 4),
    frames: int = 60,
    dt_s: float = 5.0,
    snr_db: float | None = 30.0,
    seed: int = 0,
    mixing: str = "fast",
    t10_variation: float = 0.0,
    m0_variation: float = 0.0,
    voxel_size_mm: Sequence[float] = (1.0, 1.0, 2.0),
    flip_angle_deg: float = 30.0,
    tr_s: float = 0.005,
    r1: float = 4.5,
    hematocrit: float = 0.45,
    bolus_arrival_s: float = 30.0,
    m0: float = 1000.0,
    edge_width_mm: float = 0.6,
    tissue_classes: Mapping[str, TissueClass] | None = None,
) -> PhantomResult:
    """Simulate the DCE-MRI mixture phantom; see the module docstring and docs/dce.md.

    `snr_db` None (or inf) gives noiseless data. T10 and M0 variations scale T10 and M0 of each voxel by
    1 + frac * (a smooth field in [-1, 1]). Every seed, 0 included, gives its own reproducible phantom.
    """
    library = dict(TISSUE_CLASSES if tissue_classes is None else tissue_classes)
    classes = tuple(classes)
    shape = tuple(int(n) for n in shape)
    _validate(classes, library, shape, frames, dt_s, mixing, t10_variation, m0_variation, voxel_size_mm,
              edge_width_mm, seed)
    if snr_db is not None and not np.isfinite(snr_db):
        snr_db = None
    rng = np.random.default_rng(int(seed))
    voxel = np.asarray(voxel_size_mm, dtype=float)
    affine = phantom_affine(shape, voxel)
    idx = np.indices(shape, dtype=float)
    coords = np.stack([(idx[i] - (shape[i] - 1) / 2) * voxel[i] for i in range(3)])
    fov = np.asarray(shape, dtype=float) * voxel
    sigma_vox = 3.0 / voxel  # smoothness of the random fields: 3 mm

    margin = max(1, round(0.08 * min(shape[0], shape[1])))
    semi = (np.asarray(shape[:2], dtype=float) / 2 - margin) * voxel[:2]
    mask = (coords[0] / semi[0]) ** 2 + (coords[1] / semi[1]) ** 2 <= 1.0

    fractions = _class_fractions(classes, coords, fov, rng, sigma_vox, edge_width_mm)
    fractions[~mask] = 0.0
    t10_factor = 1.0 + t10_variation * _smooth_field(rng, shape, sigma_vox)
    m0_map = np.where(mask, m0 * (1.0 + m0_variation * _smooth_field(rng, shape, sigma_vox)), 0.0)

    frame_times = np.arange(int(frames), dtype=float) * float(dt_s)
    tissue = [library[name] for name in classes]
    conc, aif_blood = class_curves(tissue, frame_times, bolus_arrival_s=bolus_arrival_s, hematocrit=hematocrit)
    r10 = np.array([1.0 / c.t10_s for c in tissue])  # (K,)
    class_r1 = r10[None, :] + r1 * conc  # (T, K)
    class_signals = dce.spgr_signal(class_r1, m0, flip_angle_deg, tr_s)  # (T, K)

    f = fractions[mask]  # (P, K)
    voxel_r10 = r10[None, :] / t10_factor[mask][:, None]  # (P, K): T10 of every class scaled per voxel
    mixed_conc = f @ conc.T  # (P, T)
    m0_vox = m0_map[mask][:, None]
    if mixing == "fast":
        latent = (f * voxel_r10).sum(axis=1, keepdims=True) + r1 * mixed_conc  # one R1 per voxel
        clean = dce.spgr_signal(latent, m0_vox, flip_angle_deg, tr_s)
    else:
        per_class = dce.spgr_signal(voxel_r10[:, None, :] + r1 * conc[None, :, :], m0_vox[..., None],
                                    flip_angle_deg, tr_s)  # (P, T, K)
        clean = np.einsum("ptk,pk->pt", per_class, f)
        latent = clean
    n_base = max(1, int(np.sum(frame_times < bolus_arrival_s)))
    baseline = float(clean[:, :n_base].mean())
    sigma = 0.0 if snr_db is None else baseline / 10 ** (snr_db / 20)

    clean_vol = np.zeros((*shape, frames))
    clean_vol[mask] = clean
    if sigma > 0:
        noisy = np.hypot(clean_vol + sigma * rng.standard_normal(clean_vol.shape),
                         sigma * rng.standard_normal(clean_vol.shape))
    else:
        noisy = clean_vol.copy()
    conc_vol = np.zeros((*shape, frames))
    conc_vol[mask] = mixed_conc
    t10_map = np.zeros(shape)
    t10_map[mask] = 1.0 / (f * voxel_r10).sum(axis=1)
    labels = np.where(mask, fractions.argmax(axis=-1) + 1, 0).astype(np.uint8)

    parameters = {
        "generator": "nisca.data.dce_phantom.simulate_dce_phantom",
        "classes": {c.name: asdict(c) for c in tissue},
        "sequence": {"FlipAngle_deg": float(flip_angle_deg), "RepetitionTimeExcitation_s": float(tr_s),
                     "r1_per_s_per_mM": float(r1), "Hematocrit": float(hematocrit), "M0": float(m0)},
        "aif": {"model": "Parker2006", "bolus_arrival_s": float(bolus_arrival_s),
                **{k: float(v) for k, v in asdict(dce.PARKER_2006).items()}},
        "acquisition": {"shape": list(shape), "frames": int(frames), "dt_s": float(dt_s),
                        "voxel_size_mm": voxel.tolist(), "baseline_frames": n_base},
        "mixing": mixing, "snr_db": snr_db, "noise_sigma": float(sigma), "baseline_signal": baseline,
        "t10_variation": float(t10_variation), "m0_variation": float(m0_variation),
        "edge_width_mm": float(edge_width_mm), "seed": int(seed),
    }
    signal = noisy.astype(np.float32)
    scene = _make_scene(signal, mask, affine, frame_times, fractions[mask], class_signals, class_r1, latent,
                        mixing, sigma, parameters)
    return PhantomResult(
        signal=signal, clean_signal=clean_vol.astype(np.float32), concentration=conc_vol.astype(np.float32),
        fractions=fractions.astype(np.float32), labels=labels, mask=mask, t10_map=t10_map, m0_map=m0_map,
        frame_times=frame_times, class_names=classes, class_concentrations=conc, class_signals=class_signals,
        aif_blood=aif_blood, noise_sigma=float(sigma), baseline_signal=baseline, affine=affine,
        parameters=parameters, scene=scene,
    )


def _make_scene(signal: np.ndarray, mask: np.ndarray, affine: np.ndarray, frame_times: np.ndarray,
                abundances: np.ndarray, class_signals: np.ndarray, class_r1: np.ndarray, latent: np.ndarray,
                mixing: str, sigma: float, parameters: dict[str, Any]) -> Scene:
    """The Scene view: masked voxel curves with the truth (fast exchange: latent = R1 in s^-1)."""
    header = dce_image(signal, affine, float(parameters["acquisition"]["dt_s"])).header
    truth = Truth(
        abundances=abundances,
        endmembers=class_signals,
        linear_mixture=latent,
        mixing=class_r1 if mixing == "fast" else class_signals,
        nonlinearity="spgr" if mixing == "fast" else "linear",
        noise_variance=sigma**2,
        label=f"dce-phantom-{mixing}-exchange",
    )
    return Scene(
        Y=signal[mask], name=f"dce_phantom_{mixing}_seed{parameters['seed']}", truth=truth,
        geometry=VolumeGeometry(affine=affine, volume_shape=tuple(mask.shape), mask=mask, header=header),
        axis=frame_times, axis_name="time_s", provenance=dict(parameters),
    )


def _nifti(data: np.ndarray, affine: np.ndarray, zooms: Sequence[float], time_unit: str = "unknown") -> Any:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(tuple(float(z) for z in zooms))
    img.header.set_xyzt_units("mm", time_unit)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def dce_image(signal: np.ndarray, affine: np.ndarray, dt_s: float) -> Any:
    """The 4-D float32 NIfTI of a DCE series: mm and seconds, pixdim[4] = frame interval, codes 1."""
    zooms = [*np.sqrt((affine[:3, :3] ** 2).sum(axis=0)), dt_s]
    return _nifti(np.asarray(signal, dtype=np.float32), affine, zooms, "sec")


def write_dce_phantom(result: PhantomResult, out_dir: str | Path) -> list[Path]:
    """Write the phantom into `out_dir` (NIfTI volumes, BIDS sidecar, label table, curves, parameters)."""
    import pandas as pd

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the output folder {out}: {error}") from error
    p = result.parameters
    voxel = p["acquisition"]["voxel_size_mm"]
    written: list[Path] = []

    def save(img: Any, name: str) -> None:
        img.to_filename(out / name)
        written.append(out / name)

    save(dce_image(result.signal, result.affine, p["acquisition"]["dt_s"]), "dce.nii.gz")
    save(_nifti(result.fractions.astype(np.float32), result.affine, [*voxel, 1.0]), "fractions_probseg.nii.gz")
    save(_nifti(result.labels.astype(np.uint8), result.affine, voxel), "labels.nii.gz")
    save(_nifti(result.mask.astype(np.uint8), result.affine, voxel), "mask.nii.gz")
    save(_nifti(result.t10_map.astype(np.float32), result.affine, voxel), "t10.nii.gz")
    save(_nifti(result.m0_map.astype(np.float32), result.affine, voxel), "m0.nii.gz")

    t10_in_mask = result.t10_map[result.mask]
    sidecar = {
        "Description": "NISCA DCE-MRI mixture phantom (synthetic, with ground-truth fractions)",
        "PulseSequenceType": "spoiled gradient echo (SPGR)",
        "FlipAngle": p["sequence"]["FlipAngle_deg"],
        "RepetitionTimeExcitation": p["sequence"]["RepetitionTimeExcitation_s"],
        "VolumeTiming": [float(t) for t in result.frame_times],
        "TemporalResolution_s": p["acquisition"]["dt_s"],
        "ContrastBolusIngredient": "GADOLINIUM",
        "T10_s": float(np.median(t10_in_mask)),
        "T10_by_class_s": {name: c["t10_s"] for name, c in p["classes"].items()},
        "r1_per_s_per_mM": p["sequence"]["r1_per_s_per_mM"],
        "Hematocrit": p["sequence"]["Hematocrit"],
        "M0": p["sequence"]["M0"],
        "BolusArrivalTime_s": p["aif"]["bolus_arrival_s"],
        "BaselineFrames": p["acquisition"]["baseline_frames"],
        "MixingModel": p["mixing"],
        "SNR_dB": p["snr_db"],
        "NoiseSigma": p["noise_sigma"],
        "Seed": p["seed"],
        "ClassNames": list(result.class_names),
    }
    (out / "dce.json").write_text(json.dumps(sidecar, indent=1))
    written.append(out / "dce.json")

    tsv = pd.DataFrame({"index": range(len(result.class_names) + 1),
                        "name": ["background", *result.class_names]})
    tsv.to_csv(out / "labels.tsv", sep="\t", index=False)
    written.append(out / "labels.tsv")

    curves = {"time_s": result.frame_times}
    for k, name in enumerate(result.class_names):
        curves[f"{name}_concentration_mM"] = result.class_concentrations[:, k]
        curves[f"{name}_signal"] = result.class_signals[:, k]
    curves["aif_blood_mM"] = result.aif_blood
    curves["aif_plasma_mM"] = dce.plasma_from_blood(result.aif_blood, p["sequence"]["Hematocrit"])
    pd.DataFrame(curves).to_csv(out / "class_curves.csv", index=False)
    written.append(out / "class_curves.csv")

    (out / "parameters.json").write_text(json.dumps(p, indent=1))
    written.append(out / "parameters.json")
    return written
