"""Option groups and input checks shared by the `stability deep` commands (deep_commands.py:
retrain and train; deep_images.py: generate, evaluate and compare).

Every check raises UsageError with one line naming the option, before anything is written.
"""

from __future__ import annotations

from stability.errors import UsageError


def common_options(p):
    """--device, --dtype, --compile and --seed, shared by every deep command that runs a network."""
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:K | mps (default cpu)")
    p.add_argument("--dtype", default="fp32", help="fp32 | tf32 | bf16 (autocast)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--seed", type=int, default=None)


def check_positive(args, *names) -> None:
    """UsageError naming the option when one of `names` is given and not >= 1.

    0 must never mean "all" or "forever": `--n 0` used to mean every image and `--n-gen 0` ran
    until killed. An option left out (None) keeps its default.
    """
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_device(device: str) -> None:
    """UsageError unless `device` (cpu | cuda | cuda:K | mps) exists in this torch build, so
    that a run on a missing accelerator stops before its folder is written."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: this torch has no usable CUDA device (torch "
                f"{torch.__version__}, CUDA {torch.version.cuda or 'not compiled in'})"
            )
        count = torch.cuda.device_count()
        if index and (not index.isdigit() or int(index) >= count):
            raise UsageError(f"--device {device}: CUDA devices are cuda:0..cuda:{count - 1}")
        return
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {device}: MPS is not available in this torch build")
        return
    raise UsageError(f"--device must be cpu, cuda, cuda:K or mps, got {device!r}")


def downsampling_factor(model: str) -> int:
    """How many times the small (CPU) network of `model` halves the image, 2^(levels - 1).

    The paper's networks (--net cifar10 | ffhq64) take exactly 32 or 64 pixels, multiples of
    it; the U-Net's skip connections need every level's side to be an integer.
    """
    from deep.methods import OTCFMNet
    from deep.unet import UNetConfig

    tiny = OTCFMNet.tiny() if model == "otcfm" else UNetConfig.tiny()
    return 2 ** (len(tiny.channel_mult) - 1)


def check_resolution(resolution, model: str | None, what: str = "--resolution") -> None:
    """UsageError unless `resolution` is a positive multiple of the network's downsampling
    factor, so that every level's side is a whole number of pixels (`what` names the option or
    the data)."""
    if resolution is None:
        return
    factor = downsampling_factor(model or "edm")
    if resolution < factor or resolution % factor:
        raise UsageError(
            f"{what} {resolution}: the {model or 'edm'} U-Net halves the image "
            f"{factor.bit_length() - 1} times, so it needs a multiple of {factor} (>= {factor})"
        )


def checkpoint_network(path, model: str):
    """The method, network and state stored in one of this toolkit's checkpoints.

    Parameters
    ----------
    path : str or Path
        A checkpoint written by `deep train`, `deep retrain` or `deep.train.Trainer.save`.
    model : str or None
        The method it must hold ("edm", "otcfm", "ddpm"); None accepts any.

    Returns
    -------
    tuple
        (method name, the network built from the stored config, the loaded state dict).

    Raises
    ------
    UsageError
        A file that is not such a checkpoint, or one that holds another method.
    """
    from deep.methods import net_from_dict
    from deep.train import FORMAT, load_weights

    state = load_weights(path)
    if state.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not a checkpoint written by this toolkit (it stores the network size)"
        )
    stored = state.get("method", "edm")
    if model is not None and stored != model:
        raise UsageError(f"{path} holds a {stored} model, not {model}")
    return stored, net_from_dict(stored, state["net_cfg"]), state
