"""The arms of ``activedet bench``: each ``--strategies`` spec parsed into its strategy, options and config
overrides (:func:`parse_strategy_spec`, :func:`parse_arm_overrides`), and every argument checked before any run
starts (:func:`check_bench_arguments`), as :class:`Arm` records. :mod:`activedet.bench` runs them."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .bench_jobs import folder_name
from .config import config_keys, load_config, parse_override
from .constants import ARM_KEYS, CYCLE_ZERO_KEYS
from .report import label_extras, strategy_label

__all__ = ["Arm", "parse_strategy_spec", "parse_arm_overrides", "check_bench_arguments"]


@dataclass(frozen=True)
class Arm:
    """One arm of a bench: its ``--strategies`` spec, strategy, options, resolved config overrides
    (``key=JSON``), the label the report gives its runs and the strategy name its runs' records carry (a
    composition is named after its criteria: ``entropy+coreset``)."""

    spec: str
    strategy: str
    options: dict
    overrides: tuple[str, ...]
    label: str
    recorded: str
    #: what cycle 0 depends on among the arm's overrides: the resolved values of :data:`CYCLE_ZERO_KEYS` (JSON), so two
    #: spellings of one setting (``@semi_supervised={}``, ``@semi_supervised.method=teacher_student``) share it
    cycle_zero: str

    @property
    def directory(self) -> str:
        """The runs' folder name: the label as a safe file name (``entropy+ssl``; :func:`folder_name`)."""
        return folder_name(self.label)

    def run_dir(self, out: Path, seed: int) -> Path:
        """``OUT/runs/{directory}/seed{seed}``; runs an earlier version kept under the label without spaces
        (quotes and colons included) are resumed where they are."""
        legacy = out / "runs" / self.label.replace(" ", "")
        folder = legacy if legacy.name != self.directory and legacy.is_dir() else out / "runs" / self.directory
        return folder / f"seed{seed}"


def parse_strategy_spec(spec: str) -> tuple[str, dict]:
    """``"hybrid:uncertainty=entropy,factor=2"`` -> ``("hybrid", {"uncertainty": "entropy", "factor": 2})``; an
    arm's ``@KEY=VALUE`` overrides are not part of it (:func:`parse_arm_overrides`).

    Values are read as YAML, so a list or mapping may hold commas: ``"compose:criteria=[entropy,coreset]"``.
    """
    name, _, rest = spec.split("@", 1)[0].partition(":")
    options = {}
    for item in filter(None, _top_level_items(rest)):
        if "=" not in item:
            raise ValueError(
                f"argument --strategies: option {item!r} in {spec!r} must be key=value (e.g. entropy:aggregation=sum)"
            )
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(
                f"argument --strategies: the value of {key.strip()!r} in {spec!r} is not valid YAML ({problem}); "
                f"write lists as [a,b] and mappings as {{k: v}}"
            ) from None
    return name.strip(), options


