"""Long fits: training-state snapshots inside a fit (resume bitwise) and status lines."""

import io
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep.methods import EDMMethod  # noqa: E402
from deep.status import StatusLog, format_duration  # noqa: E402
from deep.train import Trainer, TrainOptions, load_weights  # noqa: E402
from deep.unet import UNetConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# A tiny network with dropout and augmentation labels: both draw randomness a resumed fit must
# replay (dropout from torch's global stream, augmentation from the phase's stream).
NET = replace(UNetConfig.tiny(16, 1), dropout=0.1, augment_dim=9)
OPTS = TrainOptions(batch=8, lr=2e-3, lr_rampup_kimg=0.05, ema_halflife_kimg=0.02)


def _images(n=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 16, 16), dtype=np.uint8)


def _trainer(seed=5):
    return Trainer(NET, OPTS, seed=seed, method=EDMMethod(augment=0.5))


def _state(trainer):
    return {
        **{f"net.{k}": v for k, v in trainer.net.state_dict().items()},
        **{f"ema.{k}": v for k, v in trainer.ema.state_dict().items()},
    }


def _assert_same(a: Trainer, b: Trainer):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    oa, ob = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    for i in oa:
        for k in oa[i]:
            assert torch.equal(oa[i][k], ob[i][k]), (i, k)
    assert (a.nimg_total, a.nimg_phase, a.phases) == (b.nimg_total, b.nimg_phase, b.phases)


class Killed(Exception):
    pass


def test_resume_mid_fit_gives_bitwise_the_uninterrupted_weights(tmp_path, monkeypatch):
    images = _images()
    kimg = 0.096  # 12 steps of 8; snapshots every 3 steps
    reference = _trainer()
    reference.train(images, 0.024)
    first_loss = reference.train(images, kimg)
    # Snapshots do not change the fit: the same weights with them as without.
    snapped = _trainer()
    snapped.train(images, 0.024)
    assert snapped.train(images, kimg, snapshot=tmp_path / "s.pt", snap_kimg=0.024) == first_loss
    _assert_same(reference, snapped)
    # Kill the second fit right after its second snapshot (step 6 of 12) ...
    real = Trainer._write_snapshot
    count = {"n": 0}

    def write_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        count["n"] += 1
        if count["n"] == 2:
            raise Killed

    monkeypatch.setattr(Trainer, "_write_snapshot", write_then_die)
    path = tmp_path / "fit.pt"
    run = _trainer()
    run.train(images, 0.024)
    run.save(tmp_path / "phase0.pt")
    with pytest.raises(Killed):
        run.train(images, kimg, snapshot=path, snap_kimg=0.024)
    assert load_weights(path)["snapshot"]["done"] == 6
    monkeypatch.setattr(Trainer, "_write_snapshot", real)
    # ... and resume in a fresh process state: weights of phase 0, a stirred global stream.
    resumed = _trainer()
    resumed.load(tmp_path / "phase0.pt")
    torch.manual_seed(12345)
    loss = resumed.train(images, kimg, snapshot=path, snap_kimg=0.024)
    _assert_same(reference, resumed)
    assert loss == first_loss  # the losses before the kill came from the snapshot
    Trainer.drop_snapshot(path)
    assert not path.exists()


def test_a_snapshot_of_another_fit_is_refused(tmp_path):
    images = _images()
    a = _trainer()
    a.train(images, 0.048, snapshot=tmp_path / "s.pt", snap_kimg=0.016)
    assert (tmp_path / "s.pt").exists()  # the last one (step 4 of 6) stays until dropped
    for kwargs in (dict(kimg=0.064), dict(images=_images(seed=1))):
        b = _trainer()
        args = dict(images=images, kimg=0.048) | kwargs
        with pytest.raises(ValueError, match="another fit"):
            b.train(args["images"], args["kimg"], snapshot=tmp_path / "s.pt", snap_kimg=0.016)


