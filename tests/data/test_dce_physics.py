"""DCE physics against references: the OSIPI Parker AIF and Tofts curves, the SPGR inverse, QIBA v6."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nisca.data import dce
from nisca.errors import DataError

OSIPI = "dce_mri/osipi_codecollection"


def _within_osipi(estimate: float, truth: float, a_tol: float, r_tol: float = 0.0) -> bool:
    return abs(estimate - truth) <= a_tol + r_tol * abs(truth)


def test_parker_aif_matches_the_osipi_reference(shared_data):
    ref = np.load(shared_data / OSIPI / "osipi_parker-aif_ref.npz")
    published = dict(zip(ref["parker_param_names"], ref["parker_param_values"]))
    assert published == pytest.approx(vars(dce.PARKER_2006))
    labels = sorted(k[: -len("_time_min")] for k in ref.files if k.endswith("_time_min"))
    assert len(labels) == 11
    for label in labels:
        t_s = ref[f"{label}_time_min"] * 60.0
        # OSIPI population-AIF tolerances: a_tol 1e-4 mM, r_tol 1 %
        np.testing.assert_allclose(dce.parker_aif(t_s), ref[f"{label}_Cb_mM"], rtol=0.01, atol=1e-4, err_msg=label)


def test_parker_delay_shifts_and_zero_fills():
    t = np.arange(0, 300, 0.5)
    delayed = dce.parker_aif(t, delay_s=20.0)
    assert np.all(delayed[t < 20.0] == 0)
    np.testing.assert_allclose(delayed[t >= 20.0], dce.parker_aif(t[t >= 20.0] - 20.0))
    assert dce.parker_aif(t).max() == pytest.approx(6.04, abs=0.05)  # the published first-pass peak
    np.testing.assert_allclose(dce.plasma_from_blood(delayed, 0.45), delayed / 0.55)
    with pytest.raises(DataError, match="hematocrit"):
        dce.plasma_from_blood(delayed, 1.2)


@pytest.mark.parametrize("times", ["uniform", "irregular", "few-samples"])
def test_exponential_convolution_is_exact_for_piecewise_linear_input(times):
    rng = np.random.default_rng(3)
    t = {"uniform": np.linspace(0, 120, 25), "irregular": np.sort(np.r_[0.0, rng.uniform(0, 120, 30)]),
         "few-samples": np.linspace(0, 120, 4)}[times]  # the last: more voxels than samples
    k = np.array([0.0, 1e-5, 0.01, 0.3, 5.0])  # s^-1, from the k -> 0 limit to a very fast exchange
    # input c(u) = u: int_0^t u exp(-k(t-u)) du = t/k - (1 - exp(-k t))/k^2 (and t^2/2 for k = 0)
    kk = k[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(kk > 0, t / kk + np.expm1(-kk * t) / kk**2, t**2 / 2)
    got = dce.exp_convolve(t, np.broadcast_to(t, (5, t.size)), k)
    np.testing.assert_allclose(got, exact, rtol=1e-7, atol=1e-9)


def test_tofts_is_vectorised_over_voxels():
    t = np.arange(0, 300, 2.0)
    cp = dce.plasma_from_blood(dce.parker_aif(t, delay_s=10.0))
    ktrans, ve, vp = np.array([0.05, 0.2, 0.4]), np.array([0.1, 0.3, 0.5]), np.array([0.0, 0.02, 0.1])
    batch = dce.extended_tofts(t, cp, ktrans, ve, vp)
    for i in range(3):
        np.testing.assert_allclose(batch[i], dce.extended_tofts(t, cp, ktrans[i], ve[i], vp[i]))
    np.testing.assert_allclose(dce.tofts(t, cp, 0.2, 0.3), dce.extended_tofts(t, cp, 0.2, 0.3, 0.0))
    # a very fast exchange (kep = 250 /min) keeps the tissue in equilibrium: Ct -> (ve + vp) Cp
    fast = dce.extended_tofts(t, cp, 50.0, 0.2, 0.05)
    late = t > 60
    np.testing.assert_allclose(fast[late], 0.25 * cp[late], rtol=0.02)


def _fit_osipi_set(path, extended: bool) -> tuple[list[str], list[str]]:
    """Fit every curve; return (labels passing OSIPI tolerances, labels failing)."""
    data = np.load(path)
    passed, failed = [], []
    for i, label in enumerate(data["label"]):
        assert np.array_equal(data["t_s"][i], data["ta_s"][i])
        fit = dce.fit_tofts(data["t_s"][i], data["C_mM"][i], data["ca_mM"][i], extended=extended)
        ok = _within_osipi(fit.ve, data["ve"][i], 0.05) and _within_osipi(
            fit.ktrans_per_min, data["Ktrans_per_min"][i], 0.005, 0.1)
        if extended:
            ok = ok and _within_osipi(fit.vp, data["vp"][i], 0.025)
        (passed if ok else failed).append(str(label))
    return passed, failed


@pytest.mark.parametrize(
    ("filename", "extended", "n_curves"),
    [("osipi_qiba-v11-tofts_curves.npz", False, 25), ("osipi_bosca-anthropomorphic-etofts_curves.npz", True, 15)],
)
def test_tofts_fits_reproduce_the_osipi_reference_curves(shared_data, filename, extended, n_curves):
    passed, failed = _fit_osipi_set(shared_data / OSIPI / filename, extended)
    assert len(passed) + len(failed) == n_curves
    print(f"{filename}: {len(passed)}/{n_curves} curves within OSIPI tolerances; failing: {failed}")
    assert not [label for label in failed if label.endswith("highSNR")], "high-SNR curves must all pass"
    assert not failed, f"noisy curves outside the OSIPI tolerances: {failed}"


def test_tofts_fit_would_fail_with_wrong_units(shared_data):
    """Guard against a silent unit slip: Ktrans per second instead of per minute is far off."""
    data = np.load(shared_data / OSIPI / "osipi_qiba-v11-tofts_curves.npz")
    t, c, ca = data["t_s"][1], data["C_mM"][1], data["ca_mM"][1]
    wrong = dce.extended_tofts(t / 60.0, ca, data["Ktrans_per_min"][1], data["ve"][1])
    right = dce.extended_tofts(t, ca, data["Ktrans_per_min"][1], data["ve"][1])
    assert np.sqrt(np.mean((right - c) ** 2)) < 0.02 * c.max()
    assert np.sqrt(np.mean((wrong - c) ** 2)) > 0.2 * c.max()


@pytest.mark.parametrize(("flip", "tr"), [(30.0, 0.005), (10.0, 0.004), (70.0, 0.05)])
def test_spgr_signal_and_inverse_round_trip(flip, tr):
    rng = np.random.default_rng(0)
    r1 = rng.uniform(0.3, 40.0, size=(50, 20))
    m0 = rng.uniform(100, 5000, size=(50, 1))
    signal = dce.spgr_signal(r1, m0, flip, tr)
    np.testing.assert_allclose(dce.spgr_r1(signal, m0, flip, tr), r1, rtol=1e-6)
    # concentration -> signal -> concentration, with M0 estimated from a zero-contrast baseline
    t10 = rng.uniform(0.5, 2.0, size=50)
    conc = np.concatenate([np.zeros((50, 5)), rng.uniform(0.01, 6.0, size=(50, 40))], axis=1)
    sig = dce.concentration_to_signal(conc, t10, 4.5, m0[:, 0], flip, tr)
    np.testing.assert_allclose(dce.estimate_m0(sig[:, :5], t10, flip, tr), m0[:, 0], rtol=1e-6)
    back = dce.signal_to_concentration(sig, t10, 4.5, flip, tr, n_baseline=5)
    np.testing.assert_allclose(back[:, 5:], conc[:, 5:], rtol=1e-6)
    np.testing.assert_allclose(back[:, :5], 0.0, atol=1e-8)


def test_spgr_inverse_refuses_signals_beyond_the_asymptote():
    m0, flip, tr = 1000.0, 30.0, 0.005
    too_high = np.array([100.0, 1000.0 * np.sin(np.deg2rad(flip)) * 1.01])
    with pytest.raises(DataError, match="outside the range of the SPGR equation"):
        dce.spgr_r1(too_high, m0, flip, tr)
    r1 = dce.spgr_r1(too_high, m0, flip, tr, clip=True)
    assert np.isfinite(r1).all() and r1[1] > r1[0]
    with pytest.raises(DataError, match="n_baseline"):
        dce.signal_to_concentration(too_high, 1.0, 4.5, flip, tr)


def test_qiba_v6_volume_recovers_its_ktrans_ve_grid(shared_data):
    """Signal -> concentration (T10 1.0 s tissue, 1.44 s blood, FA 30, TR 5 ms, r1 4.5), AIF from the
    aif mask (Hct 0.45), Tofts fit of one voxel and the mean of each 10 x 10 patch: all 30 cells within
    OSIPI's tolerances (the DRO is noise-free)."""
    folder = shared_data / "dce_mri" / "qiba_v6_tofts"
    img = nib.load(folder / "qiba-v6-tofts_dce.nii.gz")
    signal = np.asanyarray(img.dataobj)[:, :, 0, :].astype(np.float64)
    t = np.arange(signal.shape[-1]) * float(img.header.get_zooms()[3])
    aif_mask = np.asanyarray(nib.load(folder / "qiba-v6-tofts_label-aif_mask.nii.gz").dataobj)[:, :, 0] > 0
    ktrans = nib.load(folder / "qiba-v6-tofts_Ktrans.nii.gz").get_fdata()[:, :, 0]
    ve = nib.load(folder / "qiba-v6-tofts_ve.nii.gz").get_fdata()[:, :, 0]
    n_baseline = 60  # 30 s; the bolus arrives after frame 125
    flip, tr, r1 = 30.0, 0.005, 4.5
    cb = dce.signal_to_concentration(signal[aif_mask].mean(axis=0), 1.44, r1, flip, tr, n_baseline=n_baseline)
    cp = dce.plasma_from_blood(cb, 0.45)
    assert cp.max() == pytest.approx(9.65, abs=0.05)  # the derived AIF peak stated in the data README
    errors = []
    for i in range(5):  # ve columns along x
        for j in range(6):  # Ktrans bands along y, rows 10..69
            xs, ys = slice(10 * i, 10 * i + 10), slice(10 + 10 * j, 20 + 10 * j)
            k_true, ve_true = ktrans[10 * i + 4, 15 + 10 * j], ve[10 * i + 4, 15 + 10 * j]
            for curve in (signal[10 * i + 4, 15 + 10 * j], signal[xs, ys].mean(axis=(0, 1))):
                ct = dce.signal_to_concentration(curve, 1.0, r1, flip, tr, n_baseline=n_baseline)
                fit = dce.fit_tofts(t, ct, cp)
                errors.append((fit.ktrans_per_min - k_true, fit.ve - ve_true))
                assert _within_osipi(fit.ktrans_per_min, k_true, 0.005, 0.1), (k_true, ve_true, fit)
                assert _within_osipi(fit.ve, ve_true, 0.05), (k_true, ve_true, fit)
    err = np.abs(np.array(errors))
    print(f"QIBA v6: {len(errors)} fits, max |dKtrans| {err[:, 0].max():.4f} /min, max |dve| {err[:, 1].max():.4f}")
