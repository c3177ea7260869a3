"""Status lines of a long fit, for when nobody watches a progress bar (stderr not a terminal).

EDM's training loop prints one line per "tick" (by default every 50 kimg) with the images seen,
the seconds per kimg and the peak memory; a cluster job or a sweep cell with stderr redirected
otherwise stays silent until a phase ends. ``StatusLog`` prints such a line every ``every_kimg``
thousand images or every ``every_sec`` seconds, whichever comes first, and when a fit ends:

    [fit t=1] kimg 12.3/50.0  sec/kimg 4.21  loss 0.1234  left 2m 39s  peak_mem 812 MiB (cpu rss)

- kimg: thousands of images seen in this fit / the fit's total (3 decimals below 10 kimg);
- sec/kimg: wall seconds per thousand images since the previous line;
- loss: mean training loss of the steps since the previous line;
- left: the fit's remaining images at its average speed so far;
- peak_mem: torch.cuda.max_memory_allocated on a CUDA device, else the process's peak resident
  memory (resource.getrusage; ru_maxrss is in KiB on Linux, bytes on macOS).

Each line also goes to a log file (appended, flushed per line), e.g. DIR/log.txt of a run folder.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

STATUS_KIMG = 50.0  # the official training loop's kimg_per_tick
STATUS_SEC = 60.0


def peak_memory(device: str) -> tuple[float, str]:
    """(peak bytes, what was measured) of this process on `device`."""
    if str(device).startswith("cuda"):
        import torch

        return float(torch.cuda.max_memory_allocated(device)), "gpu allocated"
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(rss if sys.platform == "darwin" else rss * 1024), "cpu rss"


def format_duration(seconds: float) -> str:
    """12 s, 2m 39s, 5h 04m: the official log's style."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def format_bytes(n: float) -> str:
    """``n`` bytes as GiB (two decimals) from 1 GiB up, else as whole MiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


class StatusLog:
    """Periodic status lines of a fit on `stream` and appended to `log_path`.

    Parameters
    ----------
    stream : where lines are printed (default sys.stderr; None: the log file only)
    log_path : file the lines are appended to (None: none)
    every_kimg, every_sec : print when this many kimg or seconds passed since the last line
    device : the training device (for the peak memory)
    clock : a function returning seconds (time.monotonic; a test may pass its own)
    """

    def __init__(
        self,
        stream=sys.stderr,
        log_path: str | Path | None = None,
        every_kimg: float = STATUS_KIMG,
        every_sec: float = STATUS_SEC,
        device: str = "cpu",
        clock=time.monotonic,
    ):
        self.stream, self.log_path = stream, Path(log_path) if log_path else None
        self.every_img, self.every_sec = every_kimg * 1000, every_sec
        self.device, self.clock = device, clock
        self.label, self.total = "fit", 0
        self.lines: list[str] = []

    def start(self, total_img: int, done_img: int = 0, label: str | None = None) -> None:
        """A fit of `total_img` images begins (or resumes with `done_img` already seen); `label`
        names it in the lines (kept from the previous fit when None)."""
        self.label, self.total = label or self.label, total_img
        self.t0 = self.t_last = self.clock()
        self.img0 = self.img_last = done_img
        self.loss_sum, self.loss_n = 0.0, 0

    def update(self, done_img: int, loss: float) -> str | None:
        """Record a step; print and return a line when one is due (else None)."""
        self.loss_sum += loss
        self.loss_n += 1
        now = self.clock()
        due = (
            done_img - self.img_last >= self.every_img
            or now - self.t_last >= self.every_sec
            or done_img >= self.total
        )
        return self._emit(done_img, now) if due else None

    def _emit(self, done_img: int, now: float) -> str:
        span = max(done_img - self.img_last, 1)
        sec_per_kimg = (now - self.t_last) / span * 1000
        speed = (now - self.t0) / max(done_img - self.img0, 1)  # seconds per image in this fit
        mem, kind = peak_memory(self.device)
        d = 1 if self.total >= 10_000 else 3  # short fits (CPU tests) in images, not tenths
        line = (
            f"[{self.label}] kimg {done_img / 1000:.{d}f}/{self.total / 1000:.{d}f}  "
            f"sec/kimg {sec_per_kimg:.3g}  loss {self.loss_sum / max(self.loss_n, 1):.4g}  "
            f"left {format_duration((self.total - done_img) * speed)}  "
            f"peak_mem {format_bytes(mem)} ({kind})"
        )
        self.t_last, self.img_last = now, done_img
        self.loss_sum, self.loss_n = 0.0, 0
        self.write(line)
        return line

    def write(self, line: str) -> None:
        """Print `line` and append it to the log file."""
        self.lines.append(line)
        if self.stream is not None:
            print(line, file=self.stream, flush=True)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
