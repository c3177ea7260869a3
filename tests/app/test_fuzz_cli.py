"""Fuzzing the command line: hostile argument vectors and malformed files for every command.

Hypothesis draws argument vectors for check, alpha, jacobian, map, simulate
gaussian|flow|diffusion|model, sweep, collect, reproduce and deep, from hostile values (negative, zero, NaN, infinities,
1e400, words, empty strings, sizes beyond the memory) and malformed files (empty, junk, an .npz
or a pickle under a .npy name, (N, 0) arrays, truncated arrays, overflowing values, broken
TOML and run folders). Every vector runs in this process (`stability.app.cli.main`) and must:

- exit 0, or 2 with one line on stderr and no file left behind, or 1 with one line only for a
  failure the code anticipated (a `RunError`: the line names no exception class);
- never print a traceback or a warning;
- never take more than `EXAMPLE_SECONDS` (a vector that starts an unbounded run is a finding).

The budget is the hypothesis profile's (``ci``: a few examples per command in the default
suite; ``HYPOTHESIS_PROFILE=thorough``: hundreds). Valid vectors are kept cheap by the value
pools (at most 10 runs, 3 iterations, 12 points), and commands whose valid runs take minutes
(flow, diffusion, model, map, reproduce, deep, jacobian, check) always get at least one
invalid value.
Counts and the peak memory are printed at the end of the module (``-s``), and written as JSON
to $FUZZ_REPORT when that is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stability.app.cli import main

EXAMPLE_SECONDS = 120  # one argument vector, valid or not (the slowest valid one takes ~5 s)
RSS_CAP_BYTES = 3 * 2**30  # peak memory of this process and the workers it waited for

COUNTS: Counter = Counter()
OUTCOMES: Counter = Counter()

# settings on top of the active profile: examples share the module's files and folders
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def budget(share: float):
    """The profile's examples, cut to `share` of them in the default (ci) profile for commands
    whose valid vectors write run folders and figures (about a second each)."""
    examples = settings().max_examples
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        examples = max(3, round(examples * share))
    return settings(FUZZ, max_examples=examples)


NUMBERS = ["-1", "0", "1", "2", "3", "10", "2.5", "nan", "inf", "-inf", "1e400", "x", "", "1e1"]
SIZES = NUMBERS + ["1000000000", "100000"]  # beyond the memory: refused with the numbers
INVALID_NUMBERS = ["-1", "nan", "-inf", "1e400", "x", ""]
LAMS = ["0", "0.5", "1", "inf", "-1", "nan", "x", "1e400", ""]
STRAY = ["--bogus", "extra", "--", "-", "--out"]


class ExampleTimeout(BaseException):
    """Raised by SIGALRM in a vector that ran too long (not an Exception: main cannot eat it)."""


@contextlib.contextmanager
def time_limit(seconds: int):
    def ring(signum, frame):
        raise ExampleTimeout(f"ran more than {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Malformed (and a few good) input files, made once: name -> path."""
    d = tmp_path_factory.mktemp("fuzz_files")
    rng = np.random.default_rng(0)
    out = {}

    def save(name, arr, **kw):
        np.save(d / name, arr, **kw)
        out[name] = d / name

    save("good.npy", rng.standard_normal((40, 2)))
    save("no_columns.npy", np.zeros((10, 0)))
    save("one_row.npy", np.ones((1, 2)))
    save("nan.npy", np.full((10, 2), np.nan))
    save("overflow.npy", rng.standard_normal((30, 2)) * 1e300)
    save("determinant_overflow.npy", rng.standard_normal((30, 2)) * 1e152)
    save("underflow.npy", rng.standard_normal((30, 2)) * 1e-160)
    save("objects.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    save("strings.npy", np.array([["a", "b"]] * 5))
    save("three_d.npy", np.ones((4, 3, 2)))
    with open(d / "archive.npy", "wb") as f:
        np.savez(f, x=np.ones((10, 2)))
    out["archive.npy"] = d / "archive.npy"
    (d / "truncated.npy").write_bytes((d / "good.npy").read_bytes()[:-64])
    out["truncated.npy"] = d / "truncated.npy"
    (d / "empty.npy").write_bytes(b"")
    out["empty.npy"] = d / "empty.npy"
    (d / "junk.npy").write_text("not an array\n")
    out["junk.npy"] = d / "junk.npy"
    out["missing.npy"] = d / "missing.npy"
    out["a_folder.npy"] = d / "a_folder.npy"
    (d / "a_folder.npy").mkdir()
    specs = {
        "empty.toml": "",
        "junk.toml": "garbage [[[\n",
        "no_command.toml": "[options]\nruns = 5\n",
        "bad_command.toml": 'command = "rm -rf /"\n',
        "bad_option.toml": 'command = "simulate gaussian"\n[options]\nbogus = 1\n',
        "bad_value.toml": 'command = "simulate gaussian"\n[options]\nruns = -1\n',
        "nan_axis.toml": 'command = "simulate gaussian"\n[axes]\nlam = [nan, 1]\n',
        "good.toml": 'command = "simulate gaussian"\n[options]\nruns = 5\niterations = 2\n'
        "[axes]\nlam = [0, inf]\nseeds = 2\n",
        "huge_range.toml": 'command = "simulate gaussian"\n[axes]\nn = {start = 2, stop = 1e12}\n',
        "huge_seeds.toml": 'command = "simulate gaussian"\nseeds = 100000000\n',
        "huge_grid.toml": 'command = "simulate gaussian"\n[axes]\n'
        + "".join(f"{k} = {{start = 2, stop = 102}}\n" for k in ("n", "dim", "runs", "iterations")),
    }
    for name, text in specs.items():
        (d / name).write_text(text)
        out[name] = d / name
    out["missing.toml"] = d / "missing.toml"
    # Run folders for collect: junk config, junk summary, and one real finished run.
    for name, cfg, summ in (
        ("junk_config", "{", "x\n"),
        ("junk_summary", json.dumps({"command": "simulate gaussian", "options": {}}), "a,b\n1\n"),
        ("empty_run", "", ""),
    ):
        (d / name).mkdir()
        (d / name / "config.json").write_text(cfg)
        (d / name / "summary.csv").write_text(summ)
        out[name] = d / name
    code = main(["simulate", "gaussian", "--runs", "5", "--iterations", "2", "--workers", "1",
                 "--out", str(d / "finished_run")])  # fmt: skip
    assert code == 0
    out["finished_run"] = d / "finished_run"
    out["empty_dir"] = d / "empty_dir"
    (d / "empty_dir").mkdir()
    return out


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """The folder every vector's outputs go to (checked for leftovers after exit 2)."""
    return tmp_path_factory.mktemp("fuzz_outputs")


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    data = {
        "profile": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        "vectors": sum(COUNTS.values()),
        "by_command": dict(COUNTS),
        "outcomes": dict(OUTCOMES),
        "peak_rss_bytes": max(usage, children),
        "rss_cap_bytes": RSS_CAP_BYTES,
    }
    print("\nfuzz report:", json.dumps(data))
    if os.environ.get("FUZZ_REPORT"):
        Path(os.environ["FUZZ_REPORT"]).write_text(json.dumps(data, indent=2) + "\n")


_CLASS_PREFIX = re.compile(r"^stability: failed: [A-Za-z_.]*(Error|Exception|Warning|Interrupt)\b")


def run_vector(command: str, argv: list[str], arena: Path, capsys) -> tuple[int, list[str]]:
    """Run one vector and check the contract; returns (exit code, stderr lines)."""
    before = set(arena.rglob("*"))
    capsys.readouterr()
    with time_limit(EXAMPLE_SECONDS):
        code = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    COUNTS[command] += 1
    OUTCOMES[code] += 1
    where = f"argv {argv!r}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err and "Warning" not in err, where
    assert code in (0, 1, 2), where
    if code == 2:
        assert len(lines) == 1, where
        left = set(arena.rglob("*")) - before
        assert not left, f"{where}; left {sorted(map(str, left))}"
    if code == 1:
        # Only a failure the run anticipated (RunError: no exception class in its line).
        assert len(lines) == 1 and not _CLASS_PREFIX.match(lines[0]), where
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert max(usage, children) < RSS_CAP_BYTES, f"{where}; peak RSS {max(usage, children)}"
    if code != 2:  # keep the arena small: outputs of finished vectors are not needed
        for p in sorted(set(arena.iterdir()) - before):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
    return code, lines


def options(pairs: dict, required: int = 0):
    """A strategy of flat option lists: a subset of `pairs` (option -> value strategy or None
    for a flag), in random order, with at least `required` of them."""
    names = sorted(pairs)

    @st.composite
    def build(draw):
        chosen = draw(st.lists(st.sampled_from(names), unique=True, min_size=required))
        chosen = draw(st.permutations(chosen))
        argv = []
        for name in chosen:
            argv.append(name)
            if pairs[name] is not None:
                argv.append(draw(pairs[name]))
        if draw(st.booleans()) and draw(st.booleans()):  # a stray token, one vector in four
            argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(STRAY)))
        return argv

    return build()


