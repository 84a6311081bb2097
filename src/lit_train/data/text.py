"""Character-level language-modelling data."""

from pathlib import Path

import torch

from lit_train.data.tensor_datamodule import TensorDataModule

DEFAULT_TEXT = Path(__file__).parent / "assets" / "public_domain.txt"


class TextDataModule(TensorDataModule):
    """Windows of a text file as (input, next-character target) id sequences.

    Characters are their code points (``vocab_size`` 128 covers ASCII). The
    first ``1 - val_fraction`` of the text trains, the rest validates and tests,
    so no window of the held-out text was seen in training.

    Args:
        path: A UTF-8 text file; ``None`` uses the public-domain text shipped with lit_train.
        vocab_size: Code points at or above it raise an error.
        block_size: Context length of each window.
        stride: Offset between window starts (default: an eighth of a block).
        **kwargs: Batch size, ``val_fraction`` and seed, see :class:`TensorDataModule`.
    """

    def __init__(
        self, path: str | None = None, vocab_size: int = 128, block_size: int = 64, stride: int | None = None, val_fraction: float = 0.1, **kwargs
    ) -> None:
        super().__init__(val_fraction=val_fraction, test_fraction=0.0, **kwargs)
        if block_size < 1:
            raise ValueError(f"`block_size` must be >= 1, got {block_size}")
        self.path = Path(path) if path is not None else DEFAULT_TEXT
        self.vocab_size, self.block_size = vocab_size, block_size
        self.stride = stride or max(1, block_size // 8)

    def _windows(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(ids) < self.block_size + 1:
            raise ValueError(f"{self.path}: a split of {len(ids)} characters is shorter than block_size + 1 = {self.block_size + 1}")
        chunks = ids.unfold(0, self.block_size + 1, self.stride)
        return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        text = self.path.read_text(encoding="utf-8")
        ids = torch.tensor([ord(c) for c in text], dtype=torch.long)
        if len(ids) == 0:
            raise ValueError(f"{self.path} is empty")
        if (too_big := ids >= self.vocab_size).any():
            bad = sorted({text[i] for i in too_big.nonzero().flatten().tolist()})[:5]
            raise ValueError(f"{self.path} has characters outside vocab_size={self.vocab_size}: {bad}")
        cut = int(len(ids) * (1 - self.val_fraction))
        held_out = self._windows(ids[cut:])
        self.splits = {"train": self._windows(ids[:cut]), "val": held_out, "test": held_out}

    def decode(self, ids: torch.Tensor) -> str:
        """Turns a 1-D tensor of ids back into text."""
        return "".join(map(chr, ids.tolist()))
