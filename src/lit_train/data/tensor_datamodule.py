"""Shared split, standardization and loading for datasets that fit in memory."""

import torch
import lightning.pytorch as L

from lit_train.data.loader import TensorLoader


class TensorDataModule(L.LightningDataModule):
    """Base class: subclasses return all samples from :meth:`make_tensors`.

    The samples are checked (finite, non-empty), split into train/val/test by a
    seeded permutation, optionally standardized with statistics of the training
    split only, and served by :class:`TensorLoader`.

    Args:
        batch_size: Samples per training batch (evaluation uses the same size).
        val_fraction: Share of samples held out for validation.
        test_fraction: Share of samples held out for testing.
        seed: Seed of the split and of the training shuffle.
        standardize: Shift and scale all features by the training split's overall mean and
            standard deviation. One scale for all features, not one per feature: a
            feature that is nearly constant in training (a corner pixel) would
            otherwise blow up to hundreds of standard deviations on a held-out sample.
    """

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"`val_fraction` and `test_fraction` must be in [0, 1) with a sum below 1, "
                f"got {val_fraction} and {test_fraction}"
            )
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.standardize = standardize
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_loader: TensorLoader | None = None
        self._train_loader_state: dict[str, int] | None = None

    def make_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(features, targets)`` of the whole dataset."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        x, y = self.make_tensors()
        if len(x) == 0:
            raise ValueError(f"{type(self).__name__} produced an empty dataset")
        bad = (~torch.isfinite(x)).sum().item() if x.is_floating_point() else 0
        if bad:
            raise ValueError(f"{type(self).__name__}: the features contain {bad} NaN or infinite values")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        n_val, n_test = int(len(x) * self.val_fraction), int(len(x) * self.test_fraction)
        parts = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
        if len(parts["train"]) == 0:
            raise ValueError(f"{type(self).__name__}: no samples left for training after the val/test split")
        if self.standardize:
            train_x = x[parts["train"]]
            mean, std = train_x.mean(), train_x.std().clamp_min(1e-12)
            x = (x - mean) / std
        self.splits = {name: (x[index].contiguous(), y[index].contiguous()) for name, index in parts.items()}

    def _loader(self, split: str, shuffle: bool) -> TensorLoader:
        x, y = self.splits[split]
        return TensorLoader(x, y, batch_size=self.batch_size, shuffle=shuffle, seed=self.seed)

    def train_dataloader(self) -> TensorLoader:
        # Overfitting a batch means the same batch every epoch: no shuffle then.
        overfitting = self.trainer is not None and bool(self.trainer.overfit_batches)
        self._train_loader = self._loader("train", shuffle=not overfitting)
        if self._train_loader_state is not None:
            self._train_loader.load_state_dict(self._train_loader_state)
            self._train_loader_state = None
        return self._train_loader

    def state_dict(self) -> dict[str, dict[str, int]]:
        """The training loader's position, so a resumed run continues at the next unseen batch.

        Kept here as well as on the loader itself: Lightning restores a data module
        before it builds the loaders, but may build the training loader before it
        restores the loops (``estimated_stepping_batches`` does), and then never
        hands that loader its saved state.
        """
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, dict[str, int]]) -> None:
        self._train_loader_state = state_dict.get("train_loader")

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", shuffle=False)
