"""Checks a command line's overrides by composing them, before Hydra runs the job.

Hydra's own errors are multi-line and exit 1 after the run directory may exist;
here every problem becomes one line with a "did you mean", and nothing is
written.
"""

import copy
from collections.abc import Iterator

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from lit_train.config.messages import did_you_mean
from lit_train.config.overrides import expand_callback_additions
from lit_train.config.specs import OWN_SETTINGS
from lit_train.config.validate import REQUIRED_GROUPS, hydra_problems, validate

CONFIG_MODULE = "lit_train.conf"
CONFIG_NAME = "config"


def compose_config(overrides: list[str]) -> DictConfig:
    """The job config that ``overrides`` compose to, as a single run of the CLI gets it (``+callbacks=`` included).

    For notebooks, tests and benchmarks: ``run_dir`` stays Hydra's, so pin it
    (``run_dir=...``) before building anything that writes.
    """
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(CONFIG_NAME, overrides=expand_callback_additions(overrides))


def _job_override_sets(overrides: list[Override], multirun: bool) -> Iterator[list[str]]:
    """Override lists that cover every swept value once (each sweep varied alone, the others at their first value)."""
    fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
    sweeps = [o for o in overrides if o.is_sweep_override()]
    if not multirun or not sweeps:
        yield fixed if multirun else [o.input_line for o in overrides]
        return
    choices = []
    for sweep in sweeps:
        try:
            values = list(sweep.sweep_string_iterator())
        except HydraException:
            values = []  # interval()/tag() ranges are sampled by a sweeper; validated inside each job
        choices.append([f"{sweep.get_key_element()}={v}" for v in values])
    firsts = [c[0] for c in choices if c]
    yield fixed + firsts
    for i, values in enumerate(choices):
        for value in values[1:]:
            yield fixed + [f for j, f in enumerate(firsts) if j != i] + [value]


def _diagnose(overrides: list[str], error: Exception) -> list[str]:
    """Explains a failed composition with one line per bad override."""
    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create().parse_overrides(overrides)
    # hydra.searchpath adds options of the user's own to the groups.
    searchpath = [o.input_line for o in parsed if o.key_or_group == "hydra.searchpath"]

    def options_of(group: str, kind: ObjectType = ObjectType.CONFIG) -> list[str]:
        return loader.get_group_options(group, kind, config_name=CONFIG_NAME, overrides=searchpath)

    groups = [o for o in parsed if not o.is_hydra_override() and options_of(o.key_or_group)]
    problems = []
    for override in groups:
        options = options_of(override.key_or_group)
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is None:  # Hydra takes no null for a group, not even for one that defaults to none
                group = override.key_or_group
                off = ("; none switches it off" if "none" in options
                       else "" if group in REQUIRED_GROUPS else f"; leave {group}= out for none")
                problems.append(f"{group}: null is not an option{off} (choose from {', '.join(options)})")
            for name in value if isinstance(value, list) else [value]:
                if name is not None and str(name) not in options:
                    problems.append(f"{override.key_or_group}: unknown option {name!r}{did_you_mean(name, options)} "
                                    f"(choose from {', '.join(options)})")
    valid_groups = [o for o in groups if not any(p.startswith(f"{o.key_or_group}:") for p in problems)]
    base = compose(CONFIG_NAME, overrides=[*searchpath, *(o.input_line for o in valid_groups)])
    for override in parsed:
        if override in groups or override.is_hydra_override() or override.is_add() or override.is_force_add():
            continue
        key = override.key_or_group
        group, _, name = key.partition(".")
        if group in ("optimizer", "scheduler") and name in OWN_SETTINGS:
            problems.append(f"{key}: lit_train's own setting, outside the {group} group: set {OWN_SETTINGS[name]} "
                            "instead")
            continue
        parent, missing = _first_missing(base, key)
        if missing is not None:
            siblings = [str(k) for k in parent.keys()]
            if parent is base:
                siblings += [g for g in options_of("", ObjectType.GROUP) if g != "hydra"]
            where = "" if missing == key.rpartition(".")[2] else f" {missing!r}"
            problems.append(f"{key}: no such key{where}{did_you_mean(missing, siblings)} "
                            f"(to add a new key use +{override.input_line})")
    return problems or [_one_line(error)]


