"""FID / KID / precision-recall / PSNR / SSIM behaviour on synthetic features and images."""

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch

from vqforge.metrics import ssim

from vqforge.evaluate.fid import (FeatureStats, fid_from_features, frechet_distance, kid, mmd2_unbiased,
                                  polynomial_kernel, precision_recall)
from vqforge.io import VQForgeError


def _feats(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ a * scale + shift).astype(np.float32)


def test_fid_of_a_set_against_itself_is_zero():
    f = _feats(400, 64, 0)
    assert abs(fid_from_features(f, f)) < 1e-6
    # also on rank-deficient statistics (fewer samples than dimensions, as with few Inception features)
    # (sqrtm of a singular product is less accurate there: relative to the total variance)
    g = _feats(40, 128, 1)
    total_var = np.trace(np.cov(g.astype(np.float64), rowvar=False))
    assert abs(fid_from_features(g, g)) < 1e-6 * total_var


def test_frechet_distance_matches_direct_scipy():
    f1, f2 = _feats(300, 32, 2), _feats(250, 32, 3, shift=0.3, scale=1.5)
    mu1, mu2 = f1.astype(np.float64).mean(0), f2.astype(np.float64).mean(0)
    s1, s2 = np.cov(f1.astype(np.float64), rowvar=False), np.cov(f2.astype(np.float64), rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-9, abs=1e-9)
    assert fid_from_features(f1, f2) == pytest.approx(direct, rel=1e-9)
    assert direct > 1.0  # the two sets really differ


def test_eigh_method_agrees_with_sqrtm():
    f1, f2 = _feats(300, 48, 10), _feats(200, 48, 11, shift=0.2, scale=0.7)
    a, b = fid_from_features(f1, f2), fid_from_features(f1, f2, method="eigh")
    assert b == pytest.approx(a, rel=1e-8)
    g = _feats(40, 128, 1)  # rank-deficient: computed from the features (40 x 40 SVD), exact to rounding
    assert abs(fid_from_features(g, g, method="eigh")) < 1e-9 * np.trace(np.cov(g.astype(np.float64), rowvar=False))
    h = _feats(30, 128, 12, shift=0.1, scale=1.3)
    assert fid_from_features(g, h, method="eigh") == pytest.approx(fid_from_features(g, h), rel=1e-6)
    s1, s2 = FeatureStats.from_features(g), FeatureStats.from_features(h, keep_features=False)
    assert frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, method="eigh") == pytest.approx(
        fid_from_features(g, h, method="eigh"), rel=1e-6)
    with pytest.raises(ValueError):
        fid_from_features(f1, f2, method="nope")


def test_frechet_distance_of_known_gaussians():
    # diagonal covariances: FID = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_kid_matches_an_analytic_mmd_in_expectation():
    # P, Q: uniform over small point sets; population MMD^2 = E k(p,p') + E k(q,q') - 2 E k(p,q), with
    # independent draws (pairs include equal points).
    rng = np.random.default_rng(4)
    d = 6
    sp, sq = rng.standard_normal((5, d)), rng.standard_normal((5, d)) + 0.3
    exact = polynomial_kernel(sp, sp).mean() + polynomial_kernel(sq, sq).mean() - 2 * polynomial_kernel(sp, sq).mean()
    estimates = []
    for t in range(400):
        x, y = sp[rng.integers(0, 5, 8)], sq[rng.integers(0, 5, 8)]
        estimates.append(mmd2_unbiased(x, y))
    estimates = np.array(estimates)
    sem = estimates.std() / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * sem
    # the biased (V-statistic) estimator would be visibly off: the test can tell the two apart
    biased = np.mean([polynomial_kernel(x, x).mean() + polynomial_kernel(y, y).mean() - 2 * polynomial_kernel(x, y).mean()
                      for x, y in ((sp[rng.integers(0, 5, 8)], sq[rng.integers(0, 5, 8)]) for _ in range(400))])
    assert abs(biased - exact) > 8 * sem


def test_kid_of_two_samples_of_one_distribution_is_zero_on_average():
    rng = np.random.default_rng(5)
    means = []
    for t in range(30):
        f1, f2 = rng.standard_normal((60, 16)), rng.standard_normal((60, 16))
        m, s, size = kid(f1, f2, subsets=10, subset_size=20, seed=t)
        assert size == 20 and s >= 0
        means.append(m)
    means = np.array(means)
    assert abs(means.mean()) < 4 * means.std() / np.sqrt(len(means))
    # a shifted distribution gives a clearly positive KID
    assert kid(rng.standard_normal((60, 16)), rng.standard_normal((60, 16)) + 1.0, subsets=10, subset_size=20)[0] > 10 * means.std()


def test_kid_clips_subset_size_and_rejects_tiny_sets():
    f = _feats(30, 8, 6)
    assert kid(f, f[:12], subsets=3)[2] == 12
    with pytest.raises(VQForgeError):
        kid(f[:1], f)


def test_precision_recall():
    real = _feats(300, 8, 7)
    p, r = precision_recall(real, real.copy())
    assert p == 1.0 and r == 1.0
    far = real + 100.0  # disjoint manifolds
    assert precision_recall(real, far) == (0.0, 0.0)
    # fake collapsed around one real sample (mode collapse): precise, but recall only covers that sample
    fake = real[:1] + 1e-3 * np.random.default_rng(9).standard_normal((50, 8)).astype(np.float32)
    p, r = precision_recall(real, fake)
    assert p == 1.0 and r == pytest.approx(1 / 300)


def test_stats_cache_round_trip(tmp_path):
    f = _feats(50, 16, 8)
    st = FeatureStats.from_features(f, source="unit test")
    path = st.save(tmp_path / "ref.npz", with_features=True)
    back = FeatureStats.load(path)
    assert back.n == 50 and back.source == "unit test" and back.mu.dtype == np.float64
    np.testing.assert_array_equal(back.mu, st.mu)
    np.testing.assert_array_equal(back.sigma, st.sigma)
    np.testing.assert_array_equal(back.features, f)
    assert FeatureStats.load(st.save(tmp_path / "nofeat.npz")).features is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(VQForgeError, match="bad.npz"):
        FeatureStats.load(tmp_path / "bad.npz")
    with pytest.raises(VQForgeError, match="missing.npz"):
        FeatureStats.load(tmp_path / "missing.npz")


def _ssim_reference(x, y):
    """scikit-image's recipe (gaussian_weights=True, sigma=1.5, data_range=1, population covariances)
    written with scipy.ndimage: gaussian filters truncated at 3.5 sigma (11 taps), borders cropped."""
    out = []
    for a, b in zip(x, y):
        vals = []
        for ca, cb in zip(a, b):
            f = lambda t: scipy.ndimage.gaussian_filter(t, 1.5, truncate=3.5, mode="reflect")
            ux, uy = f(ca), f(cb)
            vx, vy, vxy = f(ca * ca) - ux * ux, f(cb * cb) - uy * uy, f(ca * cb) - ux * uy
            c1, c2 = 0.01 ** 2, 0.03 ** 2
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
            vals.append(s[5:-5, 5:-5].mean())
        out.append(np.mean(vals))
    return np.array(out)


def test_ssim_matches_the_standard_recipe():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 24, 20) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    ours = ssim(x, y).numpy()  # [-1, 1] inputs, evaluated on [0, 1] intensities as the standard defines it
    ref = _ssim_reference(((x + 1) / 2).double().numpy(), ((y + 1) / 2).double().numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, atol=1e-5)
