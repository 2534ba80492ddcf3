"""The project file ``retrain.yaml``: parsed into typed objects, paths resolved beside the file.

The path comes from ``--config``, else the ``RETRAIN_CONFIG`` environment variable, else ``./retrain.yaml``
(:func:`resolve_config_path` is the one place that decides). Every error names the offending key.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

CONFIG_ENV = "RETRAIN_CONFIG"
DEFAULT_CONFIG_NAME = "retrain.yaml"

ColumnType = Literal["int", "float", "category", "bool", "timestamp", "string"]
Task = Literal["classification", "regression"]

# metric name -> True when a higher value is better
METRICS: dict[str, dict[str, bool]] = {
    "classification": {"roc_auc": True, "accuracy": True, "f1": True, "log_loss": False},
    "regression": {"r2": True, "rmse": False, "mae": False},
}
ESTIMATORS: dict[str, tuple[str, ...]] = {
    "classification": ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    "regression": ("ridge", "random_forest", "hist_gradient_boosting"),
}


class ConfigError(ValueError):
    """``retrain.yaml`` is missing, unreadable or has a bad key; the message names file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(_Section):
    home: str = Field(".retrain", description="Storage home, relative to the config file's folder.")
    lake_uri: Optional[str] = Field(None, description="Where the Delta tables live; default <home>/lake.")
    landing_dir: Optional[str] = Field(
        None,
        description="Relative to the config file's folder; when set, `retrain ingest` takes files only from inside it.",
    )
    max_file_bytes: Optional[int] = Field(
        2 * 1024**3, ge=1, description="`retrain ingest` refuses a larger file before reading it (null: no limit)."
    )
    max_rows: Optional[int] = Field(
        10_000_000,
        ge=1,
        description="...and a file of more rows: Parquet by its footer, before reading; CSV by reading no further "
        "than the limit (null: no limit).",
    )


