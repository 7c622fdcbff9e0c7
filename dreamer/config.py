"""The run configuration: one YAML document, one frozen dataclass per concern.

A run is configured by a bundled name (`tiny`, `demo`, `default`: files in `dreamer/configs/`) or a
YAML path (read by `ConfigLoader`: no duplicate keys, no aliases). Every section is a frozen dataclass
whose `__post_init__` checks ranges; unknown keys, wrong types, non-finite numbers and out-of-range values
raise `ConfigError` naming the offending key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from dreamer.errors import ConfigError
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.ppo_config import PPOConfig
from dreamer.features.config import SplitConfig, ValidationConfig
from dreamer.model.config import DreamerConfig
from dreamer.orchestration.config import PromotionConfig
from dreamer.paths import BUNDLED_CONFIGS_DIR
from dreamer.research.config import WalkForwardConfig

T = TypeVar("T")


@dataclass(frozen=True)
class RunConfig:
    """Everything that shapes a pipeline run, besides which data it reads."""

    name: str = "custom"
    # Where training starts (dreamer.orchestration.warm_start): the seed, or the market's current champion,
    # fine-tuned on this run's window (falls back to scratch, saying why, when there is none that fits).
    warm_start: Literal["scratch", "champion"] = "scratch"
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    dreamer: DreamerConfig = field(default_factory=DreamerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)  # the model-free baseline `ppo` (dreamer.evaluation.ppo)
    # `dreamer walk-forward`'s folds (dreamer.research.walk_forward); a single run ignores it.
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat_params(self) -> dict[str, Any]:
        """`section.key -> value`, the shape MLflow params want."""
        flat: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            if isinstance(values, dict):
                flat.update({f"{section}.{key}": value for key, value in values.items()})
            else:
                flat[section] = values
        return flat


def bundled_config_names() -> list[str]:
    return sorted(path.stem for path in BUNDLED_CONFIGS_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a bundled config by name or a YAML file by path; `overrides` is a nested mapping applied on top."""
    path = Path(name_or_path)
    if not path.suffix and (BUNDLED_CONFIGS_DIR / f"{name_or_path}.yaml").exists():
        path = BUNDLED_CONFIGS_DIR / f"{name_or_path}.yaml"
        default_name = str(name_or_path)
    elif path.exists():
        default_name = path.stem
    else:
        raise ConfigError(
            f"config {str(name_or_path)!r} is neither a bundled config ({', '.join(bundled_config_names())}) "
            "nor an existing YAML file"
        )
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=ConfigLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    data.setdefault("name", default_name)
    if overrides:
        data = merge_overrides(data, overrides)
    return from_mapping(RunConfig, data)


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader without two YAML features a config has no use for. A repeated key would
    silently keep its last value. Anchors and aliases (`&x`, `*x`) would let a few hundred bytes of nested
    aliases expand into gigabytes (the "billion laughs"): refused as soon as the first one is read."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(
                f"{self.name}, line {event.start_mark.line + 1}: YAML anchors and aliases (&name, *name) are not "
                "allowed in a config; write the value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # the base class refuses unhashable keys
                continue
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in first_lines:
                raise ConfigError(f"{self.name}, line {line}: duplicate key {key!r} (first on line {first_lines[key]})")
            first_lines[key] = line
        return super().construct_mapping(node, deep)


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with the nested mapping `overrides` applied on top, section by section (neither is changed)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_mapping(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from a plain mapping, checking keys and types recursively."""
    label = where or cls.__name__
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(hints[key], value, f"{where + '.' if where else ''}{key}") for key, value in data.items()}
    return cls(**kwargs)


def _coerce(annotation: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)  # type: ignore[arg-type]
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation)
        return tuple(_coerce(item_type, item, f"{where}[{i}]") for i, item in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, float) and value.is_integer():  # 2.0e+4 (YAML reads a bare 2e4 as text)
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer literal beyond float range
            number = math.inf
        # inf would pass the sections' `> 0` checks and nan fails them with a misleading message.
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {annotation!r}")
