"""`stability reproduce`: the report at the smallest size, its consistency, resume, timing, sizes,
the deep part's baseline comparison, bad input."""

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import stability.app.reproduce.run as driver
from stability.app import reproduce as rp
from stability.app.reproduce import deep, gaussian, share, sizes, theory, twod
from stability.app.threads import one_thread
from stability.errors import UsageError
from stability.runs.runfolder import read_summary

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return rp.reproduce(out, size="tiny"), out


def test_every_section_is_present(report):
    results, out = report
    keys = {s["key"] for s in results["sections"]}
    expected = {
        "theory-checks",
        "theorem1",
        "gaussian-collapse",
        "gaussian-lambda",
        "gaussian-policies",
    }
    expected |= {"moons-otcfm", "8gaussians-ddpm"} if "2d" in results["meta"]["parts"] else set()
    expected |= {"deep-digits"} if "deep" in results["meta"]["parts"] else set()
    assert expected <= keys
    md = (out / "report.md").read_text()
    for s in results["sections"]:
        assert f"### {s['title']}" in md
        assert s["claim"] in md and s["reference"] in md


def deep_metrics(out: Path) -> dict:
    """(seed, lambda) -> the run's metrics.json, read from the run folders directly."""
    runs = {}
    for path in sorted((out / "parts" / "deep").glob("seed*/lam_*/metrics.json")):
        seed = int(path.parent.parent.name.removeprefix("seed"))
        lam = float(path.parent.name.removeprefix("lam_"))
        runs[seed, lam] = json.loads(path.read_text())
    return runs


def test_every_lambda_of_the_deep_part_starts_from_one_model(report):
    results, out = report
    if "deep" not in results["meta"]["parts"]:
        pytest.skip("the deep part needs the torch extra")
    runs = deep_metrics(out)
    seeds = sorted({s for s, _ in runs})
    assert len(seeds) == sizes.TINY.deep.seeds
    assert {lam for _, lam in runs} == set(deep.LAMBDAS)
    for s in seeds:
        first = runs[s, 0.0]
        for lam in deep.LAMBDAS[1:]:
            other = runs[s, lam]
            assert other["0"]["fid"] == first["0"]["fid"]  # the same t = 0 network, the same seeds
            assert other["1"]["fid"] != first["1"]["fid"]  # then the data policies differ
    # The seeds are independent replicates: their t = 0 networks differ.
    assert runs[seeds[0], 0.0]["0"]["fid"] != runs[seeds[1], 0.0]["0"]["fid"]


def test_a_lambda_handed_its_seeds_t0_stage_ends_as_if_it_computed_it(report, tmp_path):
    """Sharing the t = 0 stage is exact: a lambda of the part, rerun alone in a fresh folder
    with the same options (its t = 0 computed from the baseline's checkpoint by itself, its own
    feature network), records the same metrics at every iteration."""
    results, out = report
    if "deep" not in results["meta"]["parts"]:
        pytest.skip("the deep part needs the torch extra")
    from deep.retrain import quick_config, run_deep

    run = next(r for r in deep.plan(sizes.TINY.deep, 0, out / "parts" / "deep") if r.lam == 1.0)
    with one_thread():  # as the part ran: bitwise the same arithmetic
        alone = run_deep(quick_config(**run.options), tmp_path / "alone", figures=False)
    shared = json.loads((run.folder / "metrics.json").read_text())
    baseline = json.loads((run.folder.parent / "lam_0" / "metrics.json").read_text())
    assert (
        set(shared)
        == set(alone["metrics"])
        == {str(t) for t in range(sizes.TINY.deep.iterations + 1)}
    )
    for t, row in alone["metrics"].items():
        for name, value in row.items():
            if (t, name) != ("0", "loss"):
                assert shared[t][name] == value, (t, name)
    # Alone it records no loss at t = 0 (it did not train); handed the stage, the baseline's
    # loss of the fit that made its t = 0 network.
    assert math.isnan(alone["metrics"]["0"]["loss"])
    assert shared["0"]["loss"] == baseline["0"]["loss"] and math.isfinite(shared["0"]["loss"])
    assert shared["1"]["fid"] != baseline["1"]["fid"]  # then lambda's own data


