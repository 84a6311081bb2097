"""Override strings: quoting values, the sweep's own overrides, and adding callbacks to the default set."""

#: Hydra overrides that belong to a sweep, not to one of its jobs: a job started in a process of its own
#: (a trial, a DDP rank) gets its own run directory and runs as a single run.
SWEEP_ONLY = ("hydra.mode=", "hydra/sweeper", "hydra.sweeper.", "hydra.run.", "hydra.job.num=")


def quote(text: str) -> str:
    """``text`` as a quoted Hydra override value (paths may hold ``=``, ``,`` or spaces)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
