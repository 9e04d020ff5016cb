"""Statistical tests of what fastrand draws: a sampler with the wrong distribution fails them.

Every statistic is computed in float64 on the CPU from a draw with a fixed (seed, stream,
offset), so each test is deterministic; the thresholds are chosen so that a *correct* sampler,
with the seed picked at random, would fail any one test (pytest item) with probability < 1e-6:

* ``ALPHA = 1e-6`` is the false-failure budget of one test.  A test that asserts ``m``
  statistics splits it evenly (Bonferroni, union bound): each statistic is two-sided at
  ``ALPHA / m``.  For an asymptotically normal statistic that is ``|z| < zlim(m)``, with
  ``zlim(1) = 4.89``, ``zlim(2) = 5.03``, ``zlim(4) = 5.16``, ``zlim(32) = 5.53``,
  ``zlim(144) = 5.79``.
* Chi-square and Kolmogorov-Smirnov statistics must have a p-value above ``ALPHA / m``.
* Tail counts use exact binomial tail probabilities (two-sided, ``ALPHA / (2 m)`` per side).

The sample sizes (10^7 normals per dtype, 5 * 10^7 more for the tail counts) make the checks
sensitive: with n = 10^7 the standard errors are 3.2e-4 (mean), 4.5e-4 (variance), 7.7e-4
(skewness), 1.5e-3 (excess kurtosis) and 3.2e-4 (a correlation), so a normal with std 1.01
(variance z ~ 45), mean 0.005 (z ~ 16), a lost quadrant sign (mean ~ 0.2), correlated
neighbours (|r| >= 3e-3), or a tail thinned or fattened by 15% beyond 4 sigma, or emptied
or tripled beyond 5 sigma, all fail by a wide margin.  Each test's comment gives its own numbers.

float16 and bfloat16 normals are N32 rounded to the format (spec section 4): their exact
distribution is a discrete one on the representable values, P(v) = Phi(upper midpoint) -
Phi(lower midpoint).  The moment, chi-square, KS and tail checks of those dtypes compare
against that rounded distribution, so rounding (up to 0.4% of a value in bfloat16, a shift of
~6% in the bfloat16 count beyond 4 sigma) is not mistaken for an error.  KS on such data with
the continuous CDF would fail by discreteness alone (the bfloat16 CDF jumps by up to 1.9e-3
at one value, twice the 8.5e-4 critical D at n = 10^7), so those dtypes use a KS statistic of
the discrete (rounded) CDF evaluated on the support points, computed here (see test_normal_ks).

Runtime: 20-35 s on a 2-core CPU (the generator draws ~1e8 values/s; most of the time is
float64 arithmetic, sorting for KS, and the 4 x 6 x 10^7 normals).
"""

import functools
import math

import numpy as np
import pytest
import torch
from scipy import special, stats

import fastrand

ALPHA = 1e-6
N = 10**7  # normals per dtype for moments, KS, chi-square, correlations
N_TAIL = 5 * 10**7  # further normals per dtype for the tail counts
CHUNK = 10**7
N_WORDS = 10**6  # raw words for the bit-balance test (per lane in the lane test)
U64 = 1 << 64

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
# Spec: |N32| <= 6.77 (u >= 2^-33, r <= sqrt(66 ln 2) = 6.7646), also after rounding to
# float16 / bfloat16; |N64| <= 8.58 (u >= 2^-53, r <= sqrt(106 ln 2) = 8.5717).
MAX_ABS = {"float32": 6.77, "float16": 6.77, "bfloat16": 6.77, "float64": 8.58}
# One fixed seed per dtype (arbitrary; different so the dtypes see different noise).
SEEDS = {"float32": 20240601, "float16": 7, "bfloat16": 0xDEADBEEF, "float64": 0x9ABCDEF012345678}


def zlim(m=1):
    """|z| bound of one of m two-sided normal checks sharing the budget ALPHA."""
    return float(stats.norm.isf(ALPHA / (2 * m)))


