"""A batch loader over in-memory tensors that costs almost nothing per batch."""

from collections.abc import Iterator

import torch
import torch.distributed as dist


class EpochShuffle:
    """The order of one epoch: a permutation seeded by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch (as it does for a
    ``DistributedSampler``), so an epoch's order depends on its number alone,
    never on how many epochs ran in this process.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=generator)


class TensorLoader:
    """Yields tuples of batch slices from equally long tensors.

    A drop-in for ``DataLoader(TensorDataset(...))`` when the data already sits
    in memory: one index (or slice) per batch instead of one per sample and a
    collate. Under ``torch.distributed`` each rank takes every ``world_size``-th
    sample of the epoch's order, trimmed so all ranks see the same number of
    batches.

    The loader is resumable: its ``state_dict`` holds the epoch and how many
    batches of it were handed out, and after ``load_state_dict`` the next epoch
    iteration continues at the next unseen batch of the same order, which is what
    Lightning needs to resume a run mid-epoch exactly.

    Args:
        tensors: Tensors indexed along their first dimension.
        batch_size: Samples per batch.
        shuffle: Draw a new seeded order every epoch.
        drop_last: Drop the final incomplete batch.
        seed: Seed of the shuffle.

    Example::

        >>> loader = TensorLoader(torch.arange(10), batch_size=4)
        >>> [b[0].tolist() for b in loader]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = False, drop_last: bool = False, seed: int = 0
    ) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorLoader needs at least one tensor, all of the same length")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        # Lightning looks for DataLoader's `sampler`/`batch_sampler` to call set_epoch.
        self.sampler = EpochShuffle(seed)
        self.batch_sampler = None
        self._served = 0  # batches of the current epoch handed out
        # Batches of that epoch to skip at its next iteration (after a restore).
        self._resume_epoch, self._resume_at = 0, 0

    @staticmethod
    def _rank_and_world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _num_samples(self) -> int:
        _, world = self._rank_and_world()
        return len(self.tensors[0]) // world if world > 1 else len(self.tensors[0])

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        """Where the loader is: the epoch and the number of its batches handed out."""
        return {"epoch": self.sampler.epoch, "served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at the next unseen batch of ``state``'s epoch when that epoch is iterated next.

        A state saved after the last batch of its epoch continues with the next
        epoch; so does one whose epoch Lightning ends early (``limit_train_batches``)
        and then moves past with :meth:`EpochShuffle.set_epoch`.
        """
        if state["served"] >= len(self):
            self.sampler.set_epoch(state["epoch"] + 1)
            self._resume_epoch, self._resume_at = state["epoch"] + 1, 0
        else:
            self.sampler.set_epoch(state["epoch"])
            self._resume_epoch, self._resume_at = state["epoch"], state["served"]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        rank, world = self._rank_and_world()
        n_total = len(self.tensors[0])
        if self.shuffle or world > 1:
            order = self.sampler.permutation(n_total) if self.shuffle else torch.arange(n_total)
            if world > 1:
                order = order[rank : self._num_samples() * world : world]
        else:
            order = None  # contiguous slices are views: no copy at all
        first = self._resume_at if self.sampler.epoch == self._resume_epoch else 0
        self._resume_at = 0
        self._served = first
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            self._served += 1
            if order is None:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                index = order[start : start + self.batch_size]
                yield tuple(t[index] for t in self.tensors)
