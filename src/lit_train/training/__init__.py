"""One run in one process: the Trainer built from a checked config, and everything the run leaves behind.

Checkpoints, ``metrics.csv``, ``summary.json``, the run directory's clean-up on
failure, and the Lightning extensions that the built-in config groups name.
"""
