"""One-line causes: a checkpoint that safe loading refused is called unsafe and named, whatever torch's wording."""

import pickle

import pytest

from lit_train.config.messages import describe, refused_global, unsafe_to_load

#: Torch's refusals as worded now, and as they might be worded: the global is found wherever it is named.
WORDINGS = [
    ("Weights only load failed. This file can still be loaded, to do so you have two options.\n\tWeightsUnpickler "
     "error: Unsupported global: GLOBAL payload_pkg.Payload was not an allowed global by default. Please use "
     "`torch.serialization.add_safe_globals([payload_pkg.Payload])` to allowlist this global.", "payload_pkg.Payload"),
    ("Weights only load failed. Unsupported class payload_pkg.Payload", "payload_pkg.Payload"),
    ("weights_only load refused: unsupported global `payload_pkg.Payload`", "payload_pkg.Payload"),
    ("Weights only load failed; allowlist it with torch.serialization.safe_globals([payload_pkg.Payload])",
     "payload_pkg.Payload"),
    ("Weights only load failed. Unsupported operand 149", None),
]


@pytest.mark.parametrize(("message", "name"), WORDINGS)
def test_the_refused_global_is_named_whatever_the_wording(message, name):
    error = pickle.UnpicklingError(message)
    assert refused_global(error) == name
    held = f"it holds {name}, a pickled object that" if name else "it holds pickled objects that"
    assert unsafe_to_load(error).startswith(f"is unsafe to load: {held} torch.load(weights_only=True) refuses")


def test_describe_calls_a_refused_checkpoint_unsafe_from_behind_the_errors_that_wrap_it():
    try:
        try:
            raise pickle.UnpicklingError(WORDINGS[0][0])
        except pickle.UnpicklingError as error:
            raise RuntimeError("while restoring the checkpoint") from error
    except RuntimeError as wrapped:
        assert describe(wrapped).startswith("a checkpoint is unsafe to load: it holds payload_pkg.Payload, ")


def test_describe_leaves_other_unpickling_errors_as_they_are():
    assert describe(pickle.UnpicklingError("invalid load key, 'x'.")) == "UnpicklingError: invalid load key, 'x'."
