"""MLflow tracking: where the store lives and how one pipeline run is laid out in it.

Store. `MLFLOW_TRACKING_URI` wins when set. Otherwise the store is local, under `./mlflow/` of the working
directory: `sqlite:////abs/path/mlflow/mlflow.db` (an absolute URI, so every process that resolves it
from the same directory, e.g. the Prefect worker and the MLflow UI, sees the same runs) and artifacts in
`./mlflow/artifacts/`. A local sqlite store always gets an explicit artifact location next to its database
(MLflow would otherwise default to `./mlruns` relative to whichever process created the experiment).
Several runs may share a local store: the first to open a fresh one creates its tables under a file lock
(`<db>.lock`) while the others wait.

Layout. One **parent run** per pipeline run (named after the Prefect flow run), holding the full config
as params (with the device the run resolved), the tags below, the data's identity as a dataset input, the
headline metrics (`stage_logs.headline`: agent with its Sharpe interval, baselines, the paired Sharpe
differences `vs_<baseline>.*` and, after promotion, `vs_champion.*`, all on the held-out window), the
evaluation's plots and tear sheet, and the logged model, whose metrics are the headline's too (the UI's
Models view shows them per model, with the registry version it became). One **nested run per stage**
(`ingest`, `validate`, `features`, `world_model`, `policy`, `evaluate`, `promote`) holds that stage's own metrics,
step-wise histories and artifacts, and fails on its own when the stage fails. Nested runs keep each
stage's step-wise curves separate and show, in the UI, which stage a failed run died in.

All logging goes through `MlflowClient` with explicit run ids (no fluent "active run" state), so it works
the same from Prefect tasks in any thread or process; stages exchange only the plain `FlowTracking` handle.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dreamer.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
UI_URL_ENV = "DREAMER_MLFLOW_UI"
"""Base URL of an MLflow UI serving the store (set by `make up`), used for links in Prefect artifacts."""
DEFAULT_EXPERIMENT = "dreamer"
LOCAL_STORE_DIR = Path("mlflow")
STAGE_TAG = "dreamer.stage"
PID_TAG, HOST_TAG = "dreamer.pid", "dreamer.host"
"""The process that owns a parent run, so that a later run can tell it was killed (`close_abandoned_runs`)."""

log = logging.getLogger(__name__)

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100
_PARAM_MAX_CHARS = 6000
_INVALID_NAME_CHARS = re.compile(r"[^\w\-. :/]")  # what MLflow rejects in metric and param names


def local_store_dir() -> Path:
    return (Path.cwd() / LOCAL_STORE_DIR).resolve()


def tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else the absolute sqlite URI of `./mlflow/mlflow.db`."""
    uri = os.environ.get(TRACKING_URI_ENV)
    if uri:
        return uri
    return f"sqlite:///{local_store_dir() / 'mlflow.db'}"