def out_path(arena: Path, draw) -> str:
    """A fresh output folder inside the arena (sometimes nested, sometimes an existing file)."""
    tag = draw(st.integers(0, 10**9))
    kind = draw(st.sampled_from(["fresh", "fresh", "nested", "file"]))
    if kind == "file":
        f = arena / "a_file"
        f.touch()
        return str(f)
    return str(arena / f"out{tag}" / "deep" if kind == "nested" else arena / f"out{tag}")


# ---- the commands ---------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_alpha(data, arena, capsys):
    n = data.draw(st.sampled_from(NUMBERS + ["1000000000", "1" + "0" * 400, "1e30"]))
    argv = ["alpha", n] + data.draw(
        options(
            {
                "--dim": st.sampled_from(["1", "2", "3", "6", "100000", "0", "-1", "x", "1e3"]),
                "--seed": st.sampled_from(["0", "1", "-1", "x", "2.5", str(2**70)]),
                "--json": None,
            }
        )
    )
    run_vector("alpha", argv, arena, capsys)


@FUZZ
@given(data=st.data())
def test_fuzz_check(data, arena, capsys):
    names = data.draw(
        st.lists(st.sampled_from(["no-such", "prop9", "", "alpha-symbolic", "prop2"]), max_size=3)
    )
    argv = ["check", *names] + data.draw(
        options(
            {
                "--seed": st.sampled_from(["0", "-1", "x", "1e400", ""]),
                "--json": None,
                "--quick": None,
                "--thorough": None,
            }
        )
    )
    valid = {"alpha-symbolic", "prop2"}
    if not names or set(names) <= valid:
        argv.append("--list")  # a check that runs takes seconds to minutes
    run_vector("check", argv, arena, capsys)


