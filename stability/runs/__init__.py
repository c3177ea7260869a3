"""Run infrastructure: run folders, atomic writes, JSON-safe values, figures.

This layer sits between the core (`stability` math) and the engines (`simulations`, `deep`),
which both write their results through it. It imports the core only, never an engine or the
application (`stability.app`); see docs/architecture.md.
"""
