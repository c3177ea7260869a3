"""The image-scale loop: run folder, phases, resume, policies, the deep command line."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from deep import retrain as dr  # noqa: E402
from deep.data import load_images  # noqa: E402
from deep.train import Trainer, load_weights  # noqa: E402

TINY = dict(
    data="digits:16",
    net="tiny",
    n=96,
    iterations=2,
    kimg=0.064,
    init_kimg=0.128,
    batch=16,
    lr=2e-3,
    lr_rampup_kimg=0.0,
    ema_halflife_kimg=0.05,
    n_gen=48,
    sampler_steps=4,
    gen_batch=48,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deep") / "run"
    return dr.run_deep(dr.DeepConfig(lam=0.5, **TINY), out, status=True), out


def test_run_folder(tiny_run):
    result, out = tiny_run
    for t in range(3):
        assert (out / "checkpoints" / f"train_t{t}.pt").is_file()
        gen = load_images(f"zip={out / 'generated' / f'gen_t{t}.zip'}")
        assert gen.images.shape == (48, 1, 16, 16) and gen.images.dtype == np.uint8
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"0", "1", "2"}
    # mix with lambda = 0.5: n real images plus floor(0.5 n) generated ones after t = 0.
    assert [metrics[t]["train_images"] for t in ("0", "1", "2")] == [96, 144, 144]
    assert all(math.isfinite(metrics[t]["loss"]) for t in metrics)
    # Digits data: FID and precision/recall in the digits network's feature space.
    for row in metrics.values():
        assert row["fid"] > 0 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    # The weights' distance to the first trained network: 0 at t = 0, then growing.
    assert metrics["0"]["param_distance"] == 0 < metrics["1"]["param_distance"]
    assert metrics["1"]["param_distance"] < metrics["1"]["param_distance_random_init"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["options"]["lam"] == 0.5 and cfg["options"]["rampup"] == "restart"
    # The augmentation actually used (digits: none), the latents and the DDIM spacing are part
    # of the run; snapshots and status lines are not (they change no number).
    opts = cfg["options"]
    assert (opts["augment"], opts["latents"], opts["ddim_spacing"]) == (0.0, "float32", "leading")
    assert not {"snap_kimg", "status_kimg", "status_sec"} & set(opts)
    # Status lines (status=True, as the CLI does when stderr is not a terminal) in DIR/log.txt.
    log = (out / "log.txt").read_text().splitlines()
    for t in range(3):
        fits = [ln for ln in log if ln.startswith(f"[fit t={t}] kimg ")]
        total = TINY["kimg"] if t else TINY["init_kimg"]
        assert fits and fits[-1].split()[3] == f"{total:.3f}/{total:.3f}", fits
        assert f"[generate t={t}] 48 images in " in "\n".join(log)
        assert any(ln.startswith(f"[metrics] t = {t}: loss = ") for ln in log)
    for f in result["figures"]:
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "loss" in (out / "summary.csv").read_text()


def test_compare_runs(tiny_run, cli, tmp_path):
    _, out = tiny_run
    proc = cli("deep", "compare", out, out, "--out", tmp_path / "cmp")
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    # 2 runs x 3 iterations x (fid, precision, recall, param_distance)
    assert rows[0] == "run,model,policy,lam,t,metric,value" and len(rows) == 1 + 2 * 3 * 4
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = cli("deep", "compare", tmp_path, "--out", tmp_path / "cmp2")
    assert proc.returncode == 2 and "not a deep run folder" in proc.stderr
    assert not (tmp_path / "cmp2").exists()


def test_resume_replays_finished_phases(tiny_run, tmp_path, monkeypatch):
    _, reference = tiny_run
    calls = {"train": 0}
    real_train = Trainer.train

    def crashing(self, *a, **k):
        calls["train"] += 1
        if calls["train"] == 2:  # after t = 0 and its generation, during the fit of t = 1
            raise KeyboardInterrupt
        return real_train(self, *a, **k)

    monkeypatch.setattr(Trainer, "train", crashing)
    with pytest.raises(KeyboardInterrupt):
        dr.run_deep(dr.DeepConfig(lam=0.5, **TINY), tmp_path / "r")
    assert (tmp_path / "r" / "generated" / "gen_t0.zip").exists()
    counted = {"train": 0}

    def counting(self, *a, **k):
        counted["train"] += 1
        return real_train(self, *a, **k)

    monkeypatch.setattr(Trainer, "train", counting)
    dr.run_deep(dr.DeepConfig(lam=0.5, **TINY), tmp_path / "r")
    assert counted["train"] == 2  # t = 1 and t = 2 only: t = 0 was read back
    assert (tmp_path / "r" / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()
    for t in range(3):
        a = tmp_path / "r" / "generated" / f"gen_t{t}.zip"
        b = reference / "generated" / f"gen_t{t}.zip"
        assert np.array_equal(load_images(f"zip={a}").images, load_images(f"zip={b}").images)


def test_a_fit_killed_after_a_snapshot_resumes_to_the_same_run(tiny_run, tmp_path, monkeypatch):
    """--snap-kimg inside the loop: killed right after the first snapshot of the fit of t = 1,
    the rerun resumes that fit from it and ends with the uninterrupted run's numbers."""
    _, reference = tiny_run
    cfg = dr.DeepConfig(lam=0.5, snap_kimg=0.032, **TINY)  # t = 0: 8 steps, t = 1, 2: 4 steps
    real = Trainer._write_snapshot
    writes = []

    def write_then_die(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        writes.append(path.name)
        if path.name == "snap_t1.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_write_snapshot", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        dr.run_deep(cfg, tmp_path / "r")
    assert writes == ["snap_t0.pt"] * 3 + ["snap_t1.pt"]
    ck = tmp_path / "r" / "checkpoints"
    assert (ck / "snap_t1.pt").exists() and not (ck / "snap_t0.pt").exists()
    monkeypatch.setattr(Trainer, "_write_snapshot", real)
    dr.run_deep(cfg, tmp_path / "r")
    assert not list(ck.glob("snap_*"))
    assert (tmp_path / "r" / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()
    for t in range(3):
        a, b = (
            load_weights(ck / f"train_t{t}.pt"),
            load_weights(reference / "checkpoints" / f"train_t{t}.pt"),
        )
        assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])