class MlflowConfig(_Section):
    # the refused value is never quoted in an error, since it may hold a password
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    tracking_uri: Optional[str] = Field(
        None, description="Default: sqlite store under <home>/mlflow. Also the registry. No user:password@ in it."
    )
    experiment: str = "retrain"
    model_name: str = Field("retrain_model", description="Registered model that carries the aliases.")

    @model_validator(mode="after")
    def _no_credentials_in_uri(self) -> "MlflowConfig":
        """A password in the URI would be printed by ``retrain status`` and quoted in MLflow's errors."""
        host = _host_after_userinfo(self.tracking_uri or "")
        if host is not None:
            raise ValueError(
                f"mlflow.tracking_uri: credentials (user:password@) before the host {host!r} are refused: the URI "
                "is printed and logged. Remove them and give them to MLflow in the environment: "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN (for a database "
                "store, the driver's own, e.g. PGPASSWORD)"
            )
        return self


def _host_after_userinfo(uri: str) -> Optional[str]:
    """The host of ``scheme://userinfo@host/...``; ``None`` when the URI has no userinfo."""
    _, sep, rest = uri.partition("://")
    authority = rest
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    return authority.rpartition("@")[2] if sep and "@" in authority else None


class DataConfig(_Section):
    target: str
    task: Task
    timestamp: Optional[str] = None
    id: Optional[str] = None
    columns: dict[str, ColumnType] = Field(description="Every column of raw_data with its type.")
    ignore: list[str] = Field(
        default_factory=list, description="Columns kept in raw_data and validated, never used as model features."
    )
    max_columns: int = Field(
        300,
        ge=1,
        description="Most columns data.columns may list; a file with more is refused before its data is read "
        "(validation time grows faster than the column count).",
    )
    max_category_values: Optional[int] = Field(
        10_000, ge=1, description="A file with more distinct values in one category column is refused (null: off)."
    )

    @model_validator(mode="after")
    def _names_are_distinct(self) -> "DataConfig":
        """Delta Lake refuses column names that differ only in case, and an empty name cannot be validated:
        refused here, not at every ingest with a message that blames the file."""
        empty = [name for name in self.columns if not name.strip()]
        if empty:
            raise ValueError(f"data.columns: empty column names {empty} (every column needs a name)")
        spellings: dict[str, list[str]] = {}
        for name in self.columns:
            spellings.setdefault(name.casefold(), []).append(name)
        clashes = [names for names in spellings.values() if len(names) > 1]
        if clashes:
            listed = "; ".join(str(names) for names in clashes)
            raise ValueError(
                f"data.columns: column names that differ only in case: {listed} (Delta Lake refuses "
                "them as duplicates, so every ingest would fail); rename one of them"
            )
        if len(self.columns) > self.max_columns:
            raise ValueError(
                f"data.columns: {len(self.columns)} columns, more than data.max_columns ({self.max_columns})"
            )
        return self

    @model_validator(mode="after")
    def _roles_are_columns(self) -> "DataConfig":
        for role in ("target", "timestamp", "id"):
            name = getattr(self, role)
            if name is not None and name not in self.columns:
                raise ValueError(f"data.{role}: column {name!r} is not listed in data.columns")
        unknown = [name for name in self.ignore if name not in self.columns]
        if unknown:
            raise ValueError(f"data.ignore: columns {unknown} are not listed in data.columns")
        if self.target in self.ignore:
            raise ValueError(f"data.ignore: the target {self.target!r} cannot be ignored")
        if self.timestamp and self.columns[self.timestamp] != "timestamp":
            raise ValueError(f"data.timestamp: column {self.timestamp!r} must have type 'timestamp'")
        if not self.features:
            raise ValueError("data.columns: no feature columns left besides target, timestamp and id")
        stamps = [name for name, kind in self.features.items() if kind == "timestamp"]
        if stamps:
            raise ValueError(f"data.columns: timestamp columns {stamps} cannot be model features (only data.timestamp)")
        return self

    @property
    def features(self) -> dict[str, ColumnType]:
        """Model inputs: every column except target, timestamp, id and the ignored ones."""
        roles = {self.target, self.timestamp, self.id, *self.ignore}
        return {name: kind for name, kind in self.columns.items() if name not in roles}


Severity = Literal["error", "warn"]


class Bounds(_Section):
    min: Optional[float] = None
    max: Optional[float] = None


class ExpectedValues(_Section):
    """What the sample showed (``retrain init`` writes it): values outside it warn, never block."""

    min: Optional[float] = None
    max: Optional[float] = None
    max_null_fraction: Optional[float] = Field(
        None, ge=0, le=1, description="Warn when more of a batch's values are null than this."
    )


class ColumnRule(_Section):
    """Rules for one column. ``hard`` limits, ``nullable: false`` and a ``closed`` domain are declared
    limits: a batch that breaks them is rejected (with ``severity: warn`` they only warn). ``expected``
    values and an open ``domain`` are what the sample showed: values outside them warn and feed the
    triggers, like drift. ``mostly`` is GE's: the fraction of non-null values that must pass a hard rule.

    The keys ``min``/``max`` of earlier versions are read as ``hard`` limits, as they always acted."""

    nullable: bool = True
    hard: Optional[Bounds] = None
    expected: Optional[ExpectedValues] = None
    domain: Optional[list[Union[str, int, bool]]] = None
    closed: bool = Field(False, description="Values outside domain block (default: they warn).")
    mostly: float = Field(1.0, gt=0, le=1, description="Fraction of values that must pass this column's hard rules.")
    severity: Severity = Field(
        "error", description="error: a failing hard rule rejects the batch; warn: it only warns."
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_bounds(cls, raw: Any) -> Any:
        """``min``/``max`` at the column level (before hard/expected existed) are hard limits."""
        if not isinstance(raw, dict) or not ({"min", "max"} & raw.keys()):
            return raw
        if "hard" in raw:
            raise ValueError("min/max: give the limits once, under hard: {min, max} (min/max are its old spelling)")
        raw = dict(raw)
        raw["hard"] = {key: raw.pop(key) for key in ("min", "max") if key in raw}
        return raw

    @model_validator(mode="after")
    def _closed_needs_domain(self) -> "ColumnRule":
        if self.closed and self.domain is None:
            raise ValueError("closed: true needs a domain (the list of allowed values)")
        return self

    @property
    def hard_min(self) -> Optional[float]:
        return self.hard.min if self.hard else None

    @property
    def hard_max(self) -> Optional[float]:
        return self.hard.max if self.hard else None


class ValidationConfig(_Section):
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    target_classes: Optional[list[Union[str, int, bool]]] = Field(
        None, description="Every class the target may hold: a class outside the list always blocks."
    )
    min_class_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="A class below this share of a batch warns (a changed label mix, not corruption).",
    )
    min_rows: int = Field(1, ge=1)
    max_batch_growth: Optional[float] = Field(
        5.0, gt=1, description="A batch may hold at most this many times the median rows of the recent accepted ones."
    )
    max_event_age_days: Optional[float] = Field(
        3650, gt=0, description="data.timestamp may be at most this old when its batch lands (catches sentinel dates)."
    )
    max_feature_auc: float = Field(
        0.999, gt=0.5, le=1, description="A feature alone separating the classes this well (ROC AUC) is a leak."
    )
    max_missingness_auc: float = Field(
        0.95, gt=0.5, le=1, description="...and so is a feature whose null indicator alone does this well."
    )
    redact_samples: bool = Field(
        False,
        description="Keep failing values out of rule outcomes, the validation_log and Dagster events "
        "(counts and rule names stay).",
    )
    show_id_samples: bool = Field(
        False, description="Let values of data.id appear in failing-value samples (withheld by default)."
    )


class ModelConfig(_Section):
    estimator: str = "logistic_regression"
    pipeline: Optional[str] = Field(
        None,
        description="Your own model: 'package.module:function' or 'path/to/file.py:function' (beside retrain.yaml), "
        "called with (params, roles) and returning a scikit-learn estimator or Pipeline; default: the built-in "
        "`estimator` with its preprocessing.",
    )
    features: Optional[str] = Field(
        None,
        description="A pure function 'module:function' from the data frame to the model's input frame (it may add "
        "columns); applied the same way in training, evaluation, backtests and serving.",
    )
    code_deps: list[str] = Field(
        default_factory=list,
        description="More files the model's code depends on (globs beside retrain.yaml); the modules of `pipeline` "
        "and `features` are always included.",
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description="Types your pipeline holds that skops may load (e.g. 'mypackage.transformers.Ratio'); types "
        "of the modules of `pipeline` and `features` are trusted without listing.",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    window_days: Optional[int] = Field(
        None, ge=1, description="Train and compare on the newest N days of data (by data.timestamp); default: all."
    )


class LiveCheck(_Section):
    """The challenger must also hold up on live traffic: scored in shadow beside the champion, on the same
    labelled request rows, before it takes the ``champion`` alias."""

    min_rows: int = Field(
        200, ge=1, description="Paired labelled rows (champion and challenger on the same requests) needed to judge."
    )
    max_drop: float = Field(
        0.0,
        ge=0,
        description="How far the challenger's live metric may fall short of the champion's on those rows.",
    )


class PromotionConfig(_Section):
    metric: str = "roc_auc"
    minimum: Optional[float] = Field(
        None, description="Worst acceptable value: a floor, or a ceiling for error metrics (rmse, mae, log_loss)."
    )
    margin: float = Field(0.0, ge=0.0)
    max_age_days: Optional[float] = Field(
        30, gt=0, description="A champion older than this fails the freshness check (warning)."
    )
    live_check: Optional[LiveCheck] = Field(
        None,
        description="Off by default. When set, a candidate that wins on the holdout stays the challenger, "
        "scored in shadow, until the live check passes (needs serving.shadow).",
    )


class NewVersionTrigger(_Section):
    enabled: bool = True
    coalesce: bool = Field(True, description="Versions landing between ticks: one run on the newest (else one each).")


class DriftTrigger(_Section):
    enabled: bool = True
    psi: float = Field(0.2, gt=0, description="PSI above this marks a feature drifted (categoricals, binned numerics).")
    ks: float = Field(0.15, gt=0, le=1, description="KS statistic above this marks a numeric feature drifted.")
    ks_pvalue: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="...and only when the KS test's p-value is below this. A PSI counts only when "
        "a chi-square test of the bucket counts is significant at this level too (small batches move PSI by chance).",
    )
    bins: int = Field(10, ge=2, le=100)


class PerformanceTrigger(_Section):
    enabled: bool = True
    floor: Optional[float] = Field(None, description="Retrain when the champion scores below this on the newest batch.")
    max_drop: Optional[float] = Field(
        0.05, ge=0, description="...or when it scores more than this below its recorded holdout metric."
    )


class TriggersConfig(_Section):
    new_version: NewVersionTrigger = Field(default_factory=NewVersionTrigger)
    drift: DriftTrigger = Field(default_factory=DriftTrigger)
    performance: PerformanceTrigger = Field(default_factory=PerformanceTrigger)
    schedule: Optional[str] = Field("0 6 * * 1", description="Cron (UTC) of the retrain schedule; null turns it off.")
    sensor_interval_seconds: int = Field(
        30,
        ge=1,
        description="How often the Dagster daemon evaluates the sensors (new raw_data versions, model code); its "
        "sensor loop wakes every 5 s, so less acts as 5. `retrain tick` evaluates them whenever it runs.",
    )
    min_new_rows: int = Field(
        0, ge=0, description="Retrain on new data only once this many validated rows landed since the champion's data."
    )


class HistoryConfig(_Section):
    partitions: Literal["daily", "weekly"] = Field(
        "weekly", description="Window of a historical retrain (weeks start Monday)."
    )
    start: Optional[dt.date] = Field(None, description="First partition; default: a year before today.")
    evaluation_windows: int = Field(1, ge=1, description="Following windows the out-of-time evaluation covers.")

    def first_partition(self, today: Optional[dt.date] = None) -> dt.date:
        start = self.start or (today or dt.date.today()) - dt.timedelta(days=365)
        return start - dt.timedelta(days=start.weekday()) if self.partitions == "weekly" else start


class AlertsConfig(_Section):
    webhook_url_env: Optional[str] = Field(
        None, description="Name of the environment variable holding the webhook URL (kept out of files)."
    )
    timeout_seconds: float = Field(
        3.0, gt=0, description="Deadline of one webhook call as a whole: connect, send and read the answer."
    )
    https_only: bool = Field(False, description="Refuse to send to an http:// webhook URL (only https://).")
    redact_samples: bool = Field(
        False, description="Withhold every failing-value sample from alert texts (counts and rule names stay)."
    )


class RunsConfig(_Section):
    max_runtime_minutes: float = Field(
        120,
        gt=0,
        description="A run still going after this long is stopped and fails: in process by a timer, "
        "under the daemon by Dagster's run monitoring (the dagster/max_runtime tag).",
    )
    lock_alert_minutes: Optional[float] = Field(
        None,
        gt=0,
        description="`retrain tick` exits 2 and alerts (once per holder) when the project lock has "
        "been held longer than this; default: max_runtime_minutes + 10.",
    )

    @property
    def max_runtime_seconds(self) -> float:
        return self.max_runtime_minutes * 60

    @property
    def lock_alert_seconds(self) -> float:
        return (self.lock_alert_minutes or self.max_runtime_minutes + 10) * 60


class ServingConfig(_Section):
    host: str = Field(
        "127.0.0.1", description="Address the prediction server binds to (loopback: put a proxy in front)."
    )
    port: int = Field(5005, ge=1, le=65535)
    poll_seconds: float = Field(
        5, gt=0, description="How often the server asks the registry where the champion alias points."
    )
    ledger: bool = Field(
        True,
        description="The journal and the predictions table; off only to measure what they cost: nothing is "
        "recorded, and answers carry no prediction ids.",
    )
    flush_rows: int = Field(
        10_000,
        ge=1,
        description="Served rows are appended to the predictions table once this many wait (a busy server: "
        "about one Delta version a second, not dozens)...",
    )
    flush_seconds: float = Field(2.0, gt=0, description="...or once the oldest has waited this long.")
    journal_dir: Optional[str] = Field(
        None,
        description="Where each served row is journaled before the answer, relative to the config file's "
        "folder; default <home>/journal. Local disk: the answer waits for its fsync.",
    )
    max_body_bytes: int = Field(10 * 1024**2, ge=1, description="A larger request body is refused unread.")
    shadow: bool = Field(
        False,
        description="Also score each request with the challenger and log it (shadow rows), answering "
        "with the champion's.",
    )
    batch_wait_ms: float = Field(
        2,
        ge=0,
        description="Requests queued while a batch is scored go in the next one; it waits up to this long for "
        "requests still being read (0: never waits).",
    )
    label_delay_hours: float = Field(
        24,
        ge=0,
        description="Labels of a day's predictions are taken as complete this long after the day ends: "
        "live_performance computes a day only then (later labels recompute it).",
    )
    min_labelled_rows: int = Field(
        30, ge=1, description="Fewer labelled rows of a model on a day report no live metric and trigger nothing."
    )

    def due_at(self, day_end: dt.datetime) -> dt.datetime:
        """When the labels of a day ending at ``day_end`` are taken as complete: its end + the label delay."""
        return day_end + dt.timedelta(hours=self.label_delay_hours)

    def last_due_day(self, now: dt.datetime) -> dt.date:
        """The newest day whose labels are complete at ``now`` (:meth:`due_at`): here, not in ``core.live``, so
        the quiet tick can ask without importing what the live join needs."""
        return (now - dt.timedelta(hours=self.label_delay_hours)).astimezone(dt.timezone.utc).date() - dt.timedelta(
            days=1
        )

    @model_validator(mode="after")
    def _shadow_is_recorded(self) -> "ServingConfig":
        if self.shadow and not self.ledger:
            raise ValueError("serving.shadow: the challenger's answers go only to the ledger; serving.ledger is off")
        return self


class RetrainConfig(_Section):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # no password quoted (MlflowConfig)

    project: str = "retrain"
    storage: StorageConfig = Field(default_factory=StorageConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    data: DataConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    runs: RunsConfig = Field(default_factory=RunsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _code_dir: Optional[Path] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> "RetrainConfig":
        task = self.data.task
        for name in self.validation.columns:
            if name not in self.data.columns:
                raise ValueError(f"validation.columns.{name}: not a column listed in data.columns")
        if self.model.estimator not in ESTIMATORS[task]:
            raise ValueError(
                f"model.estimator: {self.model.estimator!r} is not one of {', '.join(ESTIMATORS[task])} for {task}"
            )
        if self.model.window_days is not None and self.data.timestamp is None:
            raise ValueError("model.window_days: needs data.timestamp to know how old a row is")
        if self.promotion.metric not in METRICS[task]:
            raise ValueError(
                f"promotion.metric: {self.promotion.metric!r} is not one of {', '.join(METRICS[task])} for {task}"
            )
        if self.promotion.live_check is not None and not self.serving.shadow:
            raise ValueError(
                "promotion.live_check: the challenger is judged on the rows it scored in shadow; set serving.shadow"
            )
        return self

    # --- resolved locations -------------------------------------------------------------------------
    @property
    def project_dir(self) -> Path:
        """Where the user's code specs and ``model.code_deps`` resolve from: the folder of ``retrain.yaml``, or
        the folder of another commit's code (see :meth:`with_code_from`)."""
        return (self._code_dir or self._base_dir).resolve()

    def with_code_from(self, folder: Path) -> "RetrainConfig":
        """This config with the model's code read from ``folder`` (the project folder of another commit,
        checked out elsewhere), its storage unchanged: how ``retrain reproduce --at-commit`` trains."""
        copy = self.model_copy()
        copy._code_dir = folder
        return copy

    @property
    def home(self) -> Path:
        return (self._base_dir / self.storage.home).resolve()

    @property
    def lake_uri(self) -> str:
        return (self.storage.lake_uri or str(self.home / "lake")).rstrip("/")

    def table_uri(self, table: str) -> str:
        return f"{self.lake_uri}/{table}"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def refusals_log(self) -> Path:
        return self.home / "refusals.jsonl"

    @property
    def landing_dir(self) -> Optional[Path]:
        return (self._base_dir / self.storage.landing_dir).resolve() if self.storage.landing_dir else None

    @property
    def alerts_log(self) -> Path:
        return self.home / "alerts.jsonl"

    @property
    def journal_dir(self) -> Path:
        """The prediction ledger's journal (``serving.journal_dir``, else ``<home>/journal``)."""
        if self.serving.journal_dir:
            return (self._base_dir / self.serving.journal_dir).resolve()
        return self.home / "journal"

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.data.task][self.promotion.metric]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)


def resolve_config_path(explicit: Optional[str | os.PathLike] = None) -> Path:
    """``--config``, else ``$RETRAIN_CONFIG``, else ``./retrain.yaml``."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME).resolve()


def parse_config(raw: Any, source: str = DEFAULT_CONFIG_NAME, base_dir: Optional[Path] = None) -> RetrainConfig:
    """Validate a mapping (the loaded YAML) into a :class:`RetrainConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        config = RetrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(err) for err in exc.errors())) from None
    config._base_dir = base_dir or Path.cwd()
    return config


def _describe(error: "ErrorDetails") -> str:
    """One pydantic error as ``key.path: message``; our own validators already start with the key."""
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    head = message.split(": ", 1)[0]
    if not key or head.startswith(key):
        return message
    return f"{key}: {message}"


def load_config(path: Optional[str | os.PathLike] = None) -> RetrainConfig:
    """Read and validate ``retrain.yaml`` (see :func:`resolve_config_path` for which file)."""
    config_path = resolve_config_path(path)
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: no such config file (run `retrain init DATA --target COL` to write one)")
    with config_path.open("rb") as handle:
        text = handle.read(MAX_CONFIG_BYTES + 1)
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{config_path}: larger than {MAX_CONFIG_BYTES:,} bytes, the most a config file may be")
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader, less anchors and aliases)
    except _AliasRefused as exc:
        raise ConfigError(
            f"{config_path}: line {exc.line}: YAML anchors and aliases ({exc.what}) are not accepted: an alias "
            "repeats its node wherever it is named, so a small file can expand a millionfold; write the values out"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(config_path), base_dir=config_path.parent)


MAX_CONFIG_BYTES = 1024 * 1024


class _AliasRefused(yaml.YAMLError):
    def __init__(self, what: str, line: int):
        super().__init__(what)
        self.what, self.line = what, line


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, refusing anchors (``&name``) and aliases (``*name``, ``<<: *name``): the
    "billion laughs" is a few KB of nested aliases that every later copy, dump and hash expands in full."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _AliasRefused(f"*{event.anchor}", event.start_mark.line + 1)
        if getattr(event, "anchor", None) is not None:
            raise _AliasRefused(f"&{event.anchor}", event.start_mark.line + 1)
        return super().compose_node(parent, index)
