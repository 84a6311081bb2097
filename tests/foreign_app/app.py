"""A Hydra app that knows nothing of lit_train, swept by ``hydra/sweeper=lit_optuna`` as any app is.

It returns ``(x - 1)² + (y + 2)²``, reached in ``steps`` steps; a trial of a
sweep reports each step's value and stops when the sweep's pruner says so.
"""

import hydra
from omegaconf import DictConfig

from hydra_plugins.lit_train_optuna_sweeper import trial


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """The distance of ``(x, y)`` from ``(1, -2)``, squared: what the sweep minimizes."""
    if cfg.fail:
        raise ValueError(f"fail={cfg.fail}")
    target = (cfg.x - 1.0) ** 2 + (cfg.y + 2.0) ** 2 + cfg.offset
    this_trial = trial.current()
    value = target
    for step in range(cfg.steps):
        value = target * (1 + 1 / (step + 1))  # each step closer to the target
        if this_trial is not None:
            this_trial.report(value, step)
            if this_trial.should_prune():
                break
    return value


if __name__ == "__main__":
    main()
