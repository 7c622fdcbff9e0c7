"""World-model training: learning, determinism, exact resume, non-finite detection, checkpoints, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dreamer.cli import main
from dreamer.features.dataset import MarketDataset
from dreamer.features.sampler import SequenceSampler
from dreamer.model.distributions import categorical_kl
from dreamer.model.world_model import WorldModel
from dreamer.training import CheckpointError, NonFiniteError, load_world_model, train_world_model
from dreamer.training import world_model as training_module
from dreamer.training.checkpoint import read_checkpoint
from tests.model.conftest import LOSS_TERMS, SMALL, TINY

TIMING = ("time/update_ms", "sequences_per_s")


def without_timing(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def metrics_lines(out: Path) -> list[dict[str, Any]]:
    return without_timing([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()])


class Interrupted(Exception):
    pass


def interrupt_at(step: int) -> Any:
    def callback(current: int, _: dict[str, float]) -> None:
        if current == step:
            raise Interrupted

    return callback


def states_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- learning ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_loss_term_decreases_on_a_learnable_market(trained: tuple[Any, Path], market: MarketDataset) -> None:
    result, out = trained
    history = result.history
    assert len(history) == SMALL.world_model_steps

    def early_late(name: str) -> tuple[float, float]:
        values = [row[name] for row in history]
        return float(np.mean(values[:25])), float(np.mean(values[-25:]))

    for name in ("loss/total", "loss/pred", "loss/decoder", "loss/reward"):
        early, late = early_late(name)
        assert late < 0.9 * early, (name, early, late)

    # The KL terms first *rise* by design: the posterior starts to carry information about the
    # observations (an untrained posterior knows nothing, so it matches the prior cheaply). What dyn and
    # rep optimise is the match between the two: on held-out data, the trained prior predicts the
    # trained posterior far better than the initial prior does.
    model, cfg, _ = load_world_model(out)
    torch.manual_seed(cfg.seed)
    initial = WorldModel(market.num_features, cfg)  # the trainer's initialisation, exactly
    obs, _ = next(SequenceSampler(market, "val", cfg.sequence_length, 64).iter_windows())
    with torch.no_grad():
        post, q = model.rssm.observe(model.encoder(obs))
        kl_trained = categorical_kl(q, q.log(), model.rssm.prior_probs(post.h).log()).mean()
        kl_initial = categorical_kl(q, q.log(), initial.rssm.prior_probs(post.h).log()).mean()
    assert kl_trained < 0.5 * kl_initial, (kl_trained, kl_initial)

    # The validation loss at the end beats the initial model's on the same windows.
    assert result.final_metrics["val/loss/pred"] < 0.8 * history[0]["loss/pred"]


# --- reproducibility and resumption -----------------------------------------------------------


def test_same_seed_gives_identical_losses_on_cpu(small_market: MarketDataset, tmp_path: Path) -> None:
    first = train_world_model(small_market, TINY, tmp_path / "a")
    second = train_world_model(small_market, TINY, tmp_path / "b")
    assert without_timing(first.history) == without_timing(second.history)
    assert states_equal(read_checkpoint(first.checkpoint)["model"], read_checkpoint(second.checkpoint)["model"])
    other = train_world_model(small_market, dataclasses.replace(TINY, seed=1), tmp_path / "c")
    assert without_timing(other.history) != without_timing(first.history)


def test_resume_after_interruption_equals_an_uninterrupted_run(small_market: MarketDataset, tmp_path: Path) -> None:
    straight = train_world_model(small_market, TINY, tmp_path / "straight", checkpoint_every=2)

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        train_world_model(small_market, TINY, out, checkpoint_every=2, on_metrics=interrupt_at(5))
    assert read_checkpoint(out)["step"] == 4
    assert len(metrics_lines(out)) == 5  # step 5 was logged but not checkpointed
    resumed = train_world_model(small_market, TINY, out, checkpoint_every=2)

    assert resumed.resumed_from == 4 and resumed.steps == TINY.world_model_steps
    assert metrics_lines(out) == metrics_lines(tmp_path / "straight")  # step 5 once, recomputed identically
    assert without_timing(resumed.history) == without_timing(straight.history[4:])
    a, b = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    assert states_equal(a["model"], b["model"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert all(states_equal(a["optimizer"]["state"][k], b["optimizer"]["state"][k]) for k in a["optimizer"]["state"])
    assert a["metrics"] == {**b["metrics"], **{k: a["metrics"][k] for k in TIMING}}


def test_rerunning_a_finished_run_changes_nothing(small_market: MarketDataset, tmp_path: Path) -> None:
    first = train_world_model(small_market, TINY, tmp_path)
    again = train_world_model(small_market, TINY, tmp_path)
    assert again.history == [] and again.steps == first.steps == again.resumed_from
    assert len(metrics_lines(tmp_path)) == TINY.world_model_steps
    assert states_equal(read_checkpoint(first.checkpoint)["model"], read_checkpoint(again.checkpoint)["model"])
    assert again.final_metrics == first.final_metrics


def test_more_steps_continue_where_training_stopped(small_market: MarketDataset, tmp_path: Path) -> None:
    longer = dataclasses.replace(TINY, world_model_steps=TINY.world_model_steps + 2)
    straight = train_world_model(small_market, longer, tmp_path / "straight")
    train_world_model(small_market, TINY, tmp_path / "extended")
    extended = train_world_model(small_market, longer, tmp_path / "extended")
    assert extended.resumed_from == TINY.world_model_steps
    assert without_timing(extended.history) == without_timing(straight.history[-2:])


def test_resume_refuses_a_different_model(small_market: MarketDataset, tmp_path: Path) -> None:
    train_world_model(small_market, TINY, tmp_path)
    with pytest.raises(CheckpointError, match="hidden_size"):
        train_world_model(small_market, dataclasses.replace(TINY, hidden_size=8), tmp_path)
    restarted = train_world_model(small_market, dataclasses.replace(TINY, hidden_size=8), tmp_path, resume=False)
    assert restarted.resumed_from == 0 and len(restarted.history) == TINY.world_model_steps
    assert len(metrics_lines(tmp_path)) == TINY.world_model_steps


def test_resume_refuses_other_features(small_market: MarketDataset, tmp_path: Path) -> None:
    train_world_model(small_market, TINY, tmp_path)
    renamed = dataclasses.replace(
        small_market,
        feature_names=("a", "b", "c", "d"),
        normaliser=dataclasses.replace(small_market.normaliser, feature_names=("a", "b", "c", "d")),
    )
    with pytest.raises(CheckpointError, match="features"):
        train_world_model(renamed, TINY, tmp_path)


# --- failures ---------------------------------------------------------------------------------


def test_non_finite_observations_stop_training(small_market: MarketDataset, tmp_path: Path) -> None:
    obs = small_market.obs.copy()
    obs[:, 2] = np.nan
    with pytest.raises(NonFiniteError, match="observations"):
        train_world_model(dataclasses.replace(small_market, obs=obs), TINY, tmp_path)


def test_a_non_finite_loss_term_is_named(
    small_market: MarketDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss = WorldModel.loss

    def poisoned(self: WorldModel, *args: Any, **kwargs: Any) -> Any:
        loss, metrics, post = real_loss(self, *args, **kwargs)
        metrics["loss/reward"] = torch.tensor(math.nan)
        return loss * math.nan, metrics, post

    monkeypatch.setattr(WorldModel, "loss", poisoned)
    with pytest.raises(NonFiniteError, match=r"loss/reward=nan"):
        train_world_model(small_market, TINY, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_non_finite_gradient_names_the_parameter(
    small_market: MarketDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss = WorldModel.loss

    def poisoned(self: WorldModel, *args: Any, **kwargs: Any) -> Any:
        loss, metrics, post = real_loss(self, *args, **kwargs)
        self.decoder.mlp.out.weight.register_hook(lambda grad: grad * math.inf)  # type: ignore[union-attr]
        return loss, metrics, post

    monkeypatch.setattr(WorldModel, "loss", poisoned)
    with pytest.raises(NonFiniteError, match=r"decoder\.mlp\.out\.weight"):
        train_world_model(small_market, TINY, tmp_path)


# --- checkpoints and the CLI ------------------------------------------------------------------


def test_checkpoint_is_self_contained_and_loads_for_inference(small_market: MarketDataset, tmp_path: Path) -> None:
    result = train_world_model(small_market, TINY, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]  # no temp files left
    model, cfg, extra = load_world_model(tmp_path, "cpu")
    assert cfg == TINY and not model.training
    assert extra["step"] == TINY.world_model_steps and extra["obs_dim"] == small_market.num_features
    assert extra["feature_names"] == list(small_market.feature_names)
    assert extra["normaliser"] == small_market.normaliser.to_dict()
    assert extra["meta"] == {"symbol": "SYNTH", "interval": "5"}
    assert extra["metrics"] == result.final_metrics and "val/loss/total" in extra["metrics"]
    assert states_equal(model.state_dict(), read_checkpoint(result.checkpoint)["model"])


def test_return_forecasts_are_calibrated_to_the_train_splits_mean(small_market: MarketDataset, tmp_path: Path) -> None:
    """After training, the posterior return forecasts over the train split's windows average exactly the
    realised mean return there: the twohot head's bias is taken out (`calibrate_return_mean`)."""
    result = train_world_model(small_market, TINY, tmp_path)
    model, _, _ = load_world_model(tmp_path, "cpu")
    offset = float(model.return_offset)
    assert offset != 0.0 and result.final_metrics["calibration/return_offset_bps"] == pytest.approx(offset * 1e4)
    errors = []
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(training_module._VALIDATION_SEED)  # the calibration's own latent samples
        sampler = SequenceSampler(small_market, "train", TINY.sequence_length, TINY.batch_size)
        for obs, target in sampler.iter_windows():
            forecast = model.predict_return(model.features(model.observe(obs))).double()
            errors.append((forecast - target.double())[torch.isfinite(target)])
    assert torch.cat(errors).mean().item() == pytest.approx(0.0, abs=1e-9)
    features = model.features(model.initial_state(1))
    _, values = model.return_distribution(features)  # drawn returns are shifted like the mean
    assert torch.equal(values, model.reward.distribution(features)[1] - model.return_offset)


