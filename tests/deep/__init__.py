"""Tests of the package they are named after (the layout mirrors the packages)."""