def sqlite_db_path(uri: str) -> Path | None:
    """The database file of a sqlite store, read as SQLAlchemy does (`sqlite:////abs/mlflow.db` absolute,
    `sqlite:///mlflow.db` relative to the working directory); None for other stores and in-memory ones."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri.removeprefix("sqlite:///").partition("?")[0])
    return None if path in ("", ":memory:") else Path(path).resolve()


def artifact_location(uri: str) -> str | None:
    """Explicit artifact root for experiments created in a local sqlite store (`<db dir>/artifacts`);
    None for remote stores, whose server decides."""
    db_path = sqlite_db_path(uri)
    return None if db_path is None else (db_path.parent / "artifacts").as_uri()


def client(uri: str | None = None) -> MlflowClient:
    """An `MlflowClient` on `uri` (default: `tracking_uri()`); a local store is created and migrated first,
    under a lock (`_open_local_store`)."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    db_path = sqlite_db_path(uri)
    if db_path is not None and uri not in _opened_stores:
        _open_local_store(uri, db_path)
        _opened_stores.add(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


_opened_stores: set[str] = set()
"""sqlite URIs whose stores this process has opened (MLflow caches the stores per URI and process)."""


def _open_local_store(uri: str, db_path: Path) -> None:
    """Open the tracking and registry stores of a sqlite URI under a file lock next to its database.

    Opening a store creates and migrates its tables when they are missing, with no lock of MLflow's own:
    two processes doing it at once on a fresh store both fail half-way ("table ... already exists") and
    leave a store that no later run can open. Under the lock, the first process creates the tables and the
    others find them; the stores opened here are MLflow's cached ones, used by every later client of `uri`."""
    from filelock import FileLock
    from mlflow import MlflowClient

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db_path}.lock"):
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models(max_results=1)


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""The experiment tag that says "model training, not GenAI" (MLflow's experiments list shows it). The UI of
mlflow 3.17 no longer opens an experiment by it: it opens every experiment in the workflow of its GenAI /
Model training toggle (remembered per browser, GenAI at first), unless the link says `UI_WORKFLOW`."""
UI_WORKFLOW = "workflowType=machine_learning"
"""What every link to the MLflow UI carries, so that it opens on the model-training pages (runs table, run
page with its metrics and artifacts) rather than the GenAI overview of traces (checked in a browser against
mlflow 3.17.2: `#/experiments/<id>` alone lands on `overview/usage?workflowType=genai`)."""


RUNS_TABLE_QUERY = (
    f"{UI_WORKFLOW}&searchFilter=tags.%60mlflow.parentRunId%60%20IS%20NULL"
    "&orderByKey=metrics.%60agent.sharpe%60&orderByAsc=false"
)
"""The runs table with the parent runs only (the ones that carry the headline), highest `agent.sharpe`
first: the UI's own URL parameters (`searchFilter`, `orderByKey`, `orderByAsc`, mlflow 3.17)."""


def ensure_experiment(mlflow_client: MlflowClient, name: str | None = None) -> str:
    """Id of experiment `name` (default `$MLFLOW_EXPERIMENT_NAME` or `dreamer`), created if missing, and
    marked as model training (`EXPERIMENT_KIND`)."""
    from mlflow.exceptions import MlflowException

    name = name or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        try:
            location = artifact_location(mlflow_client.tracking_uri)
            mlflow_client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
        except MlflowException as exc:  # created concurrently by another run
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        experiment = mlflow_client.get_experiment_by_name(name)
        assert experiment is not None
    if experiment.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # created before the tag was set
        mlflow_client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
    return str(experiment.experiment_id)


def git_commit() -> str:
    """The checkout's commit (`-dirty` when it has uncommitted changes), or `unknown` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@dataclass(frozen=True)
class FlowTracking:
    """The parent run of one pipeline run: plain values, passed between tasks and processes."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    def logger(self) -> RunLogger:
        return RunLogger(client(self.tracking_uri), self.run_id)

    def ui_url(self) -> str | None:
        """Base URL of an MLflow UI serving this store, when one is known (`$DREAMER_MLFLOW_UI` or an http store)."""
        base = os.environ.get(UI_URL_ENV)
        if not base and self.tracking_uri.startswith(("http://", "https://")):
            base = self.tracking_uri
        return base.rstrip("/") if base else None

    def run_url(self, run_id: str | None = None) -> str | None:
        """A link to the run in an MLflow UI, when one is known (`ui_url`)."""
        return self._ui_link(f"runs/{run_id or self.run_id}")

    def artifact_url(self, artifact_path: str) -> str | None:
        """A link to one artifact of the parent run in an MLflow UI (its page shows images and HTML)."""
        return self._ui_link(f"runs/{self.run_id}/artifactPath/{artifact_path}")

    def runs_table_url(self) -> str | None:
        """A link to the experiment's runs table, best agent Sharpe first (`RUNS_TABLE_QUERY`)."""
        base = self.ui_url()
        return None if base is None else f"{base}/#/experiments/{self.experiment_id}/runs?{RUNS_TABLE_QUERY}"

    def _ui_link(self, page: str) -> str | None:
        base = self.ui_url()
        return None if base is None else f"{base}/#/experiments/{self.experiment_id}/{page}?{UI_WORKFLOW}"


def start_flow_run(
    run_name: str,
    tags: Mapping[str, Any],
    params: Mapping[str, Any],
    uri: str | None = None,
    experiment: str | None = None,
) -> FlowTracking:
    """Create the parent run of a pipeline run (in `experiment`, default `ensure_experiment`'s), with its
    tags and params, after closing the runs that killed runs left open in the experiment."""
    mlflow_client = client(uri)
    experiment_id = ensure_experiment(mlflow_client, experiment)
    for run_id in close_abandoned_runs(mlflow_client, experiment_id):
        log.warning("MLflow run %s was left RUNNING by a process that is gone: marked KILLED", run_id)
    process = {PID_TAG: os.getpid(), HOST_TAG: socket.gethostname()}
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=_strings({**tags, **process}))
    tracking = FlowTracking(mlflow_client.tracking_uri, experiment_id, run.info.run_id)
    tracking.logger().params(params)
    return tracking


def close_abandoned_runs(mlflow_client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING parent runs of this host whose process is gone (killed with -9, or with its
    machine), and their RUNNING stage runs; returns their ids. Runs of other hosts, or without the process
    tags, cannot be checked and are left alone."""
    running = mlflow_client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    host = socket.gethostname()
    abandoned = [
        run.info.run_id
        for run in running
        if run.data.tags.get(HOST_TAG) == host and not _process_alive(run.data.tags.get(PID_TAG, ""))
    ]
    stages = [run.info.run_id for run in running if run.data.tags.get("mlflow.parentRunId") in abandoned]
    for run_id in abandoned + stages:
        mlflow_client.set_terminated(run_id, "KILLED")
    return abandoned + stages


def _process_alive(pid: str) -> bool:
    """Whether process `pid` of this host exists (an unreadable tag counts as alive: nothing is closed)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):  # an unreadable tag; another user's process
        return True
    return True