def test_augmentation_defaults_and_networks():
    from deep.methods import EDMMethod

    for data, model, p in [
        ("cifar10=/data", "edm", 0.12),
        ("ffhq=/data.zip", "edm", 0.15),
        ("digits:16", "edm", 0.0),
        ("cifar10=/data", "otcfm", 0.0),
        ("cifar10=/data", "ddpm", 0.0),
    ]:
        cfg = dr.DeepConfig(data=data, model=model)
        assert cfg.augment_probability() == p and cfg.options()["augment"] == p
    edm = dr.DeepConfig(data="cifar10=/data")
    assert isinstance(edm.method(), EDMMethod) and edm.method().augment == 0.12
    assert dr.net_config(edm, 3, 32).augment_dim == 9
    assert dr.net_config(dr.DeepConfig(data="cifar10=/d", model="ddpm"), 3, 32).augment_dim == 0
    # A tiny network gains the augmentation input only when augmentation is on.
    assert dr.net_config(dr.DeepConfig(net="tiny"), 1, 16).augment_dim == 0
    assert dr.net_config(dr.DeepConfig(net="tiny", augment=0.2), 1, 16).augment_dim == 9


def test_fully_synthetic_and_fixed_seeds(tmp_path):
    res = dr.run_deep(
        dr.DeepConfig(lam=math.inf, fixed_seeds=True, **{**TINY, "iterations": 1}), tmp_path / "f"
    )
    assert res["metrics"]["1"]["train_images"] == 96  # n samples of the model only
    cfg = dr.DeepConfig(lam=math.inf, fixed_seeds=True, **TINY)
    assert (
        dr._Phased(cfg, None, None, 5, False).seeds(0)
        == dr._Phased(cfg, None, None, 5, False).seeds(3)
        == list(range(5))
    )
    fresh = dr.DeepConfig(lam=1.0, **TINY)
    assert dr._Phased(fresh, None, None, 5, False).seeds(0) != dr._Phased(
        fresh, None, None, 5, False
    ).seeds(1)