def test_deep_runs_share_the_feature_network_and_draw_no_figures(report):
    results, out = report
    if "deep" not in results["meta"]["parts"]:
        pytest.skip("the deep part needs the torch extra")
    folders = sorted((out / "parts" / "deep").glob("seed*/lam_*"))
    assert len(folders) == sizes.TINY.deep.seeds * len(deep.LAMBDAS)
    first = {f.name: f.read_bytes() for f in (folders[0] / "features").iterdir()}
    assert {p.suffix for p in map(Path, first)} == {".pt", ".npz"}
    for folder in folders:
        assert {f.name: f.read_bytes() for f in (folder / "features").iterdir()} == first
        assert not (folder / "figures").exists()


def test_no_gaussian_simulation_draws_its_own_figures(report):
    """The Gaussian part's figures are the report's three; its 7 simulations draw none."""
    results, out = report
    sims = sorted(p for p in (out / "parts" / "gaussian").iterdir() if p.is_dir())
    assert len(sims) == len(gaussian.plan(sizes.TINY.gaussian, 0))
    assert all((sim / "summary.csv").is_file() and not (sim / "figures").exists() for sim in sims)
    shown = [f for s in results["sections"] if s["part"] == "gaussian" for f in s["figures"]]
    assert sorted(Path(f).name for f in shown) == [
        "gaussian_collapse.png",
        "gaussian_lambda_w2.png",
        "gaussian_policies.png",
    ]


def test_share_t0_hands_a_finished_stage_to_a_run_not_started(tmp_path):
    source, target, started = tmp_path / "base", tmp_path / "lam", tmp_path / "started"
    for i, parts in enumerate(share.T0_FILES):
        (source / Path(*parts)).parent.mkdir(parents=True, exist_ok=True)
        (source / Path(*parts)).write_bytes(bytes([i]) * 10)
    assert not share.share_t0(source, target)  # no metrics yet: t = 0 is not finished
    rows = {"0": {"fid": 12.5, "loss": 0.25}, "1": {"fid": 30.0, "loss": 0.2}}
    (source / "metrics.json").write_text(json.dumps(rows))
    started.mkdir()
    (started / "config.json").write_text("{}")
    assert not share.share_t0(source, started)
    assert sorted(p.name for p in started.iterdir()) == ["config.json"]
    assert share.share_t0(source, target)
    for parts in share.T0_FILES:
        assert (target / Path(*parts)).read_bytes() == (source / Path(*parts)).read_bytes()
    assert json.loads((target / "metrics.json").read_text()) == {"0": rows["0"]}


def test_deep_numbers_are_the_runs_statistics(report):
    """The section's means, standard errors and differences to the baseline, recomputed from the
    runs' metrics.json files."""
    results, out = report
    if "deep" not in results["meta"]["parts"]:
        pytest.skip("the deep part needs the torch extra")
    runs = deep_metrics(out)
    seeds = sorted({s for s, _ in runs})
    T = sizes.TINY.deep.iterations
    section = next(s for s in results["sections"] if s["key"] == "deep-digits")

    def fid(lam):  # (seeds, T + 1)
        return np.array([[runs[s, lam][str(t)]["fid"] for t in range(T + 1)] for s in seeds])

    for lam in deep.LAMBDAS:
        numbers = section["numbers"][f"{lam:g}"]
        assert numbers["fid"]["mean"] == pytest.approx(fid(lam).mean(axis=0), rel=1e-12)
        assert numbers["fid"]["se"] == pytest.approx(stats.sem(fid(lam), axis=0), rel=1e-12)
        if lam != 0.0:
            per_seed = fid(lam)[:, -1] - fid(0.0)[:, -1]
            versus = numbers["fid_minus_baseline"]
            assert versus["diff"] == pytest.approx(per_seed.mean(), rel=1e-12)
            assert versus["se"] == pytest.approx(stats.sem(per_seed), rel=1e-12)
    summary = read_summary(out / "parts" / "deep" / "summary.csv")
    rows = [r for r in summary if r["metric"] == "fid" and r["t"] == T]
    assert {r["runs"] for r in rows} == {len(seeds)}
    assert len(rows) == len(deep.LAMBDAS)


