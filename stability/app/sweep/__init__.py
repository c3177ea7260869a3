"""`stability sweep`: grids of runs from a TOML spec, on a local process pool or Slurm.

One job per module, in the order a sweep uses them:

- `registry`: the commands a sweep can run and their options (read from their own parsers);
- `spec`: the TOML spec (`SweepSpec`, `load_spec`, `parse_spec`), its format documented there;
- `cells`: the grid (`Cell`, `expand`, `cell_name`);
- `status`: OUT/sweep.json (`SweepStatus`), what is done, failed or pending;
- `processes`: running one cell as its own process (`run_command`, `thread_env`, `Outcome`);
- `local`: the local executor (a pool of cell processes, Ctrl-C and SIGTERM);
- `slurm`: the Slurm executor (submitit job arrays, requeue on preemption);
- `launch`: the entry point torchrun starts for each rank of a multi-GPU cell;
- `run`: `run_sweep` and its `SweepReport`;
- `cli`: the command lines `stability sweep` and `stability collect`.

`stability collect` itself (tables and figures from run folders) is run infrastructure:
`stability.runs.collect`. The sweep folder is locked with `stability.runs.lock`.
"""
