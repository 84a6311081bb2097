"""lit_train's Optuna sweeper for Hydra: Bayesian search with pruning, resumable studies and a best-trial file.

Select it with ``hydra/sweeper=lit_optuna`` (the preset ``hparams_search=optuna``
does). Importing this package is cheap: Optuna is imported by ``_impl`` when a
sweep starts.
"""