def test_figures_are_valid_pngs(report):
    results, out = report
    for s in results["sections"]:
        assert s["figures"], s["key"]
        for f in s["figures"]:
            assert Path(f).read_bytes()[:8] == PNG
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text()):
        assert (out / link).is_file(), link


def test_results_json_matches_the_verdicts_in_the_report(report):
    results, out = report
    loaded = json.loads((out / "results.json").read_text())
    md = (out / "report.md").read_text()
    for s in loaded["sections"]:
        assert s["verdict"] in ("holds", "fails", "inconclusive")
        block = md.split(f"### {s['title']}")[1].split("###")[0]
        assert f"**Verdict: {s['verdict']}.**" in block


def test_html_is_self_contained(report):
    _, out = report
    page = (out / "report.html").read_text()
    srcs = re.findall(r"src='([^']+)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "href=" not in page  # nothing to break


def test_per_part_times(report):
    results, out = report
    meta = json.loads((out / "results.json").read_text())["meta"]
    times = meta["part_seconds"]
    assert list(times) == results["meta"]["parts"]
    for part, t in times.items():
        assert set(t) == {"engine", "total", "cpu", "resumed"}, part
        assert 0 < t["engine"] <= t["total"], part
        assert t["cpu"] > 0, part
        assert t["resumed"] is False
    engine = sum(t["engine"] for t in times.values())
    assert meta["engine_seconds"] == pytest.approx(engine, rel=1e-12)
    # Everything ran in this call: the overhead is the wall time outside the engines.
    assert meta["overhead_seconds"] == pytest.approx(meta["seconds"] - engine, abs=0.5)
    assert meta["overhead_fraction"] == pytest.approx(meta["overhead_seconds"] / engine)


def test_rerun_skips_finished_parts(report, monkeypatch):
    results, out = report

    def boom(*a, **k):
        raise AssertionError("a finished part was recomputed")

    monkeypatch.setattr(driver, "PART_FUNCS", {k: boom for k in driver.PART_FUNCS})
    again = rp.reproduce(out, size="tiny", only=results["meta"]["parts"])
    assert [s["verdict"] for s in again["sections"]] == [s["verdict"] for s in results["sections"]]
    # The resumed parts report the times recorded when they ran.
    for part, t in again["meta"]["part_seconds"].items():
        first = results["meta"]["part_seconds"][part]
        assert t == {**first, "resumed": True}


def test_another_size_or_seed_in_the_same_folder_is_refused(report):
    _, out = report
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UsageError, match="holds a reproduction at size tiny, seed 0"):
        rp.reproduce(out, size="tiny", only=["theory"], seed=1)
    with pytest.raises(UsageError, match="holds a reproduction"):
        rp.reproduce(out, size="quick", only=["theory"])
    assert sorted(p.name for p in out.iterdir()) == before


def test_bad_input(cli, tmp_path):
    proc = cli("reproduce", "--tiny", "--only", "everything", "--out", tmp_path / "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = cli("reproduce", "--tiny", "--only", "theory", "--out", blocker)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    assert not (tmp_path / "x").exists()


# ---- sizes ------------------------------------------------------------------------------------


PART_SIZES = ("theory", "gaussian", "moons", "gaussians8", "deep")


@pytest.mark.parametrize("name", sizes.SIZES)
def test_sizes_are_frozen_dataclasses(name):
    size = sizes.size_named(name)
    assert size.name == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        size.name = "other"
    for part in PART_SIZES:
        part_size = getattr(size, part)
        field = dataclasses.fields(part_size)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part_size, field, getattr(part_size, field))


def test_unknown_size_is_a_usage_error():
    with pytest.raises(UsageError, match="size must be one of tiny, quick, full"):
        sizes.size_named("huge")


