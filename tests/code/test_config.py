"""Code tier: the run configuration loads, validates and rejects what it should."""

from __future__ import annotations

import math
import time
import typing
from pathlib import Path

import pytest

from dreamer.config import RunConfig, bundled_config_names, from_mapping, load_config
from dreamer.errors import ConfigError
from dreamer.model.config import DreamerConfig


def test_bundled_configs_load() -> None:
    assert {"tiny", "demo", "default"} <= set(bundled_config_names())
    for name in bundled_config_names():
        config = load_config(name)
        assert config.name == name


def test_default_config_has_the_seed_sizes() -> None:
    config = load_config("default").dreamer
    seed = dict(
        deterministic_size=200,
        stochastic_size=30,
        num_categories=32,
        hidden_size=200,
        imagination_horizon=15,
        kl_balance_alpha=0.8,
        free_bits=1.0,
        discount=0.99,
        lambda_gae=0.95,
        learning_rate=3e-4,
        batch_size=16,
        sequence_length=64,
    )
    assert {key: getattr(config, key) for key in seed} == seed


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("dreamer:\n  hidden_size: 64\n  position_levels: [-1, 0, 1]\n")
    config = load_config(path, overrides={"dreamer": {"seed": 7}})
    assert config.name == "mine"
    assert config.dreamer.hidden_size == 64
    assert config.dreamer.position_levels == (-1.0, 0.0, 1.0)
    assert config.dreamer.seed == 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dreamer": {"bogus": 1}}, "unknown key"),
        ({"nonsense": {}}, "unknown key"),
        ({"dreamer": {"discount": 1.5}}, "dreamer.discount"),
        ({"dreamer": {"hidden_size": "wide"}}, "expected an integer"),
        ({"dreamer": {"hidden_size": 0}}, "dreamer.hidden_size"),
        ({"dreamer": {"kl_formulation": "other"}}, "kl_formulation"),
        ({"dreamer": {"num_bins": 256}}, "num_bins"),
        ({"dreamer": {"position_levels": [1, -1]}}, "position_levels"),
        ({"dreamer": {"device": "tpu"}}, "device"),
        ({"dreamer": {"world_model_uses_action": "yes"}}, "true/false"),
        ({"split": {"train_fraction": 0.9, "val_fraction": 0.2}}, "train_fraction"),
        ({"validation": {"min_rows": -1}}, "min_rows"),
    ],
)
def test_bad_values_are_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides=overrides)


def test_unknown_config_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        load_config("no-such-config")


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("dreamer: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_flat_params_cover_every_field() -> None:
    params = load_config("demo").flat_params()
    assert params["dreamer.hidden_size"] == 128
    assert "promotion.metric" in params
    assert params["name"] == "demo"


def test_from_mapping_round_trips() -> None:
    config = load_config("demo")
    assert from_mapping(RunConfig, config.to_dict()) == config


def test_cost_rate_is_fee_plus_slippage() -> None:
    config = DreamerConfig(fee_rate=0.00055, slippage_rate=0.0001)
    assert config.cost_rate == pytest.approx(0.00065)


def _numeric_fields(kind: type) -> list[tuple[str, str]]:
    """(section, key) of every field of `kind` (int or float, optional or not) in every config section."""
    hints = typing.get_type_hints(RunConfig)
    found = []
    for section in ("validation", "split", "dreamer", "evaluation", "promotion", "walk_forward"):
        for key, annotation in typing.get_type_hints(hints[section]).items():
            if annotation is kind or annotation == kind | None:
                found.append((section, key))
    return found


@pytest.mark.parametrize(("section", "key"), _numeric_fields(float))
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_must_be_finite(section: str, key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: expected a finite number"):
        load_config("tiny", overrides={section: {key: value}})


@pytest.mark.parametrize(("section", "key"), _numeric_fields(int))
def test_every_integer_has_a_plausible_upper_bound(section: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be in \[\d+, [\d,]+\]"):
        load_config("tiny", overrides={section: {key: 10**12}})


def test_the_probed_values_are_refused_naming_their_key(tmp_path: Path) -> None:
    for text, message in (
        ("dreamer:\n  fee_rate: .inf\n", "dreamer.fee_rate: expected a finite number, got inf"),
        ("dreamer:\n  grad_clip: .inf\n", "dreamer.grad_clip: expected a finite number, got inf"),
        ("dreamer:\n  world_model_steps: 1.0e+20\n", "dreamer.world_model_steps must be in [0, 100,000,000]"),
        ("dreamer:\n  hidden_size: 100000000\n", "dreamer.hidden_size must be in [1, 16,384]"),
        ("dreamer:\n  position_levels: [-1, .nan, 1]\n", "dreamer.position_levels[1]: expected a finite number"),
        ("dreamer:\n  fee_rate: 0.5\n", "dreamer.fee_rate must be in [0, 0.1]"),
    ):
        path = tmp_path / "probe.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert message in str(caught.value), text


def test_integers_may_be_written_as_whole_floats_only() -> None:
    assert load_config("tiny", overrides={"dreamer": {"world_model_steps": 2.0e4}}).dreamer.world_model_steps == 20000
    with pytest.raises(ConfigError, match=r"dreamer.hidden_size: expected an integer, got 64.5"):
        load_config("tiny", overrides={"dreamer": {"hidden_size": 64.5}})


def test_the_promotion_metric_must_be_a_backtest_metric() -> None:
    assert load_config("tiny", overrides={"promotion": {"metric": "calmar"}}).promotion.metric == "calmar"
    with pytest.raises(ConfigError, match=r"promotion.metric: 'sharp' is not a backtest metric; valid: .*sharpe"):
        load_config("tiny", overrides={"promotion": {"metric": "sharp"}})


def test_duplicate_keys_are_refused_naming_the_key_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("dreamer:\n  hidden_size: 64\n  seed: 1\n  hidden_size: 128\n")
    with pytest.raises(ConfigError, match=r"twice.yaml, line 4: duplicate key 'hidden_size' \(first on line 2\)"):
        load_config(path)
    path.write_text("dreamer:\n  seed: 1\nevaluation: {}\ndreamer:\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"line 4: duplicate key 'dreamer' \(first on line 1\)"):
        load_config(path)


def test_anchors_and_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text("dreamer:\n  position_levels: &levels [-1, 0, 1]\nother: *levels\n")
    with pytest.raises(ConfigError, match=r"alias.yaml, line 2: YAML anchors and aliases"):
        load_config(path)


def test_an_alias_bomb_fails_at_once(tmp_path: Path) -> None:
    """The "billion laughs": 9 nested lists of 9 aliases, 9**9 strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "dreamer:", "  position_levels: *i"]) + "\n")
    assert path.stat().st_size < 400
    began = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(path)
    assert time.perf_counter() - began < 0.5
