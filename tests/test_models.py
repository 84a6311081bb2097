import pytest
import torch
from torch import nn

from lit_train.models import CNN, GPT, MLP


def test_mlp_without_hidden_layers_is_linear():
    net = MLP(3, 1, hidden=[])
    assert [type(m) for m in net.layers] == [nn.Linear]


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh", "sigmoid"])
def test_mlp_activations(activation):
    net = MLP(3, 2, hidden=[5], activation=activation, dropout=0.5)
    assert type(net.layers[1]).__name__.lower() == activation
    assert isinstance(net.layers[2], nn.Dropout)


def test_he_and_xavier_init_scale_weights_by_fan():
    torch.manual_seed(0)
    he = MLP(1000, 10, hidden=[1000], init="he")
    xavier = MLP(1000, 10, hidden=[1000], activation="tanh", init="xavier")
    assert he.layers[0].weight.std().item() == pytest.approx((2 / 1000) ** 0.5, rel=0.02)
    assert xavier.layers[0].weight.std().item() == pytest.approx(5 / 3 * (2 / 2000) ** 0.5, rel=0.02)
    assert he.layers[0].bias.abs().sum() == 0


def test_bad_activation_and_init_name_the_choices():
    with pytest.raises(ValueError, match=r"`activation` must be one of \('gelu', 'relu', 'sigmoid', 'silu', 'tanh'\), got 'relu6'"):
        MLP(2, 2, activation="relu6")
    with pytest.raises(ValueError, match=r"`init` must be one of \('default', 'he', 'xavier'\), got 'kaiming'"):
        MLP(2, 2, init="kaiming")


def test_cnn_reads_flat_and_image_input():
    net = CNN((1, 8, 8), num_classes=10)
    assert net(torch.zeros(2, 64)).shape == net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_gpt_is_causal():
    torch.manual_seed(0)
    gpt = GPT(vocab_size=16, block_size=8, n_layer=2, n_head=2, n_embd=16).eval()
    x = torch.randint(0, 16, (1, 8))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 16
    assert torch.allclose(gpt(x)[0, :-1], gpt(y)[0, :-1], atol=1e-6)


def test_gpt_rejects_too_long_input_and_bad_heads():
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        GPT(16, 8, n_layer=1, n_head=1, n_embd=8)(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`n_embd` \(10\) must be divisible by `n_head` \(3\)"):
        GPT(16, 8, n_head=3, n_embd=10)
