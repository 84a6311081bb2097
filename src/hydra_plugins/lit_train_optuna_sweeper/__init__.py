"""An Optuna sweeper for any Hydra app: Bayesian search with pruning, resumable studies, parallel trials and a
best-trial file; a drop-in for hydra-optuna-sweeper.

Select it with ``hydra/sweeper=lit_optuna`` (lit_train's preset ``hparams_search=optuna``
does). Importing this package is cheap: Optuna is imported by ``_impl`` when a
sweep starts.
"""
