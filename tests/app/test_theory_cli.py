"""`stability jacobian --family/--data`, `check --family/--data` and `map` from the command line.

The Student-t (nu = 4) fitted to Laplace(0, 1) data is recomputed here by adaptive quadrature
from hand-written derivatives (not the toolkit's sympy code, rules or maximiser).
"""

import csv
import json
import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from stability.app.cli import main

NU = 4.0


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, *args):
    code, out, err = run(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("stability") and "Traceback" not in err
    return lines[0]


# ---- the independent computation -------------------------------------------------------------


def t_hessian(x, m, s, nu=NU):
    """d^2 log p / dtheta^2 of the location-scale t, from log p = nu log s - (nu+1)/2 log q."""
    u = x - m
    q = nu * s * s + u * u
    h_mm = (nu + 1) * (u * u - nu * s * s) / q**2
    h_ms = -2 * nu * (nu + 1) * s * u / q**2
    h_ss = -nu / s**2 - nu * (nu + 1) * (u * u - nu * s * s) / q**2
    return np.array([[h_mm, h_ms], [h_ms, h_ss]])


def laplace_expect(f):
    half = lambda x: f(x) * 0.5 * math.exp(-x)  # noqa: E731 - E over Laplace(0, 1), symmetric halves
    return integrate.quad(
        lambda x: half(x) + f(-x) * 0.5 * math.exp(-x),
        0,
        np.inf,
        epsabs=1e-13,
        epsrel=1e-12,
        limit=200,
    )[0]


@pytest.fixture(scope="module")
def reference():
    # m* = 0 by symmetry; s* solves E[d log p / ds] = nu/s - nu (nu+1) s E[1/q] = 0.
    def score_s(s):
        return NU / s - NU * (NU + 1) * s * laplace_expect(lambda x: 1 / (NU * s * s + x * x))

    s_star = optimize.brentq(score_s, 0.3, 3, xtol=1e-14)
    a = np.array(
        [
            [laplace_expect(lambda x, i=i, j=j: t_hessian(x, 0, s_star)[i, j]) for j in range(2)]
            for i in range(2)
        ]
    )
    b = np.array(
        [
            [
                integrate.quad(
                    lambda x, i=i, j=j: (
                        t_hessian(x, 0, s_star)[i, j] * stats.t.pdf(x, NU, scale=s_star)
                    ),
                    -np.inf,
                    np.inf,
                    epsabs=1e-13,
                    limit=200,
                )[0]
                for j in range(2)
            ]
            for i in range(2)
        ]
    )
    mu = np.sort(np.linalg.eigvals(np.linalg.solve(a, b)).real)

    # eps = 2 int_0^inf |F_t - F_Laplace|, split where the CDFs cross (kinks of the integrand);
    # on x > 0 written with survival functions, which keep their digits in the tails.
    def gap(x):
        return stats.laplace.sf(x) - stats.t.sf(x, NU, scale=s_star)

    xs = np.linspace(1e-9, 80, 80001)
    d = gap(xs)
    crossing = np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)
    cuts = [optimize.brentq(gap, xs[i], xs[i + 1], xtol=1e-15) for i in crossing]
    pieces = [0.0, *cuts, 80.0, np.inf]
    eps = 2 * sum(
        integrate.quad(lambda x: abs(gap(x)), lo, hi, epsabs=1e-13, limit=500)[0]
        for lo, hi in zip(pieces[:-1], pieces[1:])
    )
    grid = np.linspace(-60 * s_star, 60 * s_star, 400001)
    dh = np.gradient(t_hessian(grid, 0, s_star), grid, axis=2)
    lip = np.linalg.norm(np.moveaxis(dh, 2, 0), ord=2, axis=(1, 2)).max()
    alpha = -np.linalg.eigvalsh(a).max()
    return dict(s=s_star, A=a, B=b, mu=mu, eps=eps, L=lip, alpha=alpha)