@FUZZ
@given(data=st.data())
def test_fuzz_jacobian(data, arena, capsys):
    model = data.draw(st.sampled_from(["mixture", "student-t", "nope", "", "x" * 300]))
    lams = data.draw(st.lists(st.sampled_from(LAMS), min_size=1, max_size=3))
    if all(v in ("0", "0.5", "1") for v in lams):
        lams.append(data.draw(st.sampled_from(["-1", "nan", "inf", "x", "1e400"])))
    argv = ["jacobian", "--model", model, "--lam", *lams]
    argv += data.draw(options({"--json": None}))
    run_vector("jacobian", argv, arena, capsys)


def _gaussian_options(files):
    data = st.sampled_from(
        [str(p) for k, p in files.items() if k.endswith(".npy")]
        + ["gaussian", "moons", "8gaussians-ffjord", "spirals", ""]
    )
    return {
        "--dim": st.sampled_from(["1", "2", "3", "0", "-1", "x", "100000", "10000", "2.5"]),
        "--n": st.sampled_from(["2", "3", "12", "0", "1", "-5", "x", "1000000000000"]),
        "--lam": st.lists(st.sampled_from(LAMS), min_size=1, max_size=3).map(" ".join),
        "--policy": st.sampled_from(["mix", "accumulate", "fresh", "accumulate-subsample", "x"]),
        "--iterations": st.sampled_from(["1", "3", "0", "-1", "x", "1e400", "1000000000"]),
        "--runs": st.sampled_from(["1", "10", "0", "-1", "x", "1000000000"]),
        "--seed": st.sampled_from(["0", "7", "-1", "x", str(2**70)]),
        "--engine": st.sampled_from(["exact", "sample", "fast"]),
        "--data": data,
        "--data-cond": st.sampled_from(["1", "100", "0.5", "nan", "inf", "1e30", "x"]),
        "--estimator": st.sampled_from(["unbiased", "mle", "median"]),
        "--n-fresh": st.sampled_from(["1", "5", "0", "-1", "x"]),
        "--subsample-size": st.sampled_from(["2", "5", "0", "1", "x"]),
        "--workers": st.sampled_from(["1", "2", "0", "-1", "x"]),
        "--keep-blocks": None,
        "--json": None,
    }