def gen(seed, stream=0, offset=0):
    return fastrand.Generator(seed, stream=stream, offset=offset)


def assert_z(name, value, expected, se, m):
    z = (value - expected) / se
    assert abs(z) < zlim(m), (
        f"{name}: {value:.6g}, expected {expected:.6g} +- {se:.3g} "
        f"(z = {z:.2f}, limit {zlim(m):.2f})"
    )


def assert_p(name, p, m=1):
    assert p > ALPHA / m, f"{name}: p = {p:.3g} <= {ALPHA / m:.3g}"


def pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float(np.dot(a, b) / math.sqrt(np.dot(a, a) * np.dot(b, b)))


def assert_uncorrelated(name, a, b, m):
    """Pearson r of independent samples: sqrt(n) r -> N(0, 1) whatever the marginals (finite
    variance), so |r| < zlim(m) / sqrt(n): 5.03 or 5.16 / sqrt(n) here."""
    n = a.size
    r = pearson(a, b)
    assert abs(r) * math.sqrt(n) < zlim(m), (
        f"{name}: r = {r:.3g} over n = {n}, limit {zlim(m) / math.sqrt(n):.3g}"
    )


# --------------------------------------------------------------------------------------------
# samples (cached: each is drawn once per session)
@functools.cache
def normals(name):
    """(tensor, float64 numpy array) of N normals of dtype `name` at offset 0."""
    t = fastrand.randn(N, generator=gen(SEEDS[name]), dtype=DTYPES[name])
    assert t.dtype == DTYPES[name] and t.shape == (N,)
    return t, t.double().numpy()


@functools.cache
def rounded_normal(name):
    """The exact distribution of N(0, 1) rounded to nearest into float16 / bfloat16.

    Returns (values, probs, pattern_index): the sorted distinct finite values (+0 and -0
    merged), their probabilities, and for each of the 65536 bit patterns the index of its value
    (-1 for inf / nan).  N32 is itself a float32 rounding of a normal; its deviation from N(0,1)
    (<= 2 ulp of float32) and ties exactly at a midpoint (a float32 lands on one with probability
    ~2^-13 of the bin) change these probabilities by far less than the tests can see."""
    pats = np.arange(1 << 16, dtype=np.uint16)
    vals = torch.from_numpy(pats.view(np.int16)).view(DTYPES[name]).double().numpy()
    finite = np.isfinite(vals)
    values = np.unique(vals[finite])
    mids = (values[1:] + values[:-1]) / 2  # exact in float64
    lo = np.concatenate([[-np.inf], mids])
    hi = np.concatenate([mids, [np.inf]])
    # Phi(hi) - Phi(lo), computed on the side where it does not cancel
    probs = np.where(
        lo >= 0, special.ndtr(-lo) - special.ndtr(-hi), special.ndtr(hi) - special.ndtr(lo)
    )
    assert abs(probs.sum() - 1) < 1e-12
    index = np.full(1 << 16, -1, dtype=np.int64)
    index[finite] = np.searchsorted(values, vals[finite])
    return values, probs, index


def value_counts(t, name):
    """Counts of a float16 / bfloat16 tensor over rounded_normal(name)'s values."""
    values, _, index = rounded_normal(name)
    per_pattern = np.bincount(t.view(torch.int16).numpy().view(np.uint16), minlength=1 << 16)
    assert per_pattern[index < 0].sum() == 0, "inf or nan drawn"
    return np.bincount(index[index >= 0], weights=per_pattern[index >= 0], minlength=values.size)


DISCRETE = ("float16", "bfloat16")


