"""The time-throttled progress bar."""

import pytest

from lit_train import progress
from lit_train.progress import ProgressBar


def test_redraws_at_most_every_refresh_seconds_and_always_at_the_end(monkeypatch):
    clock = iter([0.0, 0.05, 0.1, 0.25, 0.3, 0.31])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = ProgressBar(refresh_seconds=0.2)
    monkeypatch.setattr(ProgressBar, "is_enabled", property(lambda self: True))
    assert [bar._should_update(n, total=6) for n in range(1, 7)] == [True, False, False, True, False, True]


@pytest.mark.parametrize("value", [-0.1, "fast", True])
def test_refresh_must_be_a_number_at_least_zero(value):
    with pytest.raises(ValueError, match=rf"`refresh_seconds` must be a number >= 0, got {value!r}"):
        ProgressBar(refresh_seconds=value)
