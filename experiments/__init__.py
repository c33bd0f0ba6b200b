"""Research harnesses on top of the `vlprm` library (run from the repository root: `python -m experiments...`)."""
