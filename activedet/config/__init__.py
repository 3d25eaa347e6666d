"""The CLI's one flat configuration file (YAML, or JSON), validated into a typed :class:`Config`.

No inheritance, no includes, no object graphs: every key is declared once in :mod:`activedet.config.schema` (the
training and active-learning keys are the fields of the library's ``TrainOptions`` and ``LoopOptions``); the
reference ``docs/config.md`` is generated from it (``python -m activedet.config``). Relative paths are resolved
against the directory of the config file, so a config and its data can move together. An unknown key, a wrong
type or an out-of-range value is a :class:`ConfigError` naming the file, the key, what is allowed and what was
found (with the closest valid key for a typo).

Importing this module loads neither torch nor scikit-learn: the checks that need them import them when a config
is validated.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..constants import CLASSIFICATION_FORMATS
from ..fields import describe, first_errors, type_name
from .checks import check_config, strategy_of
from .schema import Config, key_fields

__all__ = [
    "Config",
    "ConfigError",
    "config_error",
    "load_config",
    "config_from_dict",
    "parse_override",
    "config_keys",
    "CLASSIFICATION_FORMATS",
]


class ConfigError(ValueError):
    """A problem in a config file; the message names the file and key."""


def config_error(cfg: Config, key: str, message: str) -> ConfigError:
    """A :class:`ConfigError` for a problem found after loading (e.g. against the data): ``"FILE: key 'KEY':
    MESSAGE"``, FILE being the file ``cfg`` was read from (``cfg.source``)."""
    return ConfigError(f"{getattr(cfg, 'source', 'config')}: key '{key}': {message}")


def config_keys() -> list[str]:
    """Every key a config file may set, in reference order."""
    return list(key_fields())


_strategy = strategy_of  # the name bench, predict and workflows import


def _resolve_paths(values: dict[str, Any], base_dir: Path) -> None:
    for key, (_, f, _) in key_fields().items():
        raw, kind = values.get(key), f.metadata.get("path")
        if not kind or not isinstance(raw, str) or Path(raw).is_absolute():
            continue
        # weights may also be a torchvision enum name ("DEFAULT"): only an existing file is a path
        if kind == "exists" and not (base_dir / raw).exists():
            continue
        values[key] = str((base_dir / raw).resolve())


def _schema_error(exc: ValidationError, data: dict[str, Any], where: str) -> ConfigError:
    """The first refused key of pydantic's report as ``"WHERE: key 'KEY' must be ...; found ..."``."""
    key, wrong_type = first_errors(exc)
    _, f, tp = key_fields()[key]
    value = data[key]
    if wrong_type:
        return ConfigError(
            f"{where}: key '{key}' must be of type {type_name(tp)}; found {value!r} ({type(value).__name__})"
        )
    return ConfigError(f"{where}: key '{key}' must be {describe(f, tp, value)}; found {value!r}")


def config_from_dict(data: dict[str, Any], *, where: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a mapping into a :class:`Config`; ``base_dir`` resolves relative paths."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value at the top level; found {type(data).__name__}")
    for key in data:
        _check_key(key, where)
    if "train_data" not in data:
        raise ConfigError(f"{where}: missing required key 'train_data' (path of the training/pool split)")
    values = dict(data)
    if base_dir is not None:
        _resolve_paths(values, base_dir)
    try:
        cfg = Config(**values)
    except ValidationError as exc:
        raise _schema_error(exc, values, where) from None
    cfg._source = where  # not a key: the file later errors name
    check_config(cfg, where, ConfigError)
    return cfg


def _check_key(key: Any, where: str) -> None:
    """Raise ``ConfigError("WHERE: unknown key 'KEY'; did you mean ...")`` unless ``key`` is a config key."""
    keys = key_fields()
    if key not in keys:
        close = difflib.get_close_matches(str(key), keys, n=1)
        tip = f"; did you mean '{close[0]}'?" if close else f"; valid keys are {sorted(keys)}"
        raise ConfigError(f"{where}: unknown key '{key}'{tip}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` from the command line, the value read as YAML (``epochs=3``, ``lr_steps=[4, 6]``)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value; found {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a YAML or JSON config file, applying ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    data = {} if data is None else data
    changes = dict(parse_override(o) for o in overrides or [])
    for key in changes:
        _check_key(key, f"--set {key}=...")
    if isinstance(data, dict):
        data = dict(data, **changes)
    return config_from_dict(data, where=str(path), base_dir=path.parent)
