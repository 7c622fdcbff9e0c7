"""`dreamer predict`: the champion's target position for the latest closed bar in the database."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dreamer.commands.common import add_db_arg, add_market_args
from dreamer.paths import default_db_path

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

EXAMPLES = """examples:
  dreamer predict --symbol BTCUSDT --interval 5
  dreamer predict --symbol BTCUSDT --interval 5 --alias challenger --json
  dreamer ingest --symbol BTCUSDT --interval 5 && dreamer predict --symbol BTCUSDT --interval 5

The model is `models:/dreamer-<category>-<symbol>-<interval>@champion` of the MLflow registry at
$MLFLOW_TRACKING_URI (default: ./mlflow); a model trained on another market is refused. It trades the newest
stored bars from a flat account (feature warm-up, latent warm-up, then --context-bars bars) and prints the
position to hold over the next bar: -1 short .. +1 long. It reads the database only: run `dreamer ingest`
first to bring it up to date.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="target position of the registry's champion for the latest closed bar",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_market_args(parser)
    add_db_arg(parser)
    parser.add_argument("--alias", default="champion", help="registry alias to load (default: champion)")
    parser.add_argument("--version", help="a registered version number instead of --alias")
    parser.add_argument(
        "--context-bars", type=int, default=1_000, help="bars traded before the latest one (default 1000)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    parser.set_defaults(handler=predict)


def predict(args: argparse.Namespace) -> int:
    import mlflow

    from dreamer.data.markets import parse_category, parse_interval, parse_symbol
    from dreamer.errors import ConfigError
    from dreamer.orchestration import registry, tracking
    from dreamer.orchestration.pyfunc import latest_position

    symbol, category = parse_symbol(args.symbol), parse_category(args.category)
    interval = parse_interval(args.interval)
    if args.context_bars < 1:
        raise ConfigError("--context-bars must be >= 1")
    market = (category, symbol, interval.code)
    name = registry.registered_model_name(*market)
    uri = tracking.tracking_uri()
    version = registered_version(tracking.client(uri), uri, name, args, market)
    registered = f"{name} v{version.version}"
    refuse_another_market(version.tags, registered, market)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = load_model(
        f"models:/{name}/{version.version}",
        f"{registered} ({'version' if args.version else 'alias'} {args.version or args.alias})",
    )
    refuse_another_market(model.metadata.metadata or {}, registered, market)
    db_path = args.db or default_db_path()
    result = latest_position(model, db_path, category, symbol, interval.code, args.context_bars)
    result |= {"model": name, "version": str(version.version), "alias": args.alias if not args.version else None}
    result |= {"symbol": symbol, "interval": interval.code, "category": category}

    if interval.length_ms is not None:
        behind = (int(time.time() * 1000) - result["bar_open_time_ms"]) // interval.length_ms - 1
        result["bars_behind_now"] = int(behind)
        if behind > 1:
            print(
                f"warning: the latest stored bar closed {behind} bars ago; run `dreamer ingest --symbol {symbol} "
                f"--interval {interval.code} --category {category}` to decide on fresh data",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        label = f"alias {args.alias}" if not args.version else "pinned version"
        print(
            f"{symbol} {interval.code} ({category}): target position {result['target_position']:+.2f} "
            f"after the bar opening {result['bar_open_time']}, from {name} v{version.version} ({label})"
        )
    return 0


def registered_version(
    client: MlflowClient, uri: str, name: str, args: argparse.Namespace, market: tuple[str, str, str]
) -> ModelVersion:
    """The version --version or --alias names. The champion may be adopted from the legacy name
    (`registry.market_champion`), with a note on stderr."""
    from mlflow.exceptions import MlflowException

    from dreamer.errors import DreamerError
    from dreamer.orchestration import registry

    version: ModelVersion | None = None
    reason = ""
    try:
        if args.version:
            version = client.get_model_version(name, str(args.version))
        elif args.alias == registry.CHAMPION:
            version, note = registry.market_champion(client, *market)
            if note:
                print(f"note: {note}", file=sys.stderr)
        else:
            version = client.get_model_version_by_alias(name, args.alias)
    except MlflowException as exc:
        reason = f" ({exc.error_code})"
    if version is None:
        wanted = f"version {args.version}" if args.version else f"alias {args.alias!r}"
        raise DreamerError(f"no {wanted} of model {name} in the registry at {uri}{reason}; {what_exists(client, name)}")
    return version


def what_exists(client: MlflowClient, name: str) -> str:
    """What a user asking for a missing model can do instead: trade the challenger when no model of the market
    is champion yet, pick an alias or version the model has, pick a registered model that exists (a misspelled
    symbol, another interval), or train one."""
    from mlflow.exceptions import MlflowException

    from dreamer.orchestration import registry

    train = "train one with the `dreamer` flow (`dreamer run`, or make up then prefect deployment run dreamer/daily)"
    try:
        aliases = {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    except MlflowException:  # no such registered model
        names = sorted(m.name for m in client.search_registered_models() if m.name.startswith("dreamer-"))
        return f"registered models: {', '.join(names) or 'none'}; {train}"
    if registry.CHAMPION not in aliases and registry.CHALLENGER in aliases:
        return (
            f"no model of this market has passed the promotion guard rails yet; `--alias challenger` trades the "
            f"latest candidate (v{aliases[registry.CHALLENGER]}), or {train}"
        )
    versions = sorted((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), reverse=True)
    held = ", ".join(f"{alias} (v{version})" for alias, version in sorted(aliases.items())) or "none"
    listed = ", ".join(map(str, versions[:10])) + (" …" if len(versions) > 10 else "")
    return f"{name} has aliases {held} and versions {listed or 'none'}: pick one with --alias or --version, or {train}"


def load_model(model_uri: str, label: str) -> PyFuncModel:
    """The pyfunc at `model_uri`, or one line saying that the registered version `label` cannot trade."""
    import mlflow

    from dreamer.errors import DreamerError

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # whatever fails in loading (MLflow, I/O, unpickling), this version cannot trade
        first_line = next(iter(str(exc).strip().splitlines()), "")
        raise DreamerError(
            f"{label} cannot be loaded ({type(exc).__name__}: {first_line}): its artifacts are missing or damaged: "
            "run the `dreamer` flow again to register a new champion (it replaces one that cannot be loaded), "
            "or pick a working version with --version N"
        ) from exc


def refuse_another_market(recorded: Mapping[str, Any], model: str, market: tuple[str, str, str]) -> None:
    """Stop unless `model` (its version tags or model metadata: `recorded`) was trained on `market`."""
    from dreamer.errors import DreamerError
    from dreamer.orchestration.registry import market_mismatch

    mismatch = market_mismatch(recorded, *market)
    if mismatch:
        raise DreamerError(
            f"{model} was trained on another market ({mismatch}): refusing to trade {'/'.join(market)} with it"
        )
