"""Code tier: the run configuration loads, validates and rejects what it should."""

from __future__ import annotations

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