# --------------------------------------------------------------------------------------------
# normals: moments
@pytest.mark.parametrize("name", list(DTYPES))
def test_normal_moments(name):
    """Sample mean, variance, skewness and excess kurtosis against N(0, 1) (for float16 /
    bfloat16: against the exactly computed moments of the rounded normal).  Asymptotic
    standard errors under normality: sqrt(1/n), sqrt(2/n), sqrt(6/n), sqrt(24/n); n = 10^7
    makes the CLT excellent (the Edgeworth correction at |z| ~ 5 is ~1% of the tail).
    4 checks, |z| < 5.16: bounds 1.6e-3 (mean), 2.3e-3 (variance), 4.0e-3 (skewness), 8.0e-3
    (kurtosis).  std 1.01 (variance +0.0201), mean 0.005, or a tail truncated at 4 sigma
    (kurtosis -0.014) fail."""
    x = normals(name)[1]
    n = x.size
    if name in DISCRETE:
        v, p, _ = rounded_normal(name)
        e_mean = float(p @ v)
        c = v - e_mean
        e_var = float(p @ c**2)
        e_skew = float(p @ c**3) / e_var**1.5
        e_kurt = float(p @ c**4) / e_var**2 - 3
    else:
        e_mean, e_var, e_skew, e_kurt = 0.0, 1.0, 0.0, 0.0
    mean = x.mean()
    d = x - mean
    d2 = d * d
    m2 = d2.mean()
    m3 = np.dot(d2, d) / n
    m4 = np.dot(d2, d2) / n
    m = 4
    assert_z(f"{name} mean", mean, e_mean, math.sqrt(e_var / n), m)
    assert_z(f"{name} variance", m2 * n / (n - 1), e_var, math.sqrt(2 / n) * e_var, m)
    assert_z(f"{name} skewness", m3 / m2**1.5, e_skew, math.sqrt(6 / n), m)
    assert_z(f"{name} excess kurtosis", m4 / m2**2 - 3, e_kurt, math.sqrt(24 / n), m)


# --------------------------------------------------------------------------------------------
# normals: Kolmogorov-Smirnov
@pytest.mark.parametrize("name", list(DTYPES))
def test_normal_ks(name):
    """Kolmogorov-Smirnov against N(0, 1), p > 1e-6 (critical D ~ 8.5e-4 at n = 10^7).
    std 1.01 gives D ~ 0.01 * max(x phi(x)) = 2.4e-3, mean 0.005 gives D ~ 2.0e-3.

    float32 / float64: scipy.stats.kstest (float32 spacing near the bulk, <= 2.4e-7 * |x|,
    is invisible to KS).  float16 / bfloat16: the data are discrete, so KS with the continuous
    CDF fails a correct sampler (bfloat16 jumps of up to 1.9e-3 > 8.5e-4); instead D is the
    largest gap between the empirical CDF and the CDF of the rounded normal at its support
    points (between them both are constant).  For a discontinuous null CDF this D is
    stochastically smaller than the continuous one (Noether 1963), so the continuous
    kstwo p-value is conservative and the false-failure probability stays <= 1e-6."""
    t, x = normals(name)
    if name in DISCRETE:
        _, p, _ = rounded_normal(name)
        ecdf = np.cumsum(value_counts(t, name)) / x.size
        cdf = np.cumsum(p)
        d = float(np.abs(ecdf - cdf).max())
        pvalue = float(stats.kstwo.sf(d, x.size))
    else:
        res = stats.kstest(x, "norm")
        d, pvalue = float(res.statistic), float(res.pvalue)
    assert pvalue > ALPHA, f"{name}: KS D = {d:.3g}, p = {pvalue:.3g}"


