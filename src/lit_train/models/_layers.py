"""Activation and initialization choices shared by the networks."""

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
INITS = ("default", "he", "xavier")


def activation(name: str) -> nn.Module:
    """Returns a new activation module by name.

    Raises:
        ValueError: If ``name`` is not one of ``ACTIVATIONS``.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {tuple(sorted(ACTIVATIONS))}, got {name!r}")
    return ACTIVATIONS[name]()


def initialize(module: nn.Module, scheme: str, nonlinearity: str) -> None:
    """Re-initializes every Linear and Conv2d weight of ``module`` in place; biases become zero.

    ``he`` is Kaiming-normal (fan-in, for ReLU-like activations), ``xavier`` is
    Glorot-normal (for tanh/sigmoid); ``default`` keeps PyTorch's own init.
    """
    if scheme not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {scheme!r}")
    if scheme == "default":
        return
    relu_like = nonlinearity in ("relu", "gelu", "silu")
    for layer in module.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        if scheme == "he":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if relu_like else "linear")
        else:
            # Glorot's variance 2/(n_in+n_out); tanh's gain of 5/3 keeps its outputs from shrinking.
            nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain("tanh") if nonlinearity == "tanh" else 1.0)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
