"""A tiny decoder-only transformer language model (GPT-style)."""

import torch
from torch import nn
from torch.nn import functional as F


class _Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = nn.MultiheadAttention(n_embd, n_head, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=causal_mask, need_weights=False, is_causal=True)[0]
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, pre-norm causal self-attention blocks, tied output head.

    Args:
        vocab_size: Number of token ids.
        block_size: Longest context the position embedding covers.
        n_layer: Transformer blocks.
        n_head: Attention heads per block (must divide ``n_embd``).
        n_embd: Embedding width.
        dropout: Dropout in attention, MLP and embeddings.

    Example::

        >>> GPT(vocab_size=128, block_size=16, n_layer=1, n_head=2, n_embd=32)(torch.zeros(2, 16, dtype=torch.long)).shape
        torch.Size([2, 16, 128])
    """

    def __init__(
        self, vocab_size: int, block_size: int, n_layer: int = 2, n_head: int = 4, n_embd: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"`n_embd` ({n_embd}) must be divisible by `n_head` ({n_head})")
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        self.register_buffer("causal_mask", torch.ones(block_size, block_size, dtype=torch.bool).triu(1), persistent=False)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2's init: small normal weights keep early logits near uniform.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Returns next-token logits of shape ``(batch, time, vocab_size)``."""
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        mask = self.causal_mask[:t, :t]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0) -> torch.Tensor:
        """Samples ``max_new_tokens`` tokens after the context ``idx`` (batch, time)."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1, :] / temperature
            idx = torch.cat([idx, torch.multinomial(F.softmax(logits, dim=-1), 1)], dim=1)
        return idx