# --------------------------------------------------------------------------------------------
# normals: chi-square on 100 equiprobable bins
@pytest.mark.parametrize("name", list(DTYPES))
def test_normal_chisquare(name):
    """Chi-square over 100 bins equiprobable under N(0, 1) (edges Phi^-1(k / 100)); for
    float16 / bfloat16 each representable value falls in one bin and the expected counts are
    the rounded normal's (not exactly equal then; all >= 9e4).  99 degrees of freedom, p > 1e-6
    (statistic < 180.8).  Non-centrality for std 1.01 is ~ n * 0.01^2 * 1.9 ~ 1900 and for mean
    0.005 ~ 250: both fail."""
    t, x = normals(name)
    n = x.size
    edges = stats.norm.ppf(np.arange(1, 100) / 100)
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    if name in DISCRETE:
        v, p, _ = rounded_normal(name)
        b = np.searchsorted(edges, v, side="right")
        observed = np.bincount(b, weights=value_counts(t, name), minlength=100)
        expected = n * np.bincount(b, weights=p, minlength=100)
    else:
        observed = np.bincount(np.searchsorted(edges, x, side="right"), minlength=100)
        expected = n * np.diff(special.ndtr(full))
    assert observed.sum() == n and expected.min() > 9e4
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert_p(f"{name} chi-square {chi2:.1f}", float(stats.chi2.sf(chi2, 99)))


# --------------------------------------------------------------------------------------------
# normals: tails and range
def _tail_prob(name, k, upper):
    """P(X > k) (upper) or P(X < -k) for the dtype's normal (rounded for float16/bfloat16;
    k = 3, 4, 5 are representable there, and symmetric)."""
    if name in DISCRETE:
        v, p, _ = rounded_normal(name)
        return float(p[v > k].sum() if upper else p[v < -k].sum())
    return float(special.ndtr(-k))


