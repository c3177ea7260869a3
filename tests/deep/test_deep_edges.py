"""Bad input at the edges of `stability deep ...`: one line, the right exit code, nothing written.

Issue 17 ("Trust at the edges"): empty, truncated or corrupt checkpoints; a CUDA device on a
CPU-only torch; resolutions the U-Net cannot halve; 0 or negative counts that used to mean
"all" or "forever".
"""

import io
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep.train import load_weights  # noqa: E402
from stability.app.cli import main  # noqa: E402


def run(capsys, *argv):
    """(exit code, non-empty stderr lines) of the command line run in this process."""
    code = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def assert_refused(code, err, *words, exit_code=2):
    assert code == exit_code, err
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for word in words:
        assert word in err[0], err[0]


def good_checkpoint_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"net": {"w": torch.arange(4096, dtype=torch.float32)}}, buf)
    return buf.getvalue()


def corrupt_checkpoints(tmp_path):
    raw = good_checkpoint_bytes()
    files = {
        "empty.pt": b"",
        "truncated.pt": raw[: len(raw) // 2],
        "header-only.pt": raw[:64],
        # A zip archive whose tensor bytes were overwritten: torch's reader rejects it.
        "garbage.pt": bytes(range(256)) * 4,
        "pickle-garbage.pt": b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01",
        "not-a-dict.pt": None,
    }
    paths = {}
    for name, data in files.items():
        path = tmp_path / name
        if data is None:
            torch.save([torch.zeros(2)], path)
        else:
            path.write_bytes(data)
        paths[name] = path
    return paths


@pytest.mark.parametrize(
    "name",
    [
        "empty.pt",
        "truncated.pt",
        "header-only.pt",
        "garbage.pt",
        "pickle-garbage.pt",
        "not-a-dict.pt",
    ],
)
def test_load_weights_refuses_broken_checkpoints_with_one_line_naming_the_file(tmp_path, name):
    path = corrupt_checkpoints(tmp_path)[name]
    with pytest.raises(ValueError) as info:
        load_weights(path)
    message = str(info.value)
    assert message.strip() and "\n" not in message
    assert name in message
    # torch's advice to retry with weights_only=False must never reach the user.
    assert "weights_only` set to `False`" not in message


def test_unsafe_checkpoint_message_is_one_line_without_torchs_advice(tmp_path):
    torch.save({"not": object}, tmp_path / "unsafe.pt")  # a pickled class: refused
    with pytest.raises(ValueError) as info:
        load_weights(tmp_path / "unsafe.pt")
    message = str(info.value)
    assert "\n" not in message and "unsafe.pt" in message and "Unsupported global" in message
    assert "add_safe_globals" not in message and "weights_only` set to `False`" not in message


@pytest.mark.parametrize("name", ["empty.pt", "truncated.pt", "garbage.pt", "not-a-dict.pt"])
def test_generate_from_a_broken_checkpoint_exits_2_and_writes_nothing(tmp_path, capsys, name):
    ckpt = corrupt_checkpoints(tmp_path)[name]
    out = tmp_path / "gen.zip"
    code, err = run(capsys, "deep", "generate", "--ckpt", ckpt, "--n", 2, "--out", out)
    assert_refused(code, err, name)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_generate_into_an_occupied_output_is_refused_before_the_checkpoint_is_read(
    tmp_path, capsys, kind
):
    """The output is checked first: with a broken checkpoint the refusal names the output,
    so no sampling (hours for 50k images) can happen before it."""
    ckpt = corrupt_checkpoints(tmp_path)["garbage.pt"]
    if kind == "folder":
        out = tmp_path / "gen"
        out.mkdir()
        (out / "keep.txt").write_text("someone's file")
    else:
        out = tmp_path / "gen.zip"
        out.write_bytes(b"someone's zip")
    code, err = run(capsys, "deep", "generate", "--ckpt", ckpt, "--n", 2, "--out", out)
    assert_refused(code, err, "already exists")
    assert "garbage.pt" not in err[0]
    if kind == "folder":  # the occupied output is left as it was
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert out.read_bytes() == b"someone's zip"


def test_empty_checkpoint_as_init_of_retrain_exits_2(tmp_path, capsys):
    ckpt = corrupt_checkpoints(tmp_path)["empty.pt"]
    out = tmp_path / "run"
    code, err = run(capsys, "deep", "retrain", "--data", "digits:16", "--init", ckpt, "--out", out)
    assert_refused(code, err, "empty.pt", "empty")
    assert not out.exists()


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU-only torch, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_retrain_on_missing_cuda_exits_2_before_writing(tmp_path, capsys, no_cuda, device):
    out = tmp_path / "run"
    argv = ["deep", "retrain", "--quick", "--device", device, "--out", out]
    code, err = run(capsys, *argv)
    assert_refused(code, err, "--device", "CUDA")
    assert not out.exists()


def test_train_and_generate_on_missing_cuda_exit_2(tmp_path, capsys, no_cuda):
    ckpt = tmp_path / "model.pt"
    code, err = run(
        capsys,
        "deep",
        "train",
        "--data",
        "digits:16",
        "--kimg",
        1,
        "--device",
        "cuda",
        "--out",
        ckpt,
    )
    assert_refused(code, err, "--device")
    assert list(tmp_path.iterdir()) == []
    code, err = run(
        capsys,
        "deep",
        "generate",
        "--ckpt",
        ckpt,
        "--n",
        2,
        "--device",
        "cuda",
        "--out",
        tmp_path / "g",
    )
    assert_refused(code, err, "--device")
    assert list(tmp_path.iterdir()) == []


def test_unknown_device_names_the_option(tmp_path, capsys):
    code, err = run(
        capsys, "deep", "retrain", "--quick", "--device", "tpu", "--out", tmp_path / "o"
    )
    assert_refused(code, err, "--device", "tpu")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "model, resolution",
    [("edm", 6), ("edm", 15), ("edm", 2), ("edm", 1), ("ddpm", 18), ("otcfm", 3), ("otcfm", 1)],
)
def test_retrain_resolution_the_unet_cannot_halve_exits_2(tmp_path, capsys, model, resolution):
    out = tmp_path / "run"
    argv = ["deep", "retrain", "--quick", "--model", model, "--resolution", resolution]
    code, err = run(capsys, *argv, "--out", out)
    assert_refused(code, err, "--resolution", str(resolution))
    assert not out.exists()


