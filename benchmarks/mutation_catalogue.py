"""The curated mutations of benchmarks/mutations.py: small, plausible errors in the core math.

Each is (id, file, exact text, replacement, what it breaks); the text must occur exactly once in
its file. TESTS names the tests to run for each mutated file when no verdict of
`stability check --quick` changes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tests of each mutated file (basenames, found anywhere under tests/).
TESTS = {
    "stability/rates.py": ("test_alpha.py",),
    "stability/gaussian.py": ("test_gaussian.py",),
    **{
        f"stability/families/{name}.py": ("test_operator.py", "test_families.py")
        for name in ("data", "quadrature", "gaussian", "student_t", "means_mixture")
    },
    "stability/operator.py": ("test_operator.py",),
    "stability/loop.py": ("test_loop.py",),
    "stability/checks": ("test_checks.py", "test_checks_verdict.py"),
}


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str
    old: str
    new: str
    what: str


M = Mutation
MUTATIONS = [
    # ---- stability/rates.py: alpha(n), alpha_d(n)
    M(
        "R1",
        "stability/rates.py",
        "    x = (n_arr - 1.0) / 2.0",
        "    x = n_arr / 2.0",
        "log_alpha: n instead of n - 1",
    ),
    M(
        "R2",
        "stability/rates.py",
        "math.gamma(v + 0.5) / math.gamma(v)",
        "math.gamma(v + 1.0) / math.gamma(v)",
        "alpha(n): Gamma(x + 1) for Gamma(x + 1/2)",
    ),
    M(
        "R3",
        "stability/rates.py",
        "(Fraction(1, 2**k) - 2) * bern[k + 1]",
        "(Fraction(1, 2**k) - 1) * bern[k + 1]",
        "Stirling series of alpha(n) (n > 41): wrong B_k(1/2) factor",
    ),
    M(
        "R4",
        "stability/rates.py",
        "    return -np.expm1(log_alpha(n))",
        "    return 1.0 - np.exp(log_alpha(n))",
        "1 - alpha(n) with cancellation",
    ),
    M(
        "R5",
        "stability/rates.py",
        "2 ** (k / 2 - 1) * sp.gamma(k / 2)",
        "2 ** (k / 2) * sp.gamma(k / 2)",
        "sympy: chi density normalised wrongly",
    ),
    M(
        "R6",
        "stability/rates.py",
        "return 1.0 - (d + 1) / (8.0 *",
        "return 1.0 - (d + 2) / (8.0 *",
        "alpha_d asymptotics: (d + 2) for (d + 1)",
    ),
    M(
        "R7",
        "stability/rates.py",
        "    k0 = d * p + d * (d - 1) / 2 + d - 1",
        "    k0 = d * p + d * (d - 1) / 2 + d",
        "alpha_d quadrature: Jacobian power off by one",
    ),
    M(
        "R8",
        "stability/rates.py",
        "    value = mean_trace_root / (d * math.sqrt(m))",
        "    value = mean_trace_root / (d * math.sqrt(n))",
        "alpha_d quadrature: sqrt(n) for sqrt(n-1)",
    ),
    M(
        "R9",
        "stability/rates.py",
        "    zc = z - z.mean(axis=1, keepdims=True)\n    return sqrtm_psd",
        "    zc = z\n    return sqrtm_psd",
        "Wishart draws not centred (n dof for n - 1)",
    ),
    M(
        "R10",
        "stability/rates.py",
        "        - special.multigammaln(d / 2, d)\n",
        "        - special.multigammaln(d / 2, d - 1)\n",
        "Wishart eigenvalue density constant",
    ),
    # ---- stability/gaussian.py: derivatives, G_lambda in closed form, refits
    M(
        "G1",
        "stability/gaussian.py",
        "    g_p_full = 0.5 * inv_spd(prec)[None]",
        "    g_p_full = inv_spd(prec)[None]",
        "score: Sigma for Sigma/2 (the paper's eq 59)",
    ),
    M(
        "G2",
        "stability/gaussian.py",
        "    g_mu = v @ prec.T",
        "    g_mu = -v @ prec.T",
        "score: sign of the mu-block",
    ),
    M(
        "G3",
        "stability/gaussian.py",
        "    out[:, :d, :d] = -prec",
        "    out[:, :d, :d] = -0.5 * prec",
        "Hessian: mu-block halved",
    ),
    M(
        "G4",
        "stability/gaussian.py",
        "    sym_proj = 0.5 * (np.eye(d * d) + commutation_matrix(d))",
        "    sym_proj = np.eye(d * d)",
        "Hessian: mixed block not symmetrised (full coordinates)",
    ),
    M(
        "G5",
        "stability/gaussian.py",
        "            k[i + j * d, j + i * d] = 1.0",
        "            k[i + j * d, i + j * d] = 1.0",
        "commutation matrix = identity (transpose lost)",
    ),
    M(
        "G6",
        "stability/gaussian.py",
        "0.5 * sig[0] ** 2))",
        "sig[0] ** 2))",
        "Assumption 2's alpha: lambda_min(Sigma)^2 without 1/2",
    ),
    M(
        "G7",
        "stability/gaussian.py",
        "        return math.sqrt(2.0 - 1.0 / d)",
        "        return math.sqrt(2.0)",
        "Lipschitz constant in vech coordinates",
    ),
    M(
        "G8",
        "stability/gaussian.py",
        "    w = lam / (1.0 + lam)\n    new_mu",
        "    w = 1.0 / (1.0 + lam)\n    new_mu",
        "G^inf: weights of data and model swapped",
    ),
    M(
        "G9",
        "stability/gaussian.py",
        "w * cov + w * (1.0 - w) * np.einsum",
        "w * cov + w * np.einsum",
        "G^inf: mixture's between-means term without (1 - w)",
    ),
    M(
        "G10",
        "stability/gaussian.py",
        "    new_cov = centred.T @ centred / (len(data) - ddof)",
        "    new_cov = centred.T @ centred / (len(data) - 1 - ddof)",
        "g_n: covariance divisor N - 1",
    ),
    M(
        "G11",
        "stability/gaussian.py",
        "centred, centred) / (data.shape[1] - ddof)",
        "centred, centred) / (data.shape[1] - 1 - ddof)",
        "g_n_batch: covariance divisor N - 1 (issue 18)",
    ),
    M(
        "G12",
        "stability/gaussian.py",
        "    root = sqrtm_psd(cov)\n    synth",
        "    root = cov\n    synth",
        "g_n_batch: samples scaled by Sigma instead of sqrt(Sigma)",
    ),
    M(
        "G13",
        "stability/gaussian.py",
        "    data = synth if math.isinf(lam) else np.concatenate([real, synth], axis=1)",
        "    data = np.concatenate([real, synth], axis=1)",
        "g_n_batch: fully synthetic refit keeps the real data",
    ),
    M(
        "G14",
        "stability/gaussian.py",
        "    return lam / (1.0 + lam) * np.eye(",
        "    return lam / (1.0 - lam) * np.eye(",
        "exact Jacobian at theta*: sign in the denominator",
    ),
    M(
        "G15",
        "stability/gaussian.py",
        "    minus_grad_mat = 0.5 * np.outer(v, v) - sigma",
        "    minus_grad_mat = 0.5 * np.outer(v, v) - 0.5 * sigma",
        "eq (59) as printed replaced by the correct block (the finding must disappear)",
    ),
    M(
        "G16",
        "stability/gaussian.py",
        "0.5 * np.kron(sigma, sigma)]])",
        "np.kron(sigma, sigma)]])",
        "eq (60) as printed: factor 1/2 lost",
    ),
    M(
        "G17",
        "stability/gaussian.py",
        "    synth = mu + rng.standard_normal((k, d)) @ sqrtm_psd(cov)",
        "    synth = mu + rng.standard_normal((k, d)) @ cov",
        "g_n: samples scaled by Sigma",
    ),
    # ---- stability/families/: quadratures, densities, derivatives
    M(
        "F1",
        "stability/families/quadrature.py",
        "    return _frozen(z, w / math.sqrt(2 * math.pi))",
        "    return _frozen(z, w / math.sqrt(math.pi))",
        "Gauss-Hermite weights not normalised",
    ),
    M(
        "F2",
        "stability/families/data.py",
        "wk * stats.norm.pdf(x, m, s) for",
        "wk * stats.norm.pdf(x, m, s * s) for",
        "mixture data density: variance for sd",
    ),
    M(
        "F3",
        "stability/families/data.py",
        "wk * stats.norm.cdf(x, m, s) for",
        "wk * stats.norm.cdf(x, m, 2 * s) for",
        "mixture data CDF: twice the sd (eps = W1 wrong)",
    ),
    M(
        "F4",
        "stability/families/gaussian.py",
        "        return gaussian_nodes(mu, inv_spd(prec))",
        "        return gaussian_nodes(mu, prec)",
        "Gaussian family nodes: precision for covariance",
    ),
    M(
        "F5",
        "stability/families/quadrature.py",
        "    return mean + zs @ np.linalg.cholesky(cov).T, ws",
        "    return mean + zs @ np.linalg.cholesky(cov), ws",
        "Gaussian nodes: Cholesky transposed",
    ),
    M(
        "F6",
        "stability/families/student_t.py",
        "- (nu + 1) / 2 * sp.log(1 + (x - m) ** 2",
        "- (nu + 2) / 2 * sp.log(1 + (x - m) ** 2",
        "Student-t log-density exponent",
    ),
    M(
        "F7",
        "stability/families/student_t.py",
        "w * c * np.cos(phi) ** (nu - 1)",
        "w * c * np.cos(phi) ** nu",
        "Student-t quadrature: wrong power of cos",
    ),
    M(
        "F8",
        "stability/families/means_mixture.py",
        "        h[:, idx, idx] += r * u * u - r / s2",
        "        h[:, idx, idx] += r * u * u - r / self.sigma",
        "mixture Hessian: 1/sigma for 1/sigma^2",
    ),
    M(
        "F9",
        "stability/families/means_mixture.py",
        '        h = -np.einsum("nk,nl->nkl", ru, ru)',
        '        h = np.einsum("nk,nl->nkl", ru, ru)',
        "mixture Hessian: sign of the outer product",
    ),
    M(
        "F10",
        "stability/families/means_mixture.py",
        "+ 2 * r * u * du - dr / s2",
        "+ r * u * du - dr / s2",
        "mixture d/dx Hessian: factor 2 lost (L of Assumption 1)",
    ),
    M(
        "F11",
        "stability/families/gaussian.py",
        "        return stats.norm.cdf(x, mu[0], 1.0 / math.sqrt(prec[0, 0]))",
        "        return stats.norm.cdf(x, mu[0], 1.0 / prec[0, 0])",
        "Gaussian CDF: variance for sd",
    ),
    # ---- stability/operator.py: the maximisation, G_lambda, Jacobians, Theorem 1's constants
    M(
        "O1",
        "stability/operator.py",
        "        if np.linalg.norm(g) <= tol * (1.0 + np.linalg.norm(theta)):",
        "        if np.linalg.norm(g) <= 1e6 * tol * (1.0 + np.linalg.norm(theta)):",
        "maximise stops a million times too early",
    ),
    M(
        "O2",
        "stability/operator.py",
        "        w = np.concatenate([wd, lam * wm])\n        return maximise",
        "        w = np.concatenate([lam * wd, wm])\n        return maximise",
        "G^inf: lambda on the data instead of the model",
    ),
    M(
        "O3",
        "stability/operator.py",
        '        x, w = self.data.nodes()\n        return np.einsum("n,nij->ij", w, self.family.hessian(x, self.theta_star()))',
        '        x, w = self.family.nodes(self.theta_star())\n        return np.einsum("n,nij->ij", w, self.family.hessian(x, self.theta_star()))',
        "A: expectation under p_theta* instead of p_data",
    ),
    M(
        "O4",
        "stability/operator.py",
        'return np.einsum("n,nij->ij", w, self.family.hessian(x, theta_p))',
        'return np.einsum("n,nij->ij", w, self.family.hessian(x, theta))',
        "H2'': Hessian at theta instead of theta'",
    ),
    M(
        "O5",
        "stability/operator.py",
        '"n,ni,nj->ij", w, self.family.score(x, theta_p), self.family.score(x, theta)',
        '"n,ni,nj->ij", w, self.family.score(x, theta), self.family.score(x, theta_p)',
        "mixed derivative transposed",
    ),
    M(
        "O6",
        "stability/operator.py",
        "            jac[:, j] = (plus - minus) / (2 * step)",
        "            jac[:, j] = (plus - minus) / step",
        "finite differences: central step halved",
    ),
    M(
        "O7",
        "stability/operator.py",
        "        return -lam * np.linalg.solve(h1 + lam * h22, mixed)",
        "        return lam * np.linalg.solve(h1 + lam * h22, mixed)",
        "eq (76): sign",
    ),
    M(
        "O8",
        "stability/operator.py",
        "        return np.linalg.solve(np.eye(p) + lam * m, lam * m)",
        "        return np.linalg.solve(np.eye(p) - lam * m, lam * m)",
        "eq (78): sign of I + lam A^-1 B",
    ),
    M(
        "O9",
        "stability/operator.py",
        "        return float(-np.linalg.eigvalsh(0.5 * (self.A() + self.A().T))[-1])",
        "        return float(-np.linalg.eigvalsh(0.5 * (self.A() + self.A().T))[0])",
        "Assumption 2's alpha: smallest instead of largest eigenvalue",
    ),
    M(
        "O10",
        "stability/operator.py",
        "        return lam * c / denom if denom > 0 else math.inf",
        "        return lam * a / denom if denom > 0 else math.inf",
        "eq (11): alpha for alpha + eps L",
    ),
    M(
        "O11",
        "stability/operator.py",
        "        return 0.5 / (1.0 + self.lipschitz()",
        "        return 1.0 / (1.0 + self.lipschitz()",
        "Theorem 1's condition: 1 for 1/2",
    ),
    M(
        "O12",
        "stability/operator.py",
        "                theta = maximise(self.family, start, x, w, tol=1e-13)",
        "                theta = maximise(self.family, start, x, w, tol=1e-6)",
        "theta* computed to 1e-6 only",
    ),
    # ---- stability/loop.py: Algorithm 1 and its policies
    M(
        "L1",
        "stability/loop.py",
        "int(math.floor(lam * n + 1e-9))",
        "int(math.ceil(lam * n - 1e-9))",
        "synthetic count: ceil for floor",
    ),
    M(
        "L2",
        "stability/loop.py",
        "    return n if math.isinf(lam) else",
        "    return n - 1 if math.isinf(lam) else",
        "fully synthetic: n - 1 samples",
    ),
    M(
        "L3",
        "stability/loop.py",
        "                out.append(n + t * k)",
        "                out.append(n + (t - 1) * k)",
        "accumulate: sizes off by one batch",
    ),
    M(
        "L4",
        "stability/loop.py",
        "            state.pool = state.pool.union(model.sample(k, rng))",
        "            state.pool = real.union(model.sample(k, rng))",
        "accumulate keeps only the last batch",
    ),
    M(
        "L5",
        "stability/loop.py",
        "    for t in range(state.t + 1, iterations + 1):",
        "    for t in range(state.t + 1, iterations):",
        "Algorithm 1: one iteration short",
    ),
    # ---- the checks' own reference formulas
    M(
        "C1",
        "stability/checks/lemma_a2.py",
        "xc, xc) / (n - 1))",
        "xc, xc) / n)",
        "checks' refit (eq 5): divisor n for n - 1",
    ),
    M(
        "C2",
        "stability/checks/props34.py",
        "    scatter = (1 - 1 / big_n) * (n_real * data_cov + k * cov)",
        "    scatter = n_real * data_cov + k * cov",
        "closed-form refit expectation without 1 - 1/N",
    ),
    M(
        "C3",
        "stability/checks/props34.py",
        '    return m, second - np.einsum("ri,rj->rij", m, m)',
        "    return m, second",
        "independent simulator: second moment for covariance",
    ),
    M(
        "C4",
        "stability/checks/lemma_a2.py",
        "        rhs = factored / math.sqrt(n - 1)",
        "        rhs = factored / (n - 1)",
        "eq (51) check reads the printed scale",
    ),
    M(
        "C5",
        "stability/checks/prop1.py",
        "    return x.mean(axis=1), x.std(axis=1, ddof=1)",
        "    return x.mean(axis=1), x.std(axis=1, ddof=0)",
        "checks' 1D refit: biased variance",
    ),
    M(
        "C6",
        "stability/checks/theorem2.py",
        "w * (cov + np.outer(mu, mu))",
        "w * cov",
        "independent G^inf: model's second moment without mu mu^T",
    ),
]
