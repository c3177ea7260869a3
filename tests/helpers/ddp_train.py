"""Train a tiny EDM for a few steps (one process, or several under torchrun) and save it.

Used by tests/deep/test_deep_edm.py to compare a 2-process gloo run with a single-process run.
"""

import sys

import numpy as np

from deep import dist
from deep.train import Trainer, TrainOptions
from deep.unet import UNetConfig


def main(out: str) -> None:
    dist.init("cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 1, 16, 16), dtype=np.uint8)
    cfg = UNetConfig.tiny(16, 1)
    trainer = Trainer(
        cfg, TrainOptions(batch=8, lr=1e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=0.05), seed=3
    )
    trainer.train(images, kimg=0.032)  # 4 steps of 8 images
    seeds = list(range(5))
    generated = trainer.generate(seeds, batch=2)
    if dist.is_main():
        trainer.save(out)
        np.save(out + ".gen.npy", generated)
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