def test_resolution_check_admits_what_the_networks_take():
    from stability.app.deep_options import check_resolution, downsampling_factor

    # The tiny DDPM++ U-Net has 3 levels (factor 4), torchcfm's tiny one 2 (factor 2).
    assert downsampling_factor("edm") == downsampling_factor("ddpm") == 4
    assert downsampling_factor("otcfm") == 2
    # Measured: the tiny U-Nets compute a loss at 4 (edm) and 2 (otcfm) pixels, not at 6 or 2
    # (edm: "Sizes of tensors must match", a kernel larger than the input).
    for model, ok in [("edm", (4, 8, 12, 16, 32, 64)), ("otcfm", (2, 4, 6, 10, 16))]:
        for r in ok:
            check_resolution(r, model)
    with pytest.raises(ValueError, match="multiple of 4"):
        check_resolution(10, "edm")


def test_train_on_images_of_an_odd_side_exits_2(tmp_path, capsys):
    out = tmp_path / "model.pt"
    code, err = run(capsys, "deep", "train", "--data", "digits:10", "--kimg", 1, "--out", out)
    assert_refused(code, err, "digits:10", "multiple of 4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option, value", [("--n", 0), ("--n", -3), ("--n-gen", 0), ("--n-gen", -1), ("--iterations", 0)]
)
def test_retrain_zero_or_negative_counts_name_the_option(tmp_path, capsys, option, value):
    out = tmp_path / "run"
    # --init of a missing file: on a build that accepted the count, the run stops there
    # (with another message) instead of training.
    argv = ["deep", "retrain", "--data", "digits:16", "--init", tmp_path / "none.pt"]
    code, err = run(capsys, *argv, option, value, "--out", out)
    assert_refused(code, err, f"{option} must be >= 1")
    assert not out.exists()


@pytest.mark.parametrize("option", ["--n", "--batch"])
def test_train_zero_counts_name_the_option(tmp_path, capsys, option):
    out = tmp_path / "model.pt"
    argv = ["deep", "train", "--data", "digits:16", "--kimg", 1, option, 0, "--out", out]
    code, err = run(capsys, *argv)
    assert_refused(code, err, f"{option} must be >= 1")
    assert list(tmp_path.iterdir()) == []


def test_generate_and_evaluate_zero_counts_name_the_option(tmp_path, capsys):
    code, err = run(
        capsys, "deep", "generate", "--ckpt", tmp_path / "x.pt", "--n", 0, "--out", tmp_path / "g"
    )
    assert_refused(code, err, "--n must be >= 1")
    code, err = run(
        capsys,
        "deep",
        "evaluate",
        "--real",
        "digits:8",
        "--generated",
        "digits:8",
        "--n-real",
        0,
    )
    assert_refused(code, err, "--n-real must be >= 1")
    assert list(tmp_path.iterdir()) == []