@budget(0.4)
@given(data=st.data())
def test_fuzz_simulate_gaussian(data, files, arena, capsys):
    pairs = _gaussian_options(files)
    argv = data.draw(options(pairs))
    # --lam takes several values: split the joined ones back into tokens.
    argv = [tok for a in argv for tok in (a.split(" ") if " " in a else [a])]
    # Valid runs stay small: few runs and iterations unless a value is refused anyway.
    defaults = {"--runs": "10", "--iterations": "3", "--n": "12"}
    for opt, value in defaults.items():
        if opt not in argv:
            argv += [opt, value]
    argv = ["simulate", "gaussian", *argv, "--out", out_path(arena, data.draw)]
    run_vector("simulate gaussian", argv, arena, capsys)


def _twod_options(kind):
    pairs = {
        "--data": st.sampled_from(["moons", "8gaussians", "spirals", "", "gaussian"]),
        "--n": st.sampled_from(SIZES),
        "--lam": st.sampled_from(LAMS),
        "--policy": st.sampled_from(["mix", "accumulate", "fresh", "x"]),
        "--iterations": st.sampled_from(SIZES),
        "--runs": st.sampled_from(SIZES),
        "--epochs": st.sampled_from(NUMBERS),
        "--init-epochs": st.sampled_from(NUMBERS),
        "--batch": st.sampled_from(SIZES),
        "--lr": st.sampled_from(NUMBERS),
        "--width": st.sampled_from(SIZES),
        "--n-eval": st.sampled_from(SIZES),
        "--n-fresh": st.sampled_from(SIZES),
        "--subsample-size": st.sampled_from(SIZES),
        "--seed": st.sampled_from(NUMBERS),
        "--from-scratch": None,
        "--quick": None,
        "--json": None,
    }
    if kind == "flow":
        pairs.update(
            {
                "--fm": st.sampled_from(["otcfm", "cfm", "x"]),
                "--sigma": st.sampled_from(NUMBERS),
                "--solver": st.sampled_from(["euler", "dopri5", "x"]),
                "--ode-steps": st.sampled_from(SIZES),
            }
        )
    else:
        pairs["--diffusion-steps"] = st.sampled_from(SIZES)
    return pairs


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["flow", "diffusion"]))
def test_fuzz_simulate_twod(data, kind, arena, capsys):
    pytest.importorskip("torch")
    pairs = _twod_options(kind)
    argv = data.draw(options(pairs))
    # A valid 2D run takes minutes: one numeric option always gets a value refused at the
    # boundary (which one is drawn, so every option's check is exercised).
    numeric = sorted(k for k, v in pairs.items() if v is not None and k not in ("--data", "--lam"))
    numeric = [k for k in numeric if k not in ("--policy", "--fm", "--solver")]
    forced = data.draw(st.sampled_from(numeric))
    argv += [forced, data.draw(st.sampled_from(INVALID_NUMBERS))]
    argv = ["simulate", kind, *argv, "--out", out_path(arena, data.draw)]
    code, _ = run_vector(f"simulate {kind}", argv, arena, capsys)
    assert code == 2, argv