@pytest.mark.parametrize("name", list(DTYPES))
def test_normal_tails_and_range(name):
    """Counts beyond +-3, 4, 5 sigma, each side and both sides, in 6 * 10^7 values (the N
    values plus 5 * 10^7 more), against Binomial(n, p): 9 checks, each two-sided with both
    exact binomial tail probabilities > 1e-6 / 18.  Expected counts (both sides): 1.6e5,
    3800, 34; the two-sided counts must lie within +-1.3% at 3 sigma, +-8.5% at 4, and in
    [8, 70] at 5 sigma (one side: +-1.9%, +-12%, [1, 43]), so an empty or tripled tail beyond
    5 sigma, a 15% error beyond 4 sigma or 2.5% beyond 3 sigma fail.  Also: every value
    finite and |x| < 6.77 (float32-based) / 8.58 (float64)."""
    dt = DTYPES[name]
    t, _ = normals(name)
    g = gen(SEEDS[name], stream=1)  # the tail sample: another stream of the same seed
    chunks = [t] + [fastrand.randn(CHUNK, generator=g, dtype=dt) for _ in range(N_TAIL // CHUNK)]
    n = sum(c.numel() for c in chunks)
    counts = {}
    biggest = 0.0
    for c in chunks:
        a = c.abs()
        assert bool(torch.isfinite(a).all()), f"{name}: non-finite value drawn"
        biggest = max(biggest, float(a.max()))
        tail = c[a > 3].double().numpy()  # ~0.27% of the values
        for k in (3, 4, 5):
            counts[k, True] = counts.get((k, True), 0) + int((tail > k).sum())
            counts[k, False] = counts.get((k, False), 0) + int((tail < -k).sum())
    assert biggest < MAX_ABS[name], f"{name}: max |x| = {biggest}"
    m = 9
    for k in (3, 4, 5):
        for side, cnt, prob in (
            ("> +", counts[k, True], _tail_prob(name, k, True)),
            ("< -", counts[k, False], _tail_prob(name, k, False)),
            (
                "|x| >",
                counts[k, True] + counts[k, False],
                _tail_prob(name, k, True) + _tail_prob(name, k, False),
            ),
        ):
            lower = float(stats.binom.cdf(cnt, n, prob))
            upper = float(stats.binom.sf(cnt - 1, n, prob))
            assert min(lower, upper) > ALPHA / (2 * m), (
                f"{name}: {cnt} values {side}{k} in {n}, expected {n * prob:.1f} "
                f"(P(<=) = {lower:.3g}, P(>=) = {upper:.3g})"
            )


# --------------------------------------------------------------------------------------------
# normals: the extreme radius, constructed (a sample of 6e7 only reaches ~5.9 sigma)
M32 = 0xFFFFFFFF
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_M0_INV, _M1_INV = pow(_M0, -1, 1 << 32), pow(_M1, -1, 1 << 32)


def philox_inverse(out, seed):
    """The counter whose Philox4x32-10 block under `seed` is `out` (each round inverts: the
    multipliers are odd, so c0 and c2 follow from the low products, then c1 and c3)."""
    keys = [((seed + i * _W0) & M32, ((seed >> 32) + i * _W1) & M32) for i in range(10)]
    c = list(out)
    for k0, k1 in reversed(keys):
        o0, o1, o2, o3 = c
        c0 = (o3 * _M0_INV) & M32
        c2 = (o1 * _M1_INV) & M32
        c = [c0, o0 ^ ((_M1 * c2) >> 32) ^ k0, c2, o2 ^ ((_M0 * c0) >> 32) ^ k1]
    return c


def generator_for_block(seed, candidates):
    """A generator at the start of a block (of some stream) whose four words are the first of
    `candidates` reachable (block index < 2^62, i.e. position 4 * block < 2^64)."""
    for out in candidates:
        c0, c1, c2, c3 = philox_inverse(out, seed)
        if c1 < 1 << 30:
            g = gen(seed, stream=c2 | c3 << 32, offset=4 * (c0 | c1 << 32))
            words = fastrand.random_words(4, generator=g.clone()).numpy().view(np.uint32)
            assert [int(w) for w in words] == list(out)
            return g
    raise AssertionError("no reachable block")


@pytest.mark.parametrize("seed", [0, SEEDS["float32"], U64 - 1])
def test_normal_extreme_radius(seed):
    """Blocks built to hold the smallest uniforms (u = 2^-33 for N32, 2^-53 for N64) and a few
    other tail radii, at angle pi/2: the value must be the exact Box-Muller radius
    sqrt(-2 ln u) (within 1e-6 relative for float32: logC 0.82 ulp + 3 roundings; 1e-13 for
    float64) and the largest stays under the spec's 6.77 / 8.58.  A low-precision log, a u
    that can be 0, or a clipped tail fail.  The low 6 (float32 angle) / 9 or 11 (float64) bits
    of a word are unused, which leaves room to pick a reachable counter."""
    for w0 in (0, 1, 2, 7, 100, 4095, 65535, 1 << 20, (1 << 22) + 12345):
        u = (w0 + 0.5) / 2**32  # float32 u, exact for w0 < 2^23
        r = math.sqrt(-2 * math.log(u))
        # q = 1, t = 0: sin = +1, cos = -0;  q = 2, t = 0: sin = -0, cos = -1
        cand = ((w0, 0x40000000 | j, w0, 0x80000000 | k) for j in range(64) for k in range(64))
        g = generator_for_block(seed, cand)
        y = fastrand.randn(4, generator=g.clone(), dtype=torch.float32)
        v = y.double().tolist()
        assert abs(v[0] - r) <= 1e-6 * r and abs(v[3] + r) <= 1e-6 * r, (w0, v, r)
        assert v[1] == 0 and v[2] == 0 and max(map(abs, v)) < 6.77, (w0, v)
        for dt in (torch.float16, torch.bfloat16):  # N16 = N32 rounded (spec section 4)
            h = fastrand.randn(4, generator=g.clone(), dtype=dt)
            assert torch.equal(h, y.to(dt)) and float(h.abs().max()) < 6.77, (w0, dt, h)
    for k_ in (1, 2, 3, 1000, 1 << 20, 1 << 30, 1 << 40):
        m53 = (1 << 53) - k_  # u = k_ / 2^53
        r = math.sqrt(-2 * math.log(k_ / 2**53))
        w0, w1 = m53 >> 21, (m53 & ((1 << 21) - 1)) << 11
        cand = ((w0, w1 | j, 0x40000000, k) for j in range(1 << 11) for k in range(512))
        g = generator_for_block(seed, cand)
        y = fastrand.randn(2, generator=g, dtype=torch.float64).tolist()
        assert abs(y[0] - r) <= 1e-13 * r and y[1] == 0 and y[0] < 8.58, (k_, y, r)


# --------------------------------------------------------------------------------------------
# normals: correlations and pair structure
@pytest.mark.parametrize("lag", [1, 2, 3, 4])
@pytest.mark.parametrize("name", list(DTYPES))
def test_normal_lag_correlation(name, lag):
    """Pearson r between x[i] and x[i + lag] in one draw, and between their squares (which
    sees a shared radius or word: e.g. a block's second pair reusing the first one's radius
    gives r(x^2) ~ 0.25 at lag 2).  2 checks, |r| < 5.03 / sqrt(n) = 1.6e-3 at n = 10^7."""
    x = normals(name)[1]
    assert_uncorrelated(f"{name} lag {lag}", x[:-lag], x[lag:], 2)
    s = x * x
    assert_uncorrelated(f"{name} lag {lag} of squares", s[:-lag], s[lag:], 2)


@pytest.mark.parametrize("name", list(DTYPES))
def test_normal_sine_cosine_halves(name):
    """The two values of each Box-Muller pair (even and odd elements: positions 2k, 2k + 1 for
    float32-based dtypes, 4k and 4k + 2 for float64) are independent N(0, 1): Pearson r of the
    values and of their squares, |r| < 5.16 / sqrt(n / 2) = 2.3e-3.  Jointly, the angle
    atan2(sine, cosine) is uniform on 64 sectors (a lost or doubled quadrant sign fills some
    sectors twice) and r^2 = sin^2 + cos^2 is Exp(mean 2) (64 bins of equal probability of
    1 - exp(-r^2 / 2)): chi-square, 63 df, p > 1e-6 / 4 each (not for bfloat16, see below)."""
    x = normals(name)[1]
    s, c = x[0::2], x[1::2]
    m = 4
    assert_uncorrelated(f"{name} sine vs cosine", s, c, m)
    assert_uncorrelated(f"{name} sine^2 vs cosine^2", s * s, c * c, m)
    if name == "bfloat16":
        # Rounding both halves to 8 significant bits distorts the angle and radius of the
        # pair by up to ~2^-9 relative, systematically near the sector edges: a correct
        # bfloat16 sampler (bfloat16(N32), which test_normal_chisquare etc. check) gives
        # chi-square ~150-220 here.  float16's 11 bits shrink that bias ~256-fold (the
        # non-centrality goes as its square), below what 5 * 10^6 pairs can see.
        return
    n = s.size
    for what, u in (
        ("angle", (np.arctan2(s, c) / (2 * np.pi)) % 1.0),
        ("radius", -np.expm1(-(s * s + c * c) / 2)),
    ):
        observed = np.bincount(np.minimum((u * 64).astype(np.int64), 63), minlength=64)
        chi2 = float(((observed - n / 64) ** 2 / (n / 64)).sum())
        assert_p(f"{name} {what} chi-square {chi2:.1f}", float(stats.chi2.sf(chi2, 63)), m)


def test_float64_normal_resolution():
    """float64 normals carry more than float32 precision: a value equal to its own float32
    rounding has probability ~2^-29, i.e. ~0.02 of them in 10^7 (at most 3: Poisson tail
    ~1e-8); a float32 sampler upcast to float64 (all 10^7 values) fails."""
    x = normals("float64")[1]
    same = int((x == x.astype(np.float32)).sum())
    assert same <= 3, f"{same} of {x.size} float64 normals are float32 values"


N_PAIR = 10**7
PAIRS = {
    "seed s vs s+1": ((SEEDS["float32"], 0, 0), (SEEDS["float32"] + 1, 0, 0)),
    "seed s vs s+2^32": ((SEEDS["float32"], 0, 0), (SEEDS["float32"] + (1 << 32), 0, 0)),
    "stream 0 vs 1": ((11, 0, 0), (11, 1, 0)),
    "stream 0 vs 2^32": ((11, 0, 0), (11, 1 << 32, 0)),
    "offset 0 vs 2^32": ((12, 0, 0), (12, 0, 1 << 32)),
    "offset 0 vs 2^34 (block 2^32)": ((12, 0, 0), (12, 0, 1 << 34)),
}


@pytest.mark.parametrize("which", list(PAIRS))
def test_draws_independent(which):
    """Two draws that must be independent (seeds s and s + 1, or differing in the key's high
    word; streams 0 and 1, or 0 and 2^32; offset 0 and 2^32, and 2^34 where the counter's high
    block word changes): Pearson r of 10^7 float32 normals at equal positions and of their
    squares, |r| < 5.03 / sqrt(n) = 1.6e-3.  Correlation at equal positions misses a stream that
    is a shifted copy of the other, so also: no pair of adjacent raw words of one (any
    alignment, 2^20 words) is a pair of the other (by chance: probability 2^-25)."""
    a_, b_ = PAIRS[which]
    x = fastrand.randn(N_PAIR, generator=gen(*a_)).double().numpy()
    y = fastrand.randn(N_PAIR, generator=gen(*b_)).double().numpy()
    assert_uncorrelated(which, x, y, 2)
    assert_uncorrelated(which + " (squares)", x * x, y * y, 2)
    wa = fastrand.random_words(1 << 20, generator=gen(*a_)).numpy().view(np.uint32)
    wb = fastrand.random_words(1 << 20, generator=gen(*b_)).numpy().view(np.uint32)
    wa, wb = wa.astype(np.uint64), wb.astype(np.uint64)
    keys_a = wa[:-1] << np.uint64(32) | wa[1:]  # every alignment
    keys_b = wb[0::2] << np.uint64(32) | wb[1::2]
    shared = np.intersect1d(keys_a, keys_b)
    assert shared.size == 0, f"{which}: {shared.size} shared 64-bit word pairs"


# --------------------------------------------------------------------------------------------
# uniforms
@pytest.mark.parametrize("name", ["float32", "float64"])
def test_uniform_moments_and_chisquare(name):
    """10^7 rand values: all in [0, 1); central moments about the exact lattice mean
    (1/2 - 2^-25 for float32, 1/2 - 2^-54 for float64): E(x-mu)^k = 1/12, 0, 1/80 for k = 2,
    3, 4, with the variances of (x - mu)^k: 1/12, 1/180, 1/448, 1/2304 - 1/6400 (lattice
    corrections ~2^-48 are far below the standard errors); chi-square over 128 and 65536 equal
    bins (exactly equiprobable on the 2^24 / 2^53 lattice); every bit of the 24 / 53-bit
    integer x * 2^bits balanced (catches a float64 that is an upcast float32).  Bonferroni over
    6 + bits checks.  A mean of 0.501 (z ~ 11) or a variance 1% off (z ~ 35) fail."""
    bits = {"float32": 24, "float64": 53}[name]
    x = fastrand.rand(N, generator=gen(31), dtype=DTYPES[name]).double().numpy()
    n = x.size
    assert x.min() >= 0 and x.max() < 1
    m = 6 + bits
    mu = 0.5 - 2.0 ** -(bits + 1)
    d = x - mu
    d2 = d * d
    assert_z(f"{name} mean", d.mean(), 0, math.sqrt(1 / 12 / n), m)
    assert_z(f"{name} E(x-mu)^2", d2.mean(), 1 / 12, math.sqrt(1 / 180 / n), m)
    assert_z(f"{name} E(x-mu)^3", np.dot(d2, d) / n, 0, math.sqrt(1 / 448 / n), m)
    assert_z(
        f"{name} E(x-mu)^4", np.dot(d2, d2) / n, 1 / 80, math.sqrt((1 / 2304 - 1 / 6400) / n), m
    )
    for nb in (128, 1 << 16):
        observed = np.bincount((x * nb).astype(np.int64), minlength=nb)
        chi2 = float(((observed - n / nb) ** 2 / (n / nb)).sum())
        assert_p(f"{name} {nb}-bin chi-square {chi2:.1f}", float(stats.chi2.sf(chi2, nb - 1)), m)
    ints = (x * 2.0**bits).astype(np.uint64)
    assert np.array_equal(ints.astype(np.float64) * 2.0**-bits, x)
    for b in range(bits):
        ones = int(((ints >> np.uint64(b)) & np.uint64(1)).sum())
        assert_z(f"{name} uniform bit {b}", ones, n / 2, math.sqrt(n) / 2, m)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_uniform_half_lattice(name):
    """float16 / bfloat16 rand: 10^7 values in [0, 1) on the exact lattice k * 2^-11 /
    k * 2^-8, each lattice value equally likely: chi-square, 2047 / 255 df, p > 1e-6."""
    nb = {"float16": 1 << 11, "bfloat16": 1 << 8}[name]
    x = fastrand.rand(N, generator=gen(32), dtype=DTYPES[name]).double().numpy()
    n = x.size
    assert x.min() >= 0 and x.max() < 1
    k = x * nb
    assert np.array_equal(k, np.floor(k))
    observed = np.bincount(k.astype(np.int64), minlength=nb)
    chi2 = float(((observed - n / nb) ** 2 / (n / nb)).sum())
    assert_p(f"{name} lattice chi-square {chi2:.1f}", float(stats.chi2.sf(chi2, nb - 1)))


# --------------------------------------------------------------------------------------------
# raw words
def _word_bits(w):
    return np.unpackbits(w.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")


def test_word_bit_balance():
    """10^6 raw words: the count of ones at each of the 32 bit positions is Binomial(10^6, 1/2)
    (sd 500); 32 checks, |z| < 5.53: within 500000 +- 2767.  A bit stuck or biased by 0.3%
    fails."""
    w = fastrand.random_words(N_WORDS, generator=gen(41)).numpy().view(np.uint32)
    assert w.size == N_WORDS
    ones = _word_bits(w).sum(axis=0, dtype=np.int64)  # little-endian: column b = bit b
    for b in range(32):
        assert_z(f"word bit {b}", int(ones[b]), N_WORDS / 2, math.sqrt(N_WORDS) / 2, 32)


def test_word_lanes():
    """4 * 10^6 words, split by position mod 4 (the four outputs of a Philox block, where a
    broken round or output would show): per lane, the balance of each of the 32 bits (10^6
    words each) and a chi-square of each of the 4 bytes over 256 values (255 df).  Bonferroni
    over 4 * 32 + 16 = 144 checks: |z| < 5.79, chi-square p > 6.9e-9."""
    w = fastrand.random_words(4 * N_WORDS, generator=gen(42)).numpy().view(np.uint32)
    lanes = w.reshape(-1, 4)
    m = 4 * 32 + 16
    for lane in range(4):
        lw = np.ascontiguousarray(lanes[:, lane])
        ones = _word_bits(lw).sum(axis=0, dtype=np.int64)
        for b in range(32):
            assert_z(f"lane {lane} bit {b}", int(ones[b]), N_WORDS / 2, math.sqrt(N_WORDS) / 2, m)
        by = lw.view(np.uint8).reshape(-1, 4)
        for j in range(4):
            observed = np.bincount(by[:, j], minlength=256)
            chi2 = float(((observed - N_WORDS / 256) ** 2 / (N_WORDS / 256)).sum())
            assert_p(
                f"lane {lane} byte {j} chi-square {chi2:.1f}", float(stats.chi2.sf(chi2, 255)), m
            )