def changed(value):
    """A different valid value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return {"quick": "default", "restart": "continue"}.get(value, value + "x")
    if isinstance(value, tuple):
        return (*value, value[-1] * 2)
    return value * 2 + 1


def plans(size: sizes.ReproduceSize, tmp: Path) -> dict:
    """What every part asks of its engines at `size` (engine configurations, as repr)."""
    return {
        "theory": repr(theory.plan(size.theory, 0)),
        "gaussian": repr(gaussian.plan(size.gaussian, 0)),
        "2d": repr(twod.plan(size, 0)),
        "deep": repr(deep.plan(size.deep, 0, tmp)),
    }


@pytest.mark.parametrize("part", PART_SIZES)
def test_every_size_field_reaches_the_engines(part, tmp_path):
    """Changing any one field of a part's size changes what that part asks of its engine, and
    nothing else: no field is silently ignored, none leaks into another part."""
    size = sizes.QUICK
    before = plans(size, tmp_path)
    part_size = getattr(size, part)
    owner = {"moons": "2d", "gaussians8": "2d"}.get(part, part)
    for f in dataclasses.fields(part_size):
        new = dataclasses.replace(part_size, **{f.name: changed(getattr(part_size, f.name))})
        after = plans(dataclasses.replace(size, **{part: new}), tmp_path)
        assert after[owner] != before[owner], f"{part}.{f.name} is not used"
        assert {k: v for k, v in after.items() if k != owner} == {
            k: v for k, v in before.items() if k != owner
        }, f"{part}.{f.name} changed another part"


def test_full_size_runs_the_papers_settings(tmp_path):
    """--full is Figure 7's setting for two moons (simulate flow's defaults)."""
    from simulations.twod_sim import TwoDConfig

    moons = twod.plan(sizes.FULL, 0)["moons-otcfm"].resolve()[0]
    default = TwoDConfig(lams=twod.LAMBDAS).resolve()[0]
    assert moons == default


def test_deep_plan_shares_each_seeds_t0_network(tmp_path):
    runs = deep.plan(sizes.QUICK.deep, 7, tmp_path)
    assert len(runs) == sizes.QUICK.deep.seeds * len(deep.LAMBDAS)
    for s in deep.run_seeds(sizes.QUICK.deep, 7):
        mine = [r for r in runs if r.seed == s]
        first = mine[0]
        assert first.lam == deep.BASELINE and first.options["init_kimg"] > 0
        assert "init" not in first.options
        for r in mine[1:]:
            assert r.options["init"] == str(first.folder / "checkpoints" / "train_t0.pt")
            assert r.options["init_kimg"] == 0
            assert r.options["seed"] == s
    assert len({r.folder for r in runs}) == len(runs)


# ---- the deep part's comparison with the baseline -----------------------------------------------


def test_paired_comparison_is_students_t():
    d = np.array([3.0, 5.0, 4.5])
    c = deep.paired(d)
    t = stats.ttest_1samp(d, 0.0)
    assert c.diff / c.se == pytest.approx(t.statistic, rel=1e-12)
    # Student's t quantile for 2 degrees of freedom in closed form: (2p - 1) / sqrt(2p(1 - p)).
    p = 0.975
    assert c.critical == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)
    assert math.isnan(deep.paired(np.array([1.0])).se)


def fake_values(fid_at_T: dict, seeds: int = 3) -> dict:
    """Runs whose FID starts at 50 and ends at fid_at_T[lam] (one value per seed)."""
    values = {}
    for lam in deep.LAMBDAS:
        end = np.asarray(fid_at_T[lam], dtype=float)
        fid = np.stack([np.full(seeds, 50.0), end], axis=1)
        values[lam] = {"fid": fid, "precision": 1 / fid, "recall": 1 / fid}
    return values


def test_verdict_against_the_baseline():
    base = [50.0, 52.0, 51.0]
    flat = {0.0: base, 0.5: [51.0, 53.0, 51.5], 1.0: [52.0, 53.0, 52.5]}
    assert deep.verdict(fake_values(flat | {math.inf: [150.0, 160.0, 155.0]})) == "holds"
    # A fully synthetic rise within the seeds' noise: nothing can be said.
    noisy = flat | {math.inf: [40.0, 160.0, 60.0]}
    assert deep.verdict(fake_values(noisy)) == "inconclusive"
    # lambda = 1 as far from the baseline as fully synthetic, consistently: the claim fails.
    same = flat | {1.0: [150.0, 161.0, 154.0], math.inf: [150.0, 160.0, 155.0]}
    assert deep.verdict(fake_values(same)) == "fails"
    # One seed: no standard error, no verdict.
    one = {lam: v[:1] for lam, v in (flat | {math.inf: [150.0, 160.0, 155.0]}).items()}
    assert deep.verdict(fake_values(one, seeds=1)) == "inconclusive"
