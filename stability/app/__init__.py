"""The application layer: the `stability` command line, sweeps, reproduce and the report.

Only this layer knows the list of commands. It maps the core's error classes to exit codes
(`stability.errors.UsageError` -> 2, anything else during a run -> 1). Nothing below it imports
it; see docs/architecture.md.
"""