@FUZZ
@given(data=st.data())
def test_fuzz_simulate_model(data, files, arena, capsys):
    # Any model plugin: names, files and modules that are not plugins, and one size refused at
    # the boundary (a valid plugin run checkpoints every iteration: seconds).
    pairs = {
        "--model": st.sampled_from(["gaussian", "kde", "nope", "", str(files["junk.npy"]) + ":X"]),
        "--param": st.sampled_from(["bandwidth=0.5", "x", "=1", "a=b=c"]),
        "--data": st.sampled_from(["gaussian", "moons", str(files["archive.npy"]), "x"]),
        "--policy": st.sampled_from(["mix", "curate", "nope", "os:system"]),
        "--lam": st.sampled_from(LAMS),
        "--n-eval": st.sampled_from(SIZES),
        "--block-size": st.sampled_from(SIZES),
        "--json": None,
    }
    argv = data.draw(options(pairs))
    sizes = ["--runs", "--iterations", "--n", "--seed", "--workers", "--dim"]
    argv += [data.draw(st.sampled_from(sizes)), data.draw(st.sampled_from(INVALID_NUMBERS))]
    if "--model" not in argv:
        argv += ["--model", "gaussian"]
    argv = ["simulate", "model", *argv, "--out", out_path(arena, data.draw)]
    code, _ = run_vector("simulate model", argv, arena, capsys)
    assert code == 2, argv


@FUZZ
@given(data=st.data())
def test_fuzz_map(data, files, arena, capsys):
    # The stability map of a family: one grid option always refused (a valid map solves the
    # operator's fixed point on a grid: tens of seconds).
    pairs = {
        "--family": st.sampled_from(["laplace", "student-t:nu=4", "nope", "", "x.py:Y"]),
        "--data": st.sampled_from(["laplace", "t:df=3", "junk", str(files["junk.npy"])]),
        "--eps-family": st.sampled_from(["contamination", "t:df={}", "{}", "x"]),
        "--eps-values": st.sampled_from(["3", "x", "nan", "-1"]),
        "--eps-steps": st.sampled_from(["0", "x", "-1", "3"]),
        "--json": None,
    }
    argv = data.draw(options(pairs))
    # One refused value: a bad --lam-range, or a bad --eps-steps (refused whatever the
    # --eps-family, a template's included).
    bad = data.draw(
        st.sampled_from(
            [
                ["--eps-steps", "0"],
                ["--eps-steps", "1000000000"],
                ["--lam-range", "0.1", "1", "1000000000"],
                ["--lam-range", "-1", "1"],
                ["--lam-range", "nan", "1"],
                ["--lam-range", "1", "0.1"],
                ["--lam-range", "0.1", "1", "0"],
                ["--lam-range", "x"],
            ]
        )
    )
    argv = ["map", *argv, *bad, "--out", out_path(arena, data.draw)]
    code, _ = run_vector("map", argv, arena, capsys)
    assert code == 2, argv


@FUZZ
@given(data=st.data())
def test_fuzz_sweep(data, files, arena, capsys):
    spec = data.draw(st.sampled_from([str(p) for k, p in files.items() if k.endswith(".toml")]))
    argv = ["sweep", spec, "--dry-run"] + data.draw(
        options(
            {
                "--executor": st.sampled_from(["local", "slurm", "x"]),
                "--workers": st.sampled_from(["1", "0", "-1", "x"]),
                "--retries": st.sampled_from(["0", "2", "-1", "x"]),
            }
        )
    )
    argv += ["--out", out_path(arena, data.draw)]
    run_vector("sweep", argv, arena, capsys)


