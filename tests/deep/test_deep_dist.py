"""deep/dist.py without a GPU: what `init` asks of torch under torchrun (issue 19 leftover)."""

import pytest

torch = pytest.importorskip("torch")

from deep import dist  # noqa: E402


@pytest.fixture
def calls(monkeypatch):
    """Record set_device and init_process_group instead of running them."""
    seen = []
    monkeypatch.setattr(dist.td, "is_initialized", lambda: False)
    monkeypatch.setattr(
        dist.td, "init_process_group", lambda backend: seen.append(("init", backend))
    )
    monkeypatch.setattr(dist.torch.cuda, "set_device", lambda i: seen.append(("set_device", i)))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    return seen


def test_nccl_rank_takes_its_local_gpu_before_joining(calls):
    dist.init("cuda")
    assert calls == [("set_device", 3), ("init", "nccl")]


def test_gloo_on_cpu_touches_no_gpu(calls):
    dist.init("cpu")
    assert calls == [("init", "gloo")]


def test_single_process_joins_nothing(calls, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init("cuda")
    assert calls == []
