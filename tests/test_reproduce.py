"""`stability reproduce`: the report at the smallest size, its consistency, resume, bad input."""

import json
import re
from pathlib import Path

import pytest

from simulations import reproduce as rp

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


def test_every_lambda_of_the_deep_part_starts_from_one_model(report):
    results, out = report
    if "deep" not in results["meta"]["parts"]:
        pytest.skip("the deep part needs the torch extra")
    deep = out / "parts" / "deep"
    first, synthetic = (
        json.loads((deep / d / "metrics.json").read_text()) for d in ("lam_1", "lam_inf")
    )
    assert synthetic["0"]["fid"] == first["0"]["fid"]  # the same t = 0 network, the same seeds
    assert synthetic["1"]["fid"] != first["1"]["fid"]  # then the data policies differ


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


def test_rerun_skips_finished_parts(report, monkeypatch):
    results, out = report

    def boom(*a, **k):
        raise AssertionError("a finished part was recomputed")

    monkeypatch.setattr(rp, "PART_FUNCS", {k: boom for k in rp.PART_FUNCS})
    again = rp.reproduce(out, size="tiny", only=results["meta"]["parts"])
    assert [s["verdict"] for s in again["sections"]] == [s["verdict"] for s in results["sections"]]


def test_bad_input(cli, tmp_path):
    proc = cli("reproduce", "--tiny", "--only", "everything", "--out", tmp_path / "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = cli("reproduce", "--tiny", "--only", "theory", "--out", blocker)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    assert not (tmp_path / "x").exists()
