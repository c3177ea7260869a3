"""`stability reproduce`: verify and reproduce the paper on this machine, and write a report.

One command runs every theory check, the Gaussian experiments (collapse against alpha(n)^t, the
lambda sweep, the data policies side by side), the 2D experiments (two moons with OT-CFM,
Figure 7; 8 gaussians with DDPM, Figure 3) and, when the torch extra is installed, the EDM loop
on the bundled digits for Figure 2's lambdas with a lambda = 0 control; it writes a report
folder:

    DIR/report.md      the story: per section the paper's claim, the verdict, the numbers, a figure
    DIR/report.html    the same, self-contained (figures embedded)
    DIR/results.json   every number and verdict; meta.part_seconds: per part the seconds spent
                       in the engines and in total
    DIR/figures/*.png  the figures
    DIR/parts/<name>/  the run folders and each section's result (a rerun skips finished parts)

Sizes: ``tiny`` (a smoke run for the test suite), ``quick`` (the default, a few minutes on two
cores) and ``full`` (the paper's sizes where a CPU allows), defined in `sizes`.

Modules: `sizes` (the sizes as frozen dataclasses), `section` (what a part returns), one module
per part (`theory`, `gaussian`, `twod`, `deep`), `share` (the deep runs' shared t = 0 stage and
feature network), `threads` (one compute thread for the parts that train networks), `report`
(markdown and html), `run` (the driver).
"""

from stability.app.reproduce.run import PARTS, reproduce
from stability.app.reproduce.sizes import SIZES

__all__ = ["PARTS", "SIZES", "reproduce"]