def _first_missing(cfg: DictConfig, key: str) -> tuple[DictConfig, str | None]:
    """The deepest node on ``key``'s dotted path that exists, and the part of the path missing under it."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return node, None  # a path into a value: Hydra's own message says more
        if part not in node:
            return node, part
        if OmegaConf.is_missing(node, part):
            return node, None
        node = node[part]
    return node, None


def _one_line(error: Exception) -> str:
    """Hydra's multi-line message on one line, without OmegaConf's key/type trailer."""
    lines = [line.strip() for line in str(error).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("full_key:", "object_type=")))


def planned_job_config(cfg: DictConfig, multirun: bool) -> DictConfig:
    """The job config a composed ``cfg`` (Hydra's node included) gives, with ``run_dir`` where the run will write.

    Hydra fills ``hydra.runtime.output_dir`` only as the job starts, so a
    ``run_dir`` that follows it is set to the run (or sweep) directory here.
    """
    run_dir = cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir
    job = copy.deepcopy(cfg)  # Hydra goes on with cfg itself
    with open_dict(job):
        if OmegaConf.is_interpolation(job, "run_dir") and "hydra:" in str(OmegaConf.to_container(job)["run_dir"]):
            job.run_dir = run_dir
        del job["hydra"]
    return job


def added_overrides(cfg: DictConfig, command_line: list[str]) -> list[str]:
    """Overrides in Hydra's record of the command line (``hydra.overrides``) that ``command_line`` does not hold.

    Hydra appends the command line's overrides to whatever ``hydra.overrides``
    a config file set, and a sweep runs every job with those it records. A
    config file that writes there speaks with the user's voice: each such
    override is a problem.
    """
    given = set(command_line)
    record = OmegaConf.to_container(cfg.hydra.overrides, resolve=False)  # as typed: ${...} left unresolved
    recorded = [*record["task"], *(o for o in record["hydra"] if not o.startswith("hydra.mode="))]
    return [f"hydra.overrides: {o!r} is not on the command line; a config file may not add overrides"
            for o in recorded if o not in given]


def command_problems(overrides: list[str], multirun: bool) -> list[str]:
    """Every problem with the config that ``overrides`` compose to, composing with the Hydra now initialized.

    ``overrides`` are the user's own words (the targets they name need no
    ``allowed_targets``). Under ``multirun`` each swept value is composed once
    (see :func:`_job_override_sets`) and Hydra's node is checked with the first;
    ranges that only a sweeper samples are checked inside each job.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        return [f"bad override: {str(e).splitlines()[0]}"]
    problems: list[str] = []
    hydra_checked = False  # the jobs of a sweep share Hydra's node: checked once
    for job in _job_override_sets(parsed, multirun):
        try:
            cfg = compose(CONFIG_NAME, overrides=job, return_hydra_config=True)
        except (HydraException, ValueError) as e:  # Hydra's ValueError: a group set to null
            new = _diagnose(job, e)
        else:
            hydra = [] if hydra_checked else hydra_problems(cfg, job)
            hydra_checked = True
            new = added_overrides(cfg, job) or [*hydra, *validate(planned_job_config(cfg, multirun), job)]
        problems += [p for p in new if p not in problems]
    return problems


def check_overrides(overrides: list[str], multirun: bool = False) -> list[str]:
    """Every problem with the config that ``overrides`` compose to (empty when it is fine).

    Initializes Hydra for lit_train's config itself: for notebooks and tests,
    and for the CLI once Hydra's own composition of a command line has failed.
    """
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return command_problems(overrides, multirun)