def _top_level_items(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and braces."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return items + [text[start:]]


def parse_arm_overrides(spec: str) -> list[tuple[str, object]]:
    """The ``@KEY=VALUE`` parts of an arm, values read as YAML: ``"entropy@semi_supervised.threshold=0.8"`` ->
    ``[("semi_supervised.threshold", 0.8)]``. Raises ValueError naming ``--strategies`` for a key an arm may not
    override (:data:`ARM_KEYS`)."""
    parsed = []
    for text in spec.split("@")[1:]:
        if "=" not in text:
            raise ValueError(
                f"argument --strategies: override {text!r} in {spec!r} must be KEY=VALUE "
                "(e.g. entropy@semi_supervised.method=teacher_student)"
            )
        key, value = parse_override(text)
        top = key.split(".", 1)[0]
        if top not in config_keys():  # e.g. a strategy's option put after '@'
            raise ValueError(
                f"argument --strategies: {spec!r} overrides {top!r}, which is not a config key; a strategy's own "
                "options go before the first '@', after a comma (e.g. "
                "'compose:criteria=[entropy,class_balance],class_balance={power: 2}@budget_unit=boxes')"
            )
        if top not in ARM_KEYS:
            raise ValueError(
                f"argument --strategies: {spec!r} overrides {top!r}, but an arm may override only what its report "
                f"label shows ({', '.join(ARM_KEYS)}); set {top!r} for every arm with --set, or run a separate bench"
            )
        parsed.append((key, value))
    return parsed


def _resolve_overrides(config, shared: list[str], parsed: list[tuple[str, object]]) -> tuple[str, ...]:
    """``key=JSON`` overrides of an arm: a dotted key updates the mapping the config (with ``--set``) gives."""
    values: dict[str, object] = {}
    for key, value in parsed:
        top, _, sub = key.partition(".")
        if not sub:
            values[top] = value
            continue
        if top not in values:
            base = getattr(load_config(config, shared), top)
            values[top] = dict(base) if isinstance(base, dict) else {}
        if not isinstance(values[top], dict):
            raise ValueError(f"argument --strategies: {key!r} sets an option of {top!r}, which is not a mapping")
        values[top] = {**values[top], sub: value}
    return tuple(f"{key}={json.dumps(value)}" for key, value in values.items())


def check_bench_arguments(
    config: str | Path, *, strategies: list[str], seeds: list[int], overrides: list[str] | None, metric: str
) -> list[Arm]:
    """Fail before any work, naming the argument: an unknown strategy, option or override in ``--strategies``, a
    seed listed twice, a ``--metric`` the config does not compute, or a config that does not load with each arm.
    Returns the arms."""
    from .strategy_names import strategy_names  # the names without importing the methods: a typo fails at once

    known = strategy_names()
    specs = [(spec, *parse_strategy_spec(spec)) for spec in strategies]
    arm_overrides = [parse_arm_overrides(spec) for spec in strategies]
    for _, name, _ in specs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ValueError(
                f"argument --strategies: unknown strategy {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; valid names: {', '.join(known)} (`activedet strategies` describes them)"
            )
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"argument --seeds: seed {repeated[0]} is listed twice; give each seed once")
    from .strategies import get_strategy

    recorded = []  # the name the loop records for each arm (a composition is named after its criteria)
    for spec, name, options in specs:
        try:
            recorded.append(get_strategy(name, **options).name)
        except ValueError as exc:
            raise ValueError(f"argument --strategies {spec!r}: {exc}") from None
    configs, arms = [], []
    for (spec, name, options), parsed, loop_name in zip(specs, arm_overrides, recorded):
        shared = list(overrides or [])
        try:
            resolved = _resolve_overrides(config, shared, parsed)
            cfg = load_config(
                config,
                shared
                + list(resolved)
                + [f"strategy={name}", f"seed={seeds[0]}", f"strategy_options={json.dumps(options)}"],
            )
        except ValueError as exc:
            raise ValueError(f"argument --strategies {spec!r}: {exc}") from None
        label = strategy_label(name, options) + label_extras(cfg.to_dict())
        cycle_zero = _cycle_zero_key(cfg)
        arms.append(Arm(spec, name, options, resolved, label, loop_name, cycle_zero))
        family = metric.split("/", 1)[0]
        if family not in cfg.metrics:
            raise ValueError(
                f"argument --metric: {metric!r} is a '{family}' metric, but the config {config} computes "
                f"only {cfg.metrics} (key 'metrics'); pass a metric of those, e.g. --metric "
                f"{_example_metric(cfg.metrics[0])}, or add '{family}' to 'metrics'"
            )
        configs.append((spec, cfg))
    labels = [arm.label for arm in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"argument --strategies lists the same arm twice: {labels}")
    folders: dict[str, str] = {}
    for arm in arms:
        other = folders.setdefault(arm.directory, arm.label)
        if other != arm.label:
            raise ValueError(
                f"argument --strategies: the arms {other!r} and {arm.label!r} would share the run folder "
                f"{arm.directory!r} (characters a file name cannot hold are replaced); spell one option differently"
            )
    _check_supported(configs)
    return arms


def _cycle_zero_key(cfg) -> str:
    """The values of :data:`CYCLE_ZERO_KEYS` in ``cfg``, semi-supervision with every option resolved, as JSON."""
    settings = cfg.to_dict()
    values = {key: settings.get(key) for key in CYCLE_ZERO_KEYS}
    if values["semi_supervised"] is not None:
        import dataclasses

        from .engine.teacher import TeacherStudentOptions  # torch: only for an arm with semi-supervision

        values["semi_supervised"] = dataclasses.asdict(TeacherStudentOptions.from_dict(values["semi_supervised"]))
    return json.dumps(values, sort_keys=True, default=str)


def _check_supported(configs: list) -> None:
    """Every strategy can score with the config's detector (built once, untrained; the pool is read for its
    classes without opening the images)."""
    import torch

    from .config import _strategy
    from .workflows import build_model, check_strategy_supported, load_split

    pool = load_split(configs[0][1], "train", check_images=False)
    with torch.random.fork_rng():
        model = build_model(configs[0][1], pool.num_classes)
    for spec, cfg in configs:
        try:
            check_strategy_supported(_strategy(cfg), model, cfg.detector)
        except ValueError as exc:
            raise ValueError(f"argument --strategies {spec!r}: {exc}") from None


def _example_metric(family: str) -> str:
    return {"voc": "voc/mAP_area", "coco": "coco/AP", "froc": "froc/cpm", "accuracy": "accuracy/top1"}.get(
        family, family
    )
