"""Across runs: a trial's side of pruning, the study storage, and the report that compares a multirun's runs."""