def test_checkpoints_without_a_calibration_load_with_none() -> None:
    model = WorldModel(3, TINY)
    state = {k: v for k, v in model.state_dict().items() if k != "return_offset"}
    model.return_offset.fill_(1.0)
    model.load_state_dict(state)  # strict: the missing offset is supplied, not an error
    assert float(model.return_offset) == 0.0


def test_unreadable_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_world_model(tmp_path / "missing.pt")
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_world_model(tmp_path)


def test_metrics_stream_to_the_callback_and_the_jsonl(small_market: MarketDataset, tmp_path: Path) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    result = train_world_model(small_market, TINY, tmp_path, on_metrics=lambda s, m: seen.append((s, m)))
    assert [step for step, _ in seen] == list(range(1, TINY.world_model_steps + 1))
    expected = {*LOSS_TERMS, "grad_norm", *TIMING}
    assert all(set(metrics) == expected for _, metrics in seen)
    assert [m for _, m in seen] == result.history
    assert [row["step"] for row in metrics_lines(tmp_path)] == [step for step, _ in seen]


def test_cli_trains_from_a_saved_dataset(small_market: MarketDataset, tmp_path: Path, capsys: Any) -> None:
    dataset_dir = small_market.save(tmp_path / "dataset")
    out = tmp_path / "world_model"
    args = ["train-world-model", "--dataset", str(dataset_dir), "--config", "tiny", "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    assert (out / "checkpoint.pt").exists()
    assert "checkpoint" in capsys.readouterr().out
    assert main(["train-world-model", "--dataset", str(tmp_path / "nope"), "--config", "tiny", "--out", str(out)]) == 1
    assert "not a saved dataset" in capsys.readouterr().err


@pytest.mark.parametrize("formulation", ["balance", "dreamerv3"])
def test_both_kl_formulations_and_action_input_train(
    small_market: MarketDataset, tmp_path: Path, formulation: str
) -> None:
    """With `world_model_uses_action` the recorded market holds no actions of ours: training pairs each bar
    with a random position level (and still reproduces exactly)."""
    cfg = dataclasses.replace(TINY, kl_formulation=formulation, world_model_uses_action=True, actor_grad="reinforce")
    first = train_world_model(small_market, cfg, tmp_path / "a")
    second = train_world_model(small_market, cfg, tmp_path / "b")
    assert first.steps == cfg.world_model_steps and math.isfinite(first.final_metrics["val/loss/total"])
    assert without_timing(first.history) == without_timing(second.history)
    model, _, _ = load_world_model(first.checkpoint)
    assert model.action_dim == len(cfg.position_levels)


# --- model selection and warm start -----------------------------------------------------------

SELECTING = dataclasses.replace(TINY, world_model_steps=12, world_model_validate_every=2, early_stopping_patience=2)


def without_offset(state: dict[str, Any]) -> dict[str, Any]:
    """Model weights less the return calibration (re-measured after every training run)."""
    return {k: v for k, v in state.items() if k != "return_offset"}


def test_the_best_validation_is_kept_and_training_stops_when_it_stops_improving(
    small_market: MarketDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([5.0, 4.0, 4.5, 4.6, 9.0])  # validations at steps 2, 4, 6, 8; then the final one
    real = training_module.validation_loss
    monkeypatch.setattr(
        training_module, "validation_loss", lambda *args: {**real(*args), "val/loss/total": next(scripted)}
    )
    result = train_world_model(small_market, SELECTING, tmp_path / "selected")
    assert result.steps == 8  # two validations without improvement after the best at step 4
    assert result.final_metrics["selection/best_step"] == 4 and result.final_metrics["selection/stopped_early"] == 1
    assert [line["step"] for line in metrics_lines(tmp_path / "selected") if "val/loss/total" in line] == [2, 4, 6, 8]

    monkeypatch.setattr(training_module, "validation_loss", real)
    four_steps = train_world_model(small_market, dataclasses.replace(TINY, world_model_steps=4), tmp_path / "four")
    kept = without_offset(read_checkpoint(result.checkpoint)["model"])
    assert states_equal(kept, without_offset(read_checkpoint(four_steps.checkpoint)["model"]))

    again = train_world_model(small_market, SELECTING, tmp_path / "selected")  # a rerun trains no further
    assert again.history == [] and again.steps == 8


def test_resume_with_model_selection_equals_an_uninterrupted_run(small_market: MarketDataset, tmp_path: Path) -> None:
    cfg = dataclasses.replace(SELECTING, early_stopping_patience=0)
    straight = train_world_model(small_market, cfg, tmp_path / "straight", checkpoint_every=3)
    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        train_world_model(small_market, cfg, out, checkpoint_every=3, on_metrics=interrupt_at(8))
    resumed = train_world_model(small_market, cfg, out, checkpoint_every=3)
    assert metrics_lines(out) == metrics_lines(tmp_path / "straight")
    assert states_equal(read_checkpoint(straight.checkpoint)["model"], read_checkpoint(resumed.checkpoint)["model"])
    assert straight.final_metrics["selection/best_step"] == resumed.final_metrics["selection/best_step"]


def test_a_warm_start_begins_from_the_given_weights(small_market: MarketDataset, tmp_path: Path) -> None:
    source = train_world_model(small_market, TINY, tmp_path / "source")
    no_steps = dataclasses.replace(TINY, world_model_steps=0, seed=7)
    warm = train_world_model(small_market, no_steps, tmp_path / "warm", init_from=source.checkpoint)
    cold = train_world_model(small_market, no_steps, tmp_path / "cold")
    source_weights = without_offset(read_checkpoint(source.checkpoint)["model"])
    assert states_equal(without_offset(read_checkpoint(warm.checkpoint)["model"]), source_weights)
    assert not states_equal(without_offset(read_checkpoint(cold.checkpoint)["model"]), source_weights)

    wider = dataclasses.replace(no_steps, hidden_size=TINY.hidden_size * 2)
    with pytest.raises(CheckpointError, match="hidden_size"):
        train_world_model(small_market, wider, tmp_path / "wider", init_from=source.checkpoint)


def test_a_warm_start_that_training_does_not_improve_is_kept(
    small_market: MarketDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = train_world_model(small_market, TINY, tmp_path / "source")
    scripted = iter([1.0, 2.0, 3.0, 4.0])  # step 0 (the warm start's weights), 2, 4; then the final one
    real = training_module.validation_loss
    monkeypatch.setattr(
        training_module, "validation_loss", lambda *args: {**real(*args), "val/loss/total": next(scripted)}
    )
    cfg = dataclasses.replace(SELECTING, world_model_steps=4, early_stopping_patience=0)
    warm = train_world_model(small_market, cfg, tmp_path / "warm", init_from=source.checkpoint)
    assert warm.final_metrics["selection/best_step"] == 0 and warm.steps == 4
    assert [line["step"] for line in metrics_lines(tmp_path / "warm")] == [0, 1, 2, 3, 4]
    kept = without_offset(read_checkpoint(warm.checkpoint)["model"])
    assert states_equal(kept, without_offset(read_checkpoint(source.checkpoint)["model"]))
