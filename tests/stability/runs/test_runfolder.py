"""Run folders: atomic writes with the user's permissions, errors that name the file, the
summary's numbers (numpy's, whatever the layout), and the folder lock of a run."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from stability.errors import UsageError
from stability.runs.lock import PARTIAL_WRITE, lock_run_folder
from stability.runs.runfolder import (
    RunFolder,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_text,
    summarize,
    summary_rows,
)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_permissions_of_the_umask(tmp_path, umask, mask):
    # Reported: every output was written 0600 whatever the umask (tempfile.mkstemp's mode).
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_text(tmp_path / "b.txt", "y")
    atomic_save_npz(tmp_path / "c.npz", durable=False, v=np.arange(3.0))
    for name in ("a.bin", "b.txt", "c.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    # Replacing a file gives the new file the umask's permissions too.
    (tmp_path / "a.bin").chmod(0o600)
    atomic_write_bytes(tmp_path / "a.bin", b"z")
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~mask
    assert (tmp_path / "a.bin").read_bytes() == b"z"


def test_the_temporary_name_is_the_one_the_lock_cleans_up(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(tmp_path / "summary.csv", b"1")
    assert len(seen) == 1 and PARTIAL_WRITE.fullmatch(seen[0]), seen
    assert seen[0].startswith(".summary.csv.")


def test_a_full_disk_raises_one_oserror_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    # Reported: a full disk gave an OSError that named no file. The disk fills at the flush
    # (delayed allocation) here; the error must name the file and remove the temporary one.
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "run" / "config.json"
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "{}")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert str(target) in str(info.value)
    assert list(target.parent.iterdir()) == []


def test_a_non_durable_write_skips_fsync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    atomic_save_npz(tmp_path / "b.npz", durable=False, v=np.ones(2))
    assert calls == []
    atomic_save_npz(tmp_path / "c.npz", v=np.ones(2))
    assert len(calls) == 1
    with np.load(tmp_path / "b.npz") as z:
        assert z["v"].tolist() == [1.0, 1.0]


def _reference(values: np.ndarray) -> dict:
    """The summary computed the plain way with numpy (what summary.csv always held)."""
    with np.errstate(invalid="ignore", over="ignore"):
        qs = np.quantile(values, [0.05, 0.5, 0.95], axis=0, method="linear")
        mean = values.mean(axis=0)
        se = values.std(axis=0, ddof=1) / math.sqrt(values.shape[0])
    return {
        "mean": mean.tolist(),
        "se": se.tolist(),
        "q05": qs[0].tolist(),
        "q50": qs[1].tolist(),
        "q95": qs[2].tolist(),
    }


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("runs,steps", [(2, 3), (7, 1), (1001, 12), (20_001, 9)])
def test_summary_is_numpys_to_the_last_bit(order, runs, steps):
    rng = np.random.default_rng(runs + steps)
    values = np.array(rng.lognormal(size=(runs, steps)) * 1e3, order=order)
    values[rng.random(values.shape) < 0.05] = np.inf
    values[rng.random(values.shape) < 0.05] = -np.inf
    if runs > 10:
        values[3, 0] = np.nan
    before = values.copy()
    got = summarize(values)
    ref = _reference(values)
    for key in ref:
        # repr: equal to the last bit, NaN included
        assert repr(got[key]) == repr(ref[key]), key
    assert got["runs"] == [runs] * steps
    assert np.array_equal(values, before, equal_nan=True)  # the input is not reordered


def test_summary_of_one_run_has_no_standard_error():
    s = summarize(np.array([[1.0, 2.0]]))
    assert s["mean"] == [1.0, 2.0] and all(math.isnan(v) for v in s["se"])
    rows = summary_rows("mix", math.inf, "w2", np.array([[1.0, 2.0]]))
    assert [r["lam"] for r in rows] == ["inf", "inf"] and [r["t"] for r in rows] == [0, 1]


def test_a_locked_run_folder_refuses_a_second_writer_naming_the_first(tmp_path):
    folder = RunFolder(tmp_path / "run", "simulate gaussian", {"seed": 0})
    with folder.locked():
        other = RunFolder(tmp_path / "run", "simulate gaussian", {"seed": 0})
        with pytest.raises(UsageError, match=rf"another simulate gaussian .*pid {os.getpid()} "):
            with other.locked():
                pass
        assert (tmp_path / "run").is_dir()  # the holder's folder stays
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_folder_created_for_a_refused_run_is_removed(tmp_path):
    folder = RunFolder(tmp_path / "new" / "run", "simulate gaussian", {"seed": 0})
    with pytest.raises(UsageError, match="bad"):
        with folder.locked():
            raise UsageError("bad")
    assert not (tmp_path / "new" / "run").exists()
    # A folder that existed before is kept, and so is one that holds files.
    (tmp_path / "old").mkdir()
    with pytest.raises(UsageError):
        with RunFolder(tmp_path / "old", "c", {}).locked():
            raise UsageError("bad")
    assert (tmp_path / "old").is_dir()
    with pytest.raises(UsageError):
        with RunFolder(tmp_path / "kept", "c", {}).locked():
            (tmp_path / "kept" / "config.json").write_text("{}")
            raise UsageError("bad")
    assert (tmp_path / "kept" / "config.json").exists()


def test_the_lock_checks_the_folder_again(tmp_path):
    # A different run started in the folder between check_writable and the lock is refused.
    folder = RunFolder(tmp_path / "run", "simulate gaussian", {"seed": 0})
    folder.check_writable()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(
        json.dumps({"command": "simulate gaussian", "options": {"seed": 1}})
    )
    with pytest.raises(UsageError, match="different run"):
        with folder.locked():
            pass
    with lock_run_folder(tmp_path / "run"):  # and released
        pass


def test_an_npz_saved_from_memory_is_the_one_numpy_savez_writes(tmp_path):
    import zipfile

    rng = np.random.default_rng(0)
    arrays = {
        "c": rng.random((3, 4)),
        "f": np.asfortranarray(rng.random((5, 2))),
        "strided": rng.random((4, 6))[:, ::2],
        "scalar": np.float64(3.5),
        "empty": np.zeros((0, 3)),
        "int": np.arange(5, dtype=np.int32),
        "record": np.array([(1, 2.0)], dtype=[("x", "i4"), ("y", "f8")]),
        "big_endian": rng.random((3, 4)).astype(">f8"),
    }
    atomic_save_npz(tmp_path / "ours.npz", durable=False, **arrays)
    np.savez(tmp_path / "numpy.npz", **arrays)
    with zipfile.ZipFile(tmp_path / "ours.npz") as a, zipfile.ZipFile(tmp_path / "numpy.npz") as b:
        ours = [(i.filename, i.file_size, i.CRC, i.compress_type) for i in a.infolist()]
        theirs = [(i.filename, i.file_size, i.CRC, i.compress_type) for i in b.infolist()]
        assert ours == theirs  # the same members, byte for byte
    with np.load(tmp_path / "ours.npz") as z:
        for name, value in arrays.items():
            assert z[name].dtype == np.asarray(value).dtype and np.array_equal(z[name], value)
            assert z[name].flags.f_contiguous == np.asarray(value).flags.f_contiguous
