"""Override strings: quoting values, the sweep's own overrides, adding callbacks to the default set, and the
recorded overrides a resumed run continues with."""

# The sweeper's, which serves any app: one quoting and one list of a sweep's own overrides for both.
from hydra_plugins.lit_train_optuna_sweeper.app import SWEEP_ONLY, quote

__all__ = ["SWEEP_ONLY", "expand_callback_additions", "quote", "with_recorded_overrides"]


def expand_callback_additions(overrides: list[str]) -> list[str]:
    """Turns ``+callbacks=x`` into ``callbacks=[default,x]``: add a callback without restating the default set.

    Example::

        >>> expand_callback_additions(["+callbacks=lr_finder", "seed=1"])
        ['seed=1', 'callbacks=[default,lr_finder]']
    """
    added, chosen, rest = [], None, []
    for item in overrides:
        if item.startswith("+callbacks="):
            added += item.removeprefix("+callbacks=").strip("[]").split(",")
        elif item.startswith("callbacks="):
            chosen = item.removeprefix("callbacks=").strip("[]").split(",")
        else:
            rest.append(item)
    if not added:
        return overrides
    return [*rest, f"callbacks=[{','.join((chosen or ['default']) + added)}]"]


def _key(override: str) -> str:
    """What an override sets: ``trainer.max_epochs`` for ``trainer.max_epochs=3``, ``+x=1`` or ``~x``.

    A group addition (``+group=option``, no dot) adds rather than sets: it is its own key.
    """
    name = override.split("=", 1)[0]
    if name.startswith("+") and "." not in name and "/" not in name:
        return override
    return name.lstrip("+~")


#: What a resumed run takes from its command, never from the run it continues.
_OWN_TO_THE_COMMAND = ("resume", "hydra.run.dir", "overwrite")


def with_recorded_overrides(overrides: list[str], recorded: list[str]) -> tuple[list[str], list[str]]:
    """The overrides of a ``resume=auto`` command, after the ``recorded`` ones of the run it continues.

    The run continues as it was configured: each recorded override stays unless
    the command sets the same key (a new value) or deletes it (``~key``); a
    deletion of a recorded addition removes both.

    Returns:
        The overrides to compose, and the command's own overrides that change the recorded run.

    Example::

        >>> with_recorded_overrides(["resume=auto", "trainer.max_epochs=9"], ["trainer.max_epochs=3", "seed=1"])
        (['seed=1', 'resume=auto', 'trainer.max_epochs=9'], ['trainer.max_epochs=9'])
    """
    recorded = [o for o in recorded if _key(o) not in _OWN_TO_THE_COMMAND]
    given = {_key(o): o for o in overrides}
    kept = [o for o in recorded if _key(o) not in given]
    added = {_key(o) for o in recorded if o.startswith("+")}
    command = [o for o in overrides if not (o.startswith("~") and _key(o) in added)]
    changes = [o for o in overrides if o not in recorded and _key(o) not in _OWN_TO_THE_COMMAND]
    return [*kept, *command], changes