@budget(0.4)
@given(data=st.data())
def test_fuzz_collect(data, files, arena, capsys):
    names = ["junk_config", "junk_summary", "empty_run", "finished_run", "empty_dir"]
    dirs = data.draw(
        st.lists(
            st.sampled_from([str(files[n]) for n in names] + [str(files["missing.npy"]), ""]),
            min_size=1,
            max_size=3,
        )
    )
    argv = ["collect", *dirs]
    if data.draw(st.booleans()):
        ext = data.draw(st.sampled_from([".csv", ".txt", ".parquet", ""]))
        argv += ["--out", out_path(arena, data.draw) + ext]
    else:
        argv += ["--out", str(arena / f"table{data.draw(st.integers(0, 10**9))}.csv")]
    run_vector("collect", argv, arena, capsys)


@FUZZ
@given(data=st.data())
def test_fuzz_reproduce(data, arena, capsys):
    # Only vectors refused at the boundary: a valid reproduction takes minutes.
    bad = data.draw(
        st.sampled_from(
            [
                ["--only", "nothing"],
                ["--only", "theory", "x"],
                ["--seed", "x"],
                ["--seed", "-1"],
                ["--quick", "--full"],
                ["--bogus"],
                ["--only"],
            ]
        )
    )
    argv = ["reproduce", *bad, "--out", out_path(arena, data.draw)]
    code, _ = run_vector("reproduce", argv, arena, capsys)
    assert code == 2, argv


@FUZZ
@given(data=st.data())
def test_fuzz_deep(data, files, arena, capsys):
    # An unknown subcommand, a missing required option, a number argparse refuses, or a
    # malformed checkpoint (--ckpt, --init): never a valid run (a training step takes seconds).
    pytest.importorskip("torch")
    sub = data.draw(
        st.sampled_from(["retrain", "train", "generate", "evaluate", "compare", "x", ""])
    )
    ints = {"--n", "--iterations", "--batch", "--seed", "--resolution", "--sampler-steps"}
    floats = {"--lr", "--kimg", "--s-churn"}
    malformed = [
        str(files[k])
        for k in ("empty.npy", "junk.npy", "archive.npy", "objects.npy", "truncated.npy")
    ] + [str(files["missing.npy"]), str(files["a_folder.npy"]), str(files["junk.toml"])]
    argv = ["deep", sub] + data.draw(
        options(
            {
                **{k: st.sampled_from(["x", "", "2.5", "1e3x"]) for k in ints},
                **{k: st.sampled_from(["x", "", "1e3x"]) for k in floats},
                "--data": st.sampled_from(["digits", str(files["missing.npy"])]),
                "--model": st.sampled_from(["edm", "x"]),
            }
        )
    )
    if data.draw(st.booleans()):
        flag = {"generate": "--ckpt"}.get(sub, "--init")
        argv += [flag, data.draw(st.sampled_from(malformed))]
        if sub == "generate":
            argv += ["--n", "1"]
        if sub in ("retrain", "train"):
            argv += ["--data", "digits", "--kimg", "0.001", "--iterations", "1"]
    elif not any(a in ints | floats for a in argv) and sub in ("retrain", "train", "generate"):
        argv += ["--batch", "x"]
    argv += ["--out", out_path(arena, data.draw)]
    code, _ = run_vector("deep", argv, arena, capsys)
    assert code == 2, argv


def test_collect_refuses_a_summary_with_other_columns(files, arena, capsys):
    # Found by this fuzzer: the table was written, then the figures failed (exit 1).
    out = arena / "junk_summary_table.csv"
    argv = ["collect", str(files["finished_run"]), str(files["junk_summary"]), "--out", str(out)]
    code, lines = run_vector("collect", argv, arena, capsys)
    assert code == 2 and "junk_summary" in lines[0] and "lacks the column" in lines[0]
    assert not out.exists()
