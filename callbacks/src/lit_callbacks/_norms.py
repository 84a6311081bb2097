"""The dtype the monitors compute norms in."""

import torch


def norm_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32 for every precision up to single (half-precision squares overflow), float64 for double (``64-true``).

    A float32 result for float64 tensors would be a narrowing cast, which ``torch._foreach_norm`` refuses.
    """
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32
