"""Lambdas trained as one ensemble: the numbers of the lambdas run one by one, and resume."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchcfm")
pytest.importorskip("torchdiffeq")

from simulations import twod_sim as tw  # noqa: E402
from simulations.ensemble import RunStreams, minibatch_indices  # noqa: E402
from simulations.twod_group import joint_groups  # noqa: E402
from stability.loop import Policy  # noqa: E402

TINY = dict(
    n=64,
    runs=2,
    iterations=3,
    epochs=2,
    init_epochs=6,
    batch=32,
    ode_steps=5,
    diffusion_steps=25,
    n_eval=40,  # below n: lambda = 0 draws 40 samples per iteration, lambda = 1 and inf 64
    data="8gaussians",
    lams=(0.0, 1.0, math.inf),
)


def _load(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("model", ["diffusion", "flow"])
def test_joint_ensemble_gives_bitwise_the_numbers_of_lambdas_one_by_one(tmp_path, model):
    # Bitwise, not within a tolerance: each member draws from exactly its own streams and the
    # batched matrix products compute each member's slice with the same kernel whatever the
    # number of members, so nothing differs to round.
    seq = tw.TwoDSimulation(tw.TwoDConfig(model=model, joint=False, **TINY), tmp_path / "s")
    joint = tw.TwoDSimulation(tw.TwoDConfig(model=model, **TINY), tmp_path / "j")
    assert seq.groups() == [[0], [1], [2]] and joint.groups() == [[0, 1, 2]]
    seq.run()
    joint.run()
    assert (tmp_path / "s" / "summary.csv").read_bytes() == (
        tmp_path / "j" / "summary.csv"
    ).read_bytes()
    ck = _load(tmp_path / "j" / "checkpoints" / "lam0-1-2.pt")
    for li in range(3):
        alone = _load(tmp_path / "s" / "checkpoints" / f"lam{li}.pt")
        for name, v in ck["state"]["net"].items():
            assert torch.equal(v[2 * li : 2 * li + 2], alone["state"]["net"][name])
        drawn = alone["cache"].shape[1]  # the joint cache pads lambda = 0's 40 samples to 64
        assert drawn == (40 if li == 0 else 64)
        assert torch.equal(ck["cache"][2 * li : 2 * li + 2, :drawn], alone["cache"])
        for a, b in zip(ck["snapshots"][str(li)], alone["snapshots"][str(li)], strict=True):
            assert torch.equal(a, b)
    # the lambdas differ from each other (the test would pass trivially otherwise)
    assert not torch.equal(ck["cache"][0:2], ck["cache"][4:6])


def test_joint_resume_after_a_crash_gives_the_same_numbers(tmp_path, monkeypatch):
    kw = dict(model="diffusion", **TINY)
    tw.TwoDSimulation(tw.TwoDConfig(**kw), tmp_path / "ref").run()
    calls = {"n": 0}
    real_save = tw._save

    def crashing(path, obj):
        calls["n"] += 1
        if calls["n"] == 4:  # t0, the group's t1 and t2, then crash at its t3
            raise KeyboardInterrupt
        return real_save(path, obj)

    monkeypatch.setattr(tw, "_save", crashing)
    with pytest.raises(KeyboardInterrupt):
        tw.TwoDSimulation(tw.TwoDConfig(**kw), tmp_path / "r").run()
    monkeypatch.setattr(tw, "_save", real_save)
    assert int(_load(tmp_path / "r" / "checkpoints" / "lam0-1-2.pt")["t"]) == 2
    tw.TwoDSimulation(tw.TwoDConfig(**kw), tmp_path / "r").run()
    assert (tmp_path / "r" / "summary.csv").read_bytes() == (
        tmp_path / "ref" / "summary.csv"
    ).read_bytes()


def test_only_lambdas_with_different_minibatch_sizes_are_separate_groups():
    pol = [Policy("mix", lam) for lam in (0.0, 1.0, 2.0, math.inf)]
    # sample counts differ (lambda = 2 draws 2n) but members draw their own: one group
    assert joint_groups(pol, n=100, batch=32, iterations=3) == [[0, 1, 2, 3]]
    # a training set smaller than the batch (lambda = 0 and inf, n = 20) gives a smaller minibatch
    assert joint_groups(pol, n=20, batch=32, iterations=3) == [[0, 3], [1, 2]]


def test_ragged_draws_are_each_runs_own_draws():
    together = RunStreams(2, (8,), [0, 1, 2]).standard_normal_ragged([3, 5, 1], (2,))
    assert together.shape == (3, 5, 2)
    for r, c in enumerate([3, 5, 1]):
        alone = RunStreams(2, (8,), [r]).standard_normal((1, c, 2))[0]
        assert np.array_equal(together[r, :c], alone) and not together[r, c:].any()


def test_minibatches_of_runs_with_different_sizes_are_those_each_draws_alone():
    sizes = [64, 128, 64]
    together = minibatch_indices(RunStreams(3, (1,), [0, 1, 2]), sizes, 16, 11)
    assert together.shape == (11, 3, 16)
    for r, size in enumerate(sizes):
        alone = minibatch_indices(RunStreams(3, (1,), [r]), size, 16, 11)
        assert np.array_equal(together[:, r], alone[:, 0])
        assert together[:, r].max() < size
    with pytest.raises(ValueError):
        minibatch_indices(RunStreams(3, (1,), [0, 1]), [8, 64], 16, 3)


def test_report_of_a_run_folder_reads_the_checkpoint_metrics(tmp_path, capsys):
    from simulations import twod_report
    from stability.runs.runfolder import read_summary

    folder = tmp_path / "run"
    tw.TwoDSimulation(tw.TwoDConfig(model="diffusion", **{**TINY, "runs": 1}), folder).run()
    sim, histories = twod_report.load_run(folder)
    rows = read_summary(folder / "summary.csv")
    for li, lam in enumerate(TINY["lams"]):
        for m in ("w2", "mode_spread_ratio"):
            want = [r["mean"] for r in rows if r["lam"] == lam and r["metric"] == m]
            assert np.allclose(histories[li][m][0], want, rtol=0, atol=0)
    assert twod_report.main([str(folder), "--at", "0", "3", "--figures", str(tmp_path / "f")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([ln for ln in lines if ln.split()[:2] in (["0", "3"], ["inf", "3"])]) == 2
    for name in ("density", "w2", "mode_weight_tv", "mode_spread_ratio"):
        assert (tmp_path / f"f_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
