"""`stability sweep`: grids of runs from a TOML spec, on a local process pool or Slurm."""