def test_n_left_out_still_means_every_image(monkeypatch, tmp_path, capsys):
    """The default of --n stays "all images": only an explicit 0 is refused."""
    import deep.retrain as dr
    from stability.errors import UsageError

    seen = {}

    def fake_run(cfg, out, **kwargs):
        seen["n"] = cfg.n
        raise UsageError("stop here")

    monkeypatch.setattr(dr, "run_deep", fake_run)
    code, _ = run(capsys, "deep", "retrain", "--data", "digits:16", "--out", tmp_path / "o")
    assert code == 2 and seen == {"n": None}


# ---------------------------------------------------------------------------------------------
# Memory proportional to what the input claims to be: archives that inflate far beyond their
# size on disk, images whose headers claim far more pixels than the data set's resolution.

MIB = 2**20
BOMB = 192 * MIB  # what each malicious member inflates to (6x the largest CIFAR-10 batch)
GROWTH_CAP_KIB = 64 * 1024  # peak memory the refusal may add to the interpreter's

# Peak RSS from /proc (VmHWM, this process's own high-water mark) rather than getrusage's
# ru_maxrss: Linux carries ru_maxrss across exec, so a child of a pytest holding torch would
# start at the parent's size and hide any growth below it.
MEASURE = """
import json, sys
import numpy, PIL.Image, PIL.PngImagePlugin  # imported before the baseline
from deep.data import load_images

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

before = kib("VmRSS")
try:
    load_images(sys.argv[1], **json.loads(sys.argv[2]))
    outcome = "loaded"
except ValueError as err:
    outcome = str(err)
print(json.dumps({"grew_kib": kib("VmHWM") - before, "outcome": outcome}))
"""


def peak_growth(spec, **kwargs):
    """(peak RSS growth in KiB, error message or "loaded") of load_images in a fresh process."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("peak memory is read from /proc (Linux)")
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(spec), json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["grew_kib"], result["outcome"]


class Zeros(io.RawIOBase):
    """`size` zero bytes, read in chunks (a bomb is written without holding it in memory)."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def write_zeros(stream, size, chunk=4 * MIB):
    for start in range(0, size, chunk):
        stream.write(bytes(min(chunk, size - start)))


def small_png_bytes():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    return buf.getvalue()


def test_cifar_tarball_member_beyond_a_batch_is_refused_before_it_is_read(tmp_path):
    import tarfile

    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = BOMB
        tar.addfile(info, io.BufferedReader(Zeros(BOMB)))
    assert tarball.stat().st_size < BOMB // 100
    grew, outcome = peak_growth(f"cifar10={tarball}")
    assert "data_batch_1" in outcome and "refusing" in outcome, outcome
    assert grew < GROWTH_CAP_KIB, grew