def test_status_lines_follow_the_clock_and_the_images():
    now = {"t": 0.0}
    out = io.StringIO()
    log = StatusLog(out, None, every_kimg=1.0, every_sec=30.0, clock=lambda: now["t"])
    log.start(total_img=4000, label="fit t=2")
    lines = []
    for step in range(1, 41):  # 100 images per step, 2 s per step
        now["t"] += 2.0
        line = log.update(step * 100, loss=float(step))
        if line:
            lines.append((step, line))
    # Every 1000 images (10 steps, 20 s < 30 s) and at the end.
    assert [s for s, _ in lines] == [10, 20, 30, 40]
    pattern = re.compile(
        r"^\[fit t=2\] kimg (\S+)/4\.000  sec/kimg (\S+)  loss (\S+)  left (\S+(?: \S+)?)  "
        r"peak_mem \S+ [GM]iB \(cpu rss\)$"
    )
    for step, line in lines:
        m = pattern.match(line)
        assert m, line
        assert float(m.group(1)) == step / 10
        assert float(m.group(2)) == pytest.approx(20.0)  # 20 s per 1000 images
        assert float(m.group(3)) == pytest.approx(np.mean(range(step - 9, step + 1)))
        assert m.group(4) == format_duration((4000 - step * 100) * 0.02)
    assert out.getvalue().splitlines() == [line for _, line in lines]
    # The clock alone triggers a line when images come slowly.
    log.start(total_img=10**6)
    now["t"] += 31.0
    assert log.update(100, 1.0) is not None
    assert format_duration(5 * 3600 + 4 * 60) == "5h 04m" and format_duration(159) == "2m 39s"


def test_trainer_prints_status_lines_and_logs_them(tmp_path):
    out = io.StringIO()
    log = StatusLog(out, tmp_path / "log.txt", every_kimg=0.032, every_sec=1e9)
    log.label = "fit t=0"
    _trainer().train(_images(), 0.096, status=log)  # 12 steps of 8 images: a line per 4 steps
    lines = out.getvalue().splitlines()
    assert [ln.split()[3] for ln in lines] == ["0.032/0.096", "0.064/0.096", "0.096/0.096"]
    assert (tmp_path / "log.txt").read_text().splitlines() == lines


def _train_cmd(out, *extra):
    return [
        sys.executable, "-m", "stability", "deep", "train", "--data", "digits:16", "--n", "64",
        "--net", "tiny", "--kimg", "0.96", "--batch", "16", "--lr-rampup-kimg", "0",
        "--seed", "3", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_deep_train_killed_after_a_snapshot_resumes_bitwise(tmp_path):
    """`deep train --snap-kimg`: SIGKILL after the first snapshot, run the same command again;
    the checkpoint equals an uninterrupted run's, bitwise. stderr (not a terminal) carries
    status lines, also written to OUT.log."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    whole = subprocess.run(
        _train_cmd(tmp_path / "whole.pt", "--status-kimg", "0.32", "--status-sec", "1e6"),
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    status = [ln for ln in whole.stderr.splitlines() if ln.startswith("[fit]")]
    assert [ln.split()[2] for ln in status] == ["0.320/0.960", "0.640/0.960", "0.960/0.960"]
    assert (tmp_path / "whole.pt.log").read_text().splitlines() == status
    out = tmp_path / "cut.pt"
    snap = Path(f"{out}.snap")
    proc = subprocess.Popen(
        _train_cmd(out, "--snap-kimg", "0.16"), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not snap.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snap.exists() and not out.exists(), "the run ended before it could be killed"
    done = load_weights(snap)["snapshot"]["done"]
    assert 10 <= done < 60
    again = subprocess.run(
        _train_cmd(out, "--snap-kimg", "0.16"), env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert not snap.exists()
    a, b = load_weights(tmp_path / "whole.pt"), load_weights(out)
    for part in ("net", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["nimg_total"] == b["nimg_total"] == 960
