"""An app written for hydra-optuna-sweeper, as its example is: it maximizes, and draws ``z`` near ``x`` itself."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="optuna_conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Largest where ``x`` and ``z`` are small and ``y`` is 0."""
    return -(cfg.x**2 + cfg.y**2 + cfg.z**2 + cfg.w)


def configure(cfg: DictConfig, trial) -> dict[str, str]:
    """``custom_search_space``: ``z`` within ``max_z_difference_from_x`` of ``x``, and ``w``, a key the app adds."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    return {"+w": 0.5}


if __name__ == "__main__":
    main()