def finish_run(tracking: FlowTracking, failed: bool) -> None:
    """Terminate the parent run, after marking FAILED its stage runs still RUNNING: a stage interrupted
    (SIGTERM, Ctrl-C) between creating its run and entering its body cannot close the run itself."""
    mlflow_client = client(tracking.tracking_uri)
    open_stages = mlflow_client.search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{tracking.run_id}' AND attributes.status = 'RUNNING'",
    )
    for stage in open_stages:
        mlflow_client.set_terminated(stage.info.run_id, "FAILED")
    mlflow_client.set_terminated(tracking.run_id, "FAILED" if failed else "FINISHED")


@contextmanager
def stage_run(parent: FlowTracking, stage: str) -> Iterator[RunLogger]:
    """A nested run for one stage under `parent`; FAILED if the body raises, else FINISHED."""
    mlflow_client = client(parent.tracking_uri)
    run = mlflow_client.create_run(
        parent.experiment_id, run_name=stage, tags={"mlflow.parentRunId": parent.run_id, STAGE_TAG: stage}
    )
    try:
        yield RunLogger(mlflow_client, run.info.run_id)
    except BaseException:
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")


class RunLogger:
    """Logging into one MLflow run by id."""

    def __init__(self, mlflow_client: MlflowClient, run_id: str) -> None:
        self.client = mlflow_client
        self.run_id = run_id

    def tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, value) for key, value in _strings(tags).items()]
        for start in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + _PARAM_BATCH])

    def params(self, params: Mapping[str, Any]) -> None:
        """Params, stringified (sequences as JSON) and truncated to MLflow's length limit."""
        from mlflow.entities import Param

        items = [Param(key, value[:_PARAM_MAX_CHARS]) for key, value in _strings(params, keep_none=True).items()]
        for start in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _PARAM_BATCH])

    def metrics(self, metrics: Mapping[str, Any], step: int = 0, prefix: str = "", model_id: str | None = None) -> None:
        """Numeric leaves of a nested mapping as `prefix.a.b` metrics; non-numeric leaves are skipped. With
        `model_id` (an MLflow logged model), the metrics are the model's too (the UI's Models view and model
        page show them)."""
        self._log_metric_rows([(step, flatten_numeric(metrics, prefix))], model_id)

    def history(
        self,
        records: Iterable[Mapping[str, Any]],
        step_key: str = "step",
        prefix: str = "",
        max_points: int | None = None,
    ) -> int:
        """Step-wise metrics, one record per step (e.g. the lines of a metrics.jsonl), thinned to about
        `max_points` evenly spaced records (the last one always kept); returns how many were logged."""
        rows = []
        for index, record in enumerate(records):
            step = record.get(step_key, index)
            values = {k: v for k, v in record.items() if k != step_key}
            rows.append((int(step), flatten_numeric(values, prefix)))
        if max_points is not None and len(rows) > max_points:
            stride = -(-len(rows) // max_points)
            rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        self._log_metric_rows(rows)
        return len(rows)

    def history_file(
        self, path: str | Path, step_key: str = "step", prefix: str = "", max_points: int | None = None
    ) -> int:
        """`history` from a JSON-lines file (`read_jsonl`)."""
        return self.history(read_jsonl(path), step_key, prefix, max_points)

    def dataset(self, dataset: Any, context: str) -> None:
        """An `mlflow.data` dataset as an input of the run, tagged with its context (training, ...)."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a whole directory."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def dict_artifact(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def text_artifact(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def _log_metric_rows(self, rows: list[tuple[int, dict[str, float]]], model_id: str | None = None) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(key, value, timestamp, step, model_id=model_id)
            for step, values in rows
            for key, value in values.items()
        ]
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, one object a line (blank lines ignored)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def flatten_numeric(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """`{"a": {"b": 1.0}}` -> `{"prefix.a.b": 1.0}`: numeric leaves (NaN kept, MLflow shows it; bools as 0/1),
    characters MLflow rejects in names replaced by `_` (`a+b` -> `a_b`)."""
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = _INVALID_NAME_CHARS.sub("_", f"{prefix}.{key}" if prefix else str(key))
        if isinstance(value, Mapping):
            flat.update(flatten_numeric(value, name))
        elif isinstance(value, int | float):
            flat[name] = float(value)
    return flat


def _strings(values: Mapping[str, Any], keep_none: bool = False) -> dict[str, str]:
    """Values as MLflow strings: text as is, everything else as JSON (None -> "null" or left out)."""
    return {
        str(key): value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in values.items()
        if keep_none or value is not None
    }