def test_extracted_cifar_batch_beyond_a_batch_is_refused_before_it_is_read(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    with open(batches / "data_batch_1", "wb") as f:
        f.truncate(4 * BOMB)  # sparse: nothing on disk, 768 MiB when read
    grew, outcome = peak_growth(f"cifar10={tmp_path}")
    assert "data_batch_1" in outcome and "refusing" in outcome, outcome
    assert grew < GROWTH_CAP_KIB, grew


@pytest.mark.parametrize("member", ["dataset.json", "00000/img00000001.png"])
def test_zip_member_inflating_beyond_its_role_is_refused(tmp_path, member):
    import zipfile

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("00000/img00000000.png", small_png_bytes())
        with z.open(member, "w", force_zip64=True) as stream:
            write_zeros(stream, BOMB)
    assert path.stat().st_size < BOMB // 100
    grew, outcome = peak_growth(f"zip={path}")
    assert member in outcome and "refusing" in outcome, outcome
    assert grew < GROWTH_CAP_KIB, grew


@pytest.fixture(scope="module")
def huge_pngs(tmp_path_factory):
    """Four 9000 x 9000 PNGs: 300 KB on disk, 81 M pixels each."""
    import shutil

    from PIL import Image

    folder = tmp_path_factory.mktemp("huge")
    Image.new("L", (9000, 9000)).save(folder / "0.png")
    for i in range(1, 4):
        shutil.copy(folder / "0.png", folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("resolution", [32, None])
def test_images_far_larger_than_the_resolution_are_refused_from_their_header(huge_pngs, resolution):
    kwargs = {} if resolution is None else {"resolution": resolution}
    grew, outcome = peak_growth(f"folder={huge_pngs}", **kwargs)
    assert "9000x9000" in outcome, outcome
    assert grew < GROWTH_CAP_KIB, grew


def test_capped_reads_still_load_a_data_set_at_its_size(tmp_path):
    """The caps refuse bombs, not data: a labelled zip and extracted CIFAR-10 batches of the
    real size (the cap's own size) load."""
    from deep.data import save_zip

    images = np.random.default_rng(0).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    save_zip(images, tmp_path / "ok.zip", labels=np.arange(64))
    grew, outcome = peak_growth(f"zip={tmp_path / 'ok.zip'}", resolution=32)
    assert outcome == "loaded" and grew < GROWTH_CAP_KIB
    batches = tmp_path / "cifar" / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    record = np.zeros((10000, 3073), np.uint8)  # a full binary batch: the cap's own size
    for i in range(1, 6):
        record.tofile(batches / f"data_batch_{i}.bin")
    grew, outcome = peak_growth(f"cifar10={tmp_path / 'cifar'}", limit=10)
    assert outcome == "loaded", outcome


@pytest.mark.parametrize("model, side", [("edm", 10), ("ddpm", 6), ("otcfm", 9)])
def test_data_whose_side_the_network_cannot_halve_is_refused(model, side):
    from deep.config import DeepConfig, net_config
    from stability.errors import UsageError

    with pytest.raises(UsageError, match="multiple of"):
        net_config(DeepConfig(model=model, net="tiny"), 1, side)
    net_config(DeepConfig(model=model, net="tiny"), 1, 8)  # a multiple of 4 is accepted


# Python batches within the 31 MB cap that would still build far more than their size: each
# was measured on the old unpickler (peak RSS of one batch): 586 MiB, 915 MiB, 1 GiB, 233 MiB,
# 586 MiB.
def _reconstruct_call(shape, code: bytes, subtype=b"cnumpy\nndarray\n") -> bytes:
    import pickle

    shape_ops = pickle.dumps(tuple(shape), protocol=2)[2:-1]
    return (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n" + subtype + shape_ops
        + b"U\x01" + code + b"\x87R."  # the typecode, TUPLE3, REDUCE, STOP
    )  # fmt: skip


def _in_a_batch(value: bytes) -> bytes:
    """{b"data": value, b"labels": []} as a pickle, `value` given as opcodes."""
    return b"\x80\x02}(U\x04data" + value[2:-1] + b"U\x06labels]u."


CRAFTED = {
    "shape": (_in_a_batch(_reconstruct_call((200_000, 3072), b"B")), "refusing an array of"),
    "objects": (_in_a_batch(_reconstruct_call((60_000_000,), b"O")), "object array"),
    "ndarray-call": (
        _in_a_batch(b"\x80\x02cnumpy\nndarray\nJ@\r\x03\x00M\x00\x0c\x86U\x01B\x86R."),
        "numpy.ndarray(...) called",
    ),
    "memo-index": (b"\x80\x02]r\x00\x00\x00\x04.", "memo index 67108864"),
    "new-lists": (b"\x80\x02(" + b"]" * 3_000_000 + b"l.", "more than 100000 pickle opcodes"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_small_pickle_cannot_build_a_large_object(tmp_path, case):
    from deep.data.cifar import CIFAR_BATCH_MAX

    raw, message = CRAFTED[case]
    assert len(raw) < CIFAR_BATCH_MAX
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(raw)
    grew, outcome = peak_growth(f"cifar10={folder}")
    assert message in outcome and "data_batch_1" in outcome, outcome
    assert grew < GROWTH_CAP_KIB, (grew, outcome)


def test_a_full_size_python_batch_is_within_the_pickle_bounds():
    # 10000 images, labels and file names, as the official batches hold them (Python 2
    # strings) and as numpy 2 writes them: their opcodes and arrays fit the bounds.
    import pickle
    import pickletools

    from deep.data.cifar import PICKLE_OPS_MAX, RestrictedUnpickler, check_pickle_size
    from tests.deep.test_deep_data import py2_style_dumps

    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [i % 10 for i in range(10000)],
        b"data": np.zeros((10000, 3072), np.uint8),
        b"filenames": [f"image_{i:05d}.png".encode() for i in range(10000)],
    }
    for raw in (py2_style_dumps(batch), pickle.dumps(batch, protocol=4)):
        ops = sum(1 for _ in pickletools.genops(io.BytesIO(raw)))
        assert 20000 < ops < PICKLE_OPS_MAX / 2, ops
        check_pickle_size(raw, "batch")
        back = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
        assert back[b"data"].shape == (10000, 3072) and back[b"filenames"][-1] == b"image_09999.png"