def test_init_from_a_checkpoint_and_generate(cli, tmp_path):
    ck = tmp_path / "base.pt"
    proc = cli(
        "deep",
        "train",
        "--data",
        "digits:16",
        "--net",
        "tiny",
        "--n",
        "64",
        "--kimg",
        "0.064",
        "--batch",
        "16",
        "--lr-rampup-kimg",
        "0",
        "--out",
        ck,
    )
    assert proc.returncode == 0, proc.stderr
    # stderr is not a terminal here: status lines instead of a progress bar, also in OUT.log.
    status = [ln for ln in proc.stderr.splitlines() if ln.startswith("[fit] kimg ")]
    assert status and status[-1].split()[2] == "0.064/0.064"
    assert (tmp_path / "base.pt.log").read_text().splitlines() == status
    proc = cli(
        "deep",
        "retrain",
        "--data",
        "digits:16",
        "--n",
        "64",
        "--init",
        ck,
        "--iterations",
        "1",
        "--kimg",
        "0.032",
        "--batch",
        "16",
        "--n-gen",
        "16",
        "--sampler-steps",
        "3",
        "--lam",
        "1",
        "--out",
        tmp_path / "run",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["metrics"]) == {"0", "1"}
    assert "[fit t=1] kimg 0.032/0.032" in proc.stderr
    assert "[fit t=1] kimg 0.032/0.032" in (tmp_path / "run" / "log.txt").read_text()
    proc = cli(
        "deep", "generate", "--ckpt", ck, "--n", "6", "--steps", "3", "--out", tmp_path / "g.zip"
    )
    assert proc.returncode == 0, proc.stderr
    assert load_images(f"zip={tmp_path / 'g.zip'}").images.shape == (6, 1, 16, 16)
    # A checkpoint for 16x16 images refuses 32x32 data.
    proc = cli("deep", "retrain", "--data", "digits:32", "--init", ck, "--out", tmp_path / "bad")
    assert proc.returncode == 2 and "16x16" in proc.stderr and not (tmp_path / "bad").exists()


def test_evaluate_command(cli, tmp_path):
    """Real digits against themselves: FID 0 and full precision/recall; against their mirror
    images (flipped left-right): a positive FID."""
    from deep.data import save_zip

    real = load_images("digits:16", limit=200).images
    save_zip(real, tmp_path / "same.zip")
    save_zip(real[..., ::-1].copy(), tmp_path / "mirror.zip")
    res = {}
    for name in ("same", "mirror"):
        proc = cli(
            "deep", "evaluate", "--real", "digits:16", "--n-real", "200",
            "--generated", tmp_path / f"{name}.zip", "--features", "pixels", "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        res[name] = json.loads(proc.stdout)
    assert abs(res["same"]["fid"]) < 1e-6
    assert res["same"]["precision"] == res["same"]["recall"] == 1.0
    assert res["mirror"]["fid"] > 1.0 and res["mirror"]["n_generated"] == 200
    proc = cli("deep", "evaluate", "--real", "digits:16", "--generated", tmp_path / "none.zip")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = cli(
        "deep", "evaluate", "--real", "digits:16", "--generated", tmp_path / "same.zip",
        "--features", "inception=/no/such.pth",
    )  # fmt: skip
    assert proc.returncode == 2 and "such.pth" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--data", "folder=/no/such/folder"],
        ["--data", "digits:16", "--lam", "-1"],
        ["--data", "digits:16", "--kimg", "0"],
        ["--data", "digits:16", "--net", "huge"],
        ["--data", "digits:16", "--init", "/no/such.pt"],
        ["--data", "digits:16", "--rampup", "sometimes"],
        ["--data", "digits:16", "--policy", "accumulate", "--lam", "inf"],
        ["--data", "digits:16", "--augment", "1.5"],
        ["--data", "digits:16", "--model", "ddpm", "--augment", "0.12"],
        ["--data", "digits:16", "--latents", "float16"],
        ["--data", "digits:16", "--model", "ddpm", "--ddim-spacing", "uniform"],
        ["--data", "digits:16", "--snap-kimg", "0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_input_exit_2_nothing_written(cli, tmp_path, args):
    proc = cli("deep", "retrain", "--init-kimg", "1", *args, "--out", tmp_path / "o")
    assert proc.returncode == 2, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "o").exists()


def test_quick_settings_per_model_and_explicit_options_win():
    edm, ot = dr.quick_config(model="edm"), dr.quick_config(model="otcfm")
    assert (edm.ode_solver, edm.init_kimg) == ("dopri5", 60.0)
    assert (ot.ode_solver, ot.ode_steps, ot.init_kimg) == ("euler", 20, 40.0)
    # --quick sets an EMA half-life, which OT-CFM then uses instead of 0.9999 per step.
    assert ot.train_options().ema_halflife_kimg == 2.0 and ot.train_options().ema_decay is None
    told = dr.quick_config(model="otcfm", ode_solver="dopri5", init_kimg=10.0)
    assert (told.ode_solver, told.init_kimg) == ("dopri5", 10.0)
