import pytest
import torch

from lit_train.data import BlobsDataModule, DigitsDataModule, RegressionDataModule, TensorDataModule, TensorLoader, TextDataModule, XorDataModule


def test_loader_yields_every_sample_once_per_epoch_in_a_seeded_order():
    loader = TensorLoader(torch.arange(10), batch_size=4, shuffle=True, seed=3)
    first = torch.cat([b[0] for b in loader])
    assert sorted(first.tolist()) == list(range(10)) and len(loader) == 3
    assert torch.equal(first, torch.cat([b[0] for b in loader]))  # same epoch number, same order
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([b[0] for b in loader]))


def test_loader_drop_last_and_length():
    loader = TensorLoader(torch.arange(10), torch.arange(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="all of the same length"):
        TensorLoader(torch.zeros(3), torch.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        TensorLoader(torch.zeros(3), batch_size=0)


def test_digits_split_is_seeded_disjoint_and_standardized():
    dm = DigitsDataModule(seed=0)
    dm.setup()
    sizes = {name: len(x) for name, (x, _) in dm.splits.items()}
    assert sizes == {"val": 269, "test": 269, "train": 1259}
    train_x = dm.splits["train"][0]
    assert abs(train_x.mean().item()) < 1e-5 and abs(train_x.std().item() - 1) < 1e-4
    again = DigitsDataModule(seed=0)
    again.setup()
    assert torch.equal(again.splits["val"][0], dm.splits["val"][0])


def test_regression_data_follows_the_formula():
    dm = RegressionDataModule(function="linear", noise=0.0, seed=1)
    x, y = dm.make_tensors()
    assert torch.allclose(y, 2 * x + 1)
    dm = RegressionDataModule(function="cubic", noise=0.0, seed=1)
    x, y = dm.make_tensors()
    assert torch.allclose(y, x**3 - x**2)


def test_blobs_are_seeded_and_separable_when_the_noise_is_small():
    x, y = BlobsDataModule(num_features=5, num_classes=3, num_samples=300, noise=0.01, seed=4).make_tensors()
    again, _ = BlobsDataModule(num_features=5, num_classes=3, num_samples=300, noise=0.01, seed=4).make_tensors()
    assert x.shape == (300, 5) and torch.equal(x, again)
    centers = torch.stack([x[y == c].mean(0) for c in range(3)])
    assert torch.equal(torch.cdist(x, centers).argmin(1), y)
    with pytest.raises(ValueError, match="blobs need num_features >= 1, num_classes >= 2"):
        BlobsDataModule(num_classes=1)


def test_xor_labels():
    x, y = XorDataModule(noise=0.0).make_tensors()
    assert torch.equal(y, (x[:, 0].long() ^ x[:, 1].long()))


class _Planted(TensorDataModule):
    def __init__(self, x, **kwargs):
        super().__init__(**kwargs)
        self.x = x

    def make_tensors(self):
        return self.x, torch.zeros(len(self.x), dtype=torch.long)


def test_nan_in_the_data_is_reported():
    x = torch.zeros(20, 3)
    x[4, 1] = float("nan")
    with pytest.raises(ValueError, match="_Planted: the features contain 1 NaN or infinite values"):
        _Planted(x).setup()


def test_empty_dataset_is_reported():
    with pytest.raises(ValueError, match="_Planted produced an empty dataset"):
        _Planted(torch.zeros(0, 3)).setup()


def test_bad_split_fractions_are_reported():
    with pytest.raises(ValueError, match="`val_fraction` and `test_fraction` must be in"):
        _Planted(torch.zeros(3, 1), val_fraction=0.6, test_fraction=0.6)


def test_text_windows_predict_the_next_character(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghijklmnopqrstuvwxyz" * 4)
    dm = TextDataModule(path=str(path), block_size=8, val_fraction=0.25, batch_size=4)
    dm.setup()
    x, y = dm.splits["train"]
    assert x.shape[1] == 8 and torch.equal(x[:, 1:], y[:, :-1])
    assert dm.decode(x[0]) == "abcdefgh"


def test_text_outside_the_vocabulary_is_reported(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("naïve " * 50, encoding="utf-8")
    with pytest.raises(ValueError, match=r"characters outside vocab_size=128: \['ï'\]"):
        TextDataModule(path=str(path), block_size=8).setup()


def test_loader_resumes_at_the_next_unseen_batch():
    loader = TensorLoader(torch.arange(20), batch_size=3, shuffle=True, seed=1)
    loader.sampler.set_epoch(4)
    full = [b[0].tolist() for b in loader]
    iterator = iter(loader)
    seen = [next(iterator)[0].tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state == {"epoch": 4, "served": 3}

    restored = TensorLoader(torch.arange(20), batch_size=3, shuffle=True, seed=1)
    restored.load_state_dict(state)
    assert seen + [b[0].tolist() for b in restored] == full
    assert [b[0].tolist() for b in restored] == full  # only the first iteration after a restore skips


def test_loader_state_saved_after_the_last_batch_continues_with_the_next_epoch():
    loader = TensorLoader(torch.arange(20), batch_size=3, shuffle=True, seed=1)
    loader.sampler.set_epoch(2)
    list(loader)  # the whole of epoch 2
    resumed = TensorLoader(torch.arange(20), batch_size=3, shuffle=True, seed=1)
    resumed.load_state_dict(loader.state_dict())
    loader.sampler.set_epoch(3)
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in loader]  # all 7 batches of epoch 3