def test_student_t_on_laplace_in_one_line_agrees_with_quadrature(cli, reference):
    proc = cli(
        "jacobian",
        "--family",
        "student-t:nu=4",
        "--data",
        "laplace",
        "--lam",
        "0.5",
        "1",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ref = reference
    assert np.allclose(out["theta_star"], [0.0, ref["s"]], atol=1e-10)
    assert np.allclose(out["A"], ref["A"], atol=1e-9)
    assert np.allclose(out["B_tilde"], ref["B"], atol=1e-9)
    assert np.allclose(sorted(out["mu"]), ref["mu"], atol=1e-9)
    assert out["eps"] == pytest.approx(ref["eps"], abs=1e-11)
    assert out["alpha"] == pytest.approx(ref["alpha"], abs=1e-10)
    assert out["L"] == pytest.approx(ref["L"], rel=1e-6)
    lam_t = 0.5 / (1 + ref["L"] * ref["eps"] / ref["alpha"])
    assert out["lambda_max_theorem1"] == pytest.approx(lam_t, rel=1e-6)
    assert out["stable_for_every_finite_lambda"] and out["lambda_critical"] == "inf"
    for row in out["rows"]:
        lam = row["lam"]
        expect = lam * ref["mu"] / (1 + lam * ref["mu"])
        assert np.allclose(sorted(row["jacobian_eigenvalues_formula"]), expect, atol=1e-9)
        assert np.allclose(row["eigenvalues"], expect, atol=1e-6)  # finite differences of G
        assert row["spectral_radius"] == pytest.approx(expect.max(), abs=1e-6)
        assert row["theorem1_condition"] == (lam < lam_t)
        t2 = row["theorem2"]
        assert t2["a"] > 0 and t2["b"] >= 1 and 0 < t2["rho"] < 1


def test_text_report_names_every_quantity(capsys):
    code, out, _ = run(
        capsys,
        "jacobian",
        "--family",
        "laplace",
        "--data",
        "t:df=5",
        "--lam",
        "0.2",
        "3",
        "--theorem2-draws",
        "0",
    )
    assert code == 0
    for word in (
        "theta*",
        "A  =",
        "B~ =",
        "mu =",
        "eps = W1",
        "critical lambda: none",
        "Theorem 1's condition",
        "bound (11)",
    ):
        assert word in out, word


def test_model_and_family_give_the_same_operator(capsys):
    code, out, _ = run(
        capsys, "jacobian", "--model", "student-t", "--lam", "1", "--json", "--theorem2-draws", "0"
    )
    model = json.loads(out)
    code, out, _ = run(
        capsys,
        "jacobian",
        "--family",
        "student-t:nu=4",
        "--data",
        "0.7*norm:loc=-0.5,scale=0.6 + 0.3*norm:loc=1.5,scale=0.8",
        "--lam",
        "1",
        "--json",
        "--theorem2-draws",
        "0",
    )
    family = json.loads(out)
    for key in ("theta_star", "A", "B_tilde", "mu"):
        assert np.allclose(model[key], family[key], atol=1e-8), key
    assert model["eps"] == pytest.approx(family["eps"], abs=1e-7)


def test_sample_data_carry_a_bootstrap_error(capsys, tmp_path):
    x = np.random.default_rng(3).exponential(2.0, 300)
    np.save(tmp_path / "x.npy", x)
    code, out, _ = run(
        capsys,
        "jacobian",
        "--family",
        "exponential",
        "--data",
        tmp_path / "x.npy",
        "--lam",
        "1",
        "--json",
        "--theorem2-draws",
        "0",
        "--bootstrap",
        "40",
    )
    res = json.loads(out)
    assert code == 0 and res["bootstrap"] == 40
    assert res["theta_star"][0] == pytest.approx(1 / x.mean(), rel=1e-10)
    se = res["se"]["theta_star"][0]
    assert 0.5 < se / (x.std() / x.mean() ** 2 / math.sqrt(x.size)) < 1.5


def test_formula_and_file_families_from_the_command_line(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "jacobian",
        "--family",
        "sympy:-log(2*b) - abs(x)/b; positive=b; start=1",
        "--data",
        "t:df=5",
        "--lam",
        "1",
        "--json",
        "--theorem2-draws",
        "0",
    )
    formula = json.loads(out)
    code, out, _ = run(
        capsys,
        "jacobian",
        "--family",
        "laplace",
        "--data",
        "t:df=5",
        "--lam",
        "1",
        "--json",
        "--theorem2-draws",
        "0",
    )
    shipped = json.loads(out)
    assert formula["derivatives"] == "sympy"
    assert formula["theta_star"][0] == pytest.approx(shipped["theta_star"][0], abs=1e-9)
    assert formula["eps"] == pytest.approx(shipped["eps"], abs=1e-7)


@pytest.mark.parametrize(
    "args",
    [
        ("--family", "nosuch", "--data", "laplace"),
        ("--family", "sympy:log(x +", "--data", "laplace"),
        ("--family", "student-t", "--data", "nosuchlaw"),
        ("--family", "bernoulli", "--data", "bernoulli:p=0"),
        ("--family", "poisson", "--data", "laplace"),
        ("--family", "exponential", "--data", "norm"),
        ("--family", "student-t"),
        ("--model", "student-t", "--data", "laplace"),
        ("--model", "student-t", "--family", "laplace", "--data", "laplace"),
        ("--family", "student-t", "--data", "laplace", "--theorem2-draws", "-1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args):
    one_line_error(capsys, "jacobian", *args, "--lam", "1")


def test_nan_data_is_one_line_and_exit_2(capsys, tmp_path):
    x = np.array([0.1, np.nan, 2.0])
    np.save(tmp_path / "nan.npy", x)
    line = one_line_error(
        capsys, "jacobian", "--family", "student-t", "--data", tmp_path / "nan.npy", "--lam", "1"
    )
    assert "non-finite" in line


def test_check_on_a_family_and_data(capsys):
    code, out, _ = run(
        capsys, "check", "--family", "student-t:nu=4", "--data", "laplace", "--quick", "--json"
    )
    assert code == 0
    results = {r["name"]: r for r in json.loads(out)}
    assert results["family-lemma-e1-eq78"]["verdict"] == "fails"  # B as printed: wrong sign
    others = [r for n, r in results.items() if n != "family-lemma-e1-eq78"]
    assert len(others) == 8 and all(r["verdict"] == "holds" for r in others), [
        (r["name"], r["summary"]) for r in others if r["verdict"] != "holds"
    ]
    one_line_error(capsys, "check", "--family", "student-t", "--data", "laplace", "prop1-x")
    one_line_error(capsys, "check", "--family", "student-t")


def test_check_jobs_gives_the_serial_json_and_a_dead_worker_is_one_line_exit_1(capsys):
    import multiprocessing
    import os

    from stability import checks

    names = ["alpha-bounds", "lemma-a2-i", "prop2-eq60"]
    outs = []
    for jobs in ("1", "2"):
        code, out, _ = run(capsys, "check", *names, "--quick", "--json", "--jobs", jobs)
        assert code == 0
        outs.append([{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(out)])
    assert outs[0] == outs[1] and [r["name"] for r in outs[1]] == names
    one_line_error(capsys, "check", "alpha-bounds", "--jobs", "0")
    if "fork" not in multiprocessing.get_all_start_methods():
        return  # the workers see a check registered by the test only when forked

    def dies(ctx):
        os._exit(3)

    checks.all_checks()
    checks.REGISTRY["test-dies"] = checks.CheckSpec("test-dies", "c", "r", dies, "literature")
    try:
        code, out, err = run(capsys, "check", "test-dies", "alpha-bounds", "--jobs", "2")
    finally:
        checks.REGISTRY.pop("test-dies")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "test-dies" in lines[0], err
    assert "Traceback" not in err


def test_map_writes_csv_png_and_config(capsys, tmp_path):
    out_dir = tmp_path / "map"
    code, out, _ = run(
        capsys,
        "map",
        "--family",
        "means-mixture:sigma=0.7",
        "--data",
        "0.5*norm:loc=-1,scale=0.9 + 0.5*norm:loc=1.2,scale=0.6",
        "--lam-range",
        "0.05",
        "20",
        "9",
        "--eps-steps",
        "3",
        "--out",
        out_dir,
    )
    assert code == 0
    assert (out_dir / "config.json").is_file() and (out_dir / "figures" / "map.png").stat().st_size
    rows = list(csv.DictReader(open(out_dir / "map.csv")))
    assert len(rows) == 3 * 9
    eps = sorted({float(r["eps"]) for r in rows})
    # The path starts well specified (eps = 0 up to the quadrature's 1e-8) and leaves it.
    assert eps[0] < 1e-6 and eps[1] > 1e-3
    for r in rows:
        lam, lo, hi = float(r["lam"]), float(r["mu_min"]), float(r["mu_max"])
        expect = max(abs(lam * m / (1 + lam * m)) for m in (lo, hi))
        assert float(r["spectral_radius"]) == pytest.approx(expect, rel=1e-10)
        assert float(r["norm_J"]) >= float(r["spectral_radius"]) - 1e-12
        cond = float(r["lam"]) < float(r["lambda_theorem1"])
        assert r["theorem1_condition"] == str(cond)


def test_map_with_a_template_and_bad_input_writes_nothing(capsys, tmp_path):
    out_dir = tmp_path / "tmap"
    code, out, _ = run(
        capsys,
        "map",
        "--family",
        "student-t:nu=4",
        "--eps-family",
        "t:df={}",
        "--eps-values",
        "30",
        "4",
        "2.5",
        "--lam-range",
        "0.1",
        "10",
        "3",
        "--out",
        out_dir,
        "--json",
    )
    levels = json.loads(out)["levels"]
    assert code == 0 and [lv["data"] for lv in levels] == ["t:df=30", "t:df=4", "t:df=2.5"]
    assert levels[1]["eps"] < 1e-7  # t(4) data: well specified
    for bad in (
        ("--data", "laplace", "--eps-values", "1"),  # values without a template
        ("--eps-family", "t:df={}"),  # template without values
        ("--data", "laplace", "--lam-range", "1", "0.1"),
        ("--data", "nosuchlaw"),
        ("--eps-family", "t:df={}", "--eps-values", "-1"),
    ):
        target = tmp_path / f"bad{abs(hash(bad))}"
        one_line_error(capsys, "map", "--family", "student-t", *bad, "--out", target)
        assert not target.exists()


def test_parser_lists_every_shipped_setting():
    from stability.app.theory import SHIPPED_SETTINGS
    from stability.families import default_settings

    assert list(SHIPPED_SETTINGS) == [name for name, _, _ in default_settings()]
