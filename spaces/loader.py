"""Load a YAML space file into a validated :class:`SearchSpace`.

A ``space`` entry is a list (categorical choices), a mapping ``{low, high, log, default}``
(a numeric range) or a scalar (fixed). Conditions between parameters are the fixed rules of
:func:`trainables.params.is_active`: ``prune.sparsity`` only when pruning, ``quant.bits`` only
when quantizing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spaces.samplers import DEFAULT_SAMPLER, SAMPLERS
from trainables.data import LOADERS
from trainables.metrics import OBJECTIVE_METRICS
from trainables.models import MODELS, build_model
from trainables.params import PARAMS, check_fit, is_active, validate_config
from trainables.tasks import TASKS, TaskSpec

BUNDLED_DIR = Path(__file__).parent


class SpaceError(ValueError):
    """A space file is missing, malformed or asks for something not allowed."""


def _known(value: str, registry, what: str) -> str:
    """``value`` if ``registry`` has it, else an error naming it and what is allowed."""
    if value not in registry:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(registry)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """Which data and how it is split; fields a task does not use stay unset (None)."""

    loader: str
    name: str
    split: str | None = None  # default: the task's first (its TaskSpec's splits)
    num_val: int | None = Field(None, ge=1)  # node classification, random split
    num_test: int | None = Field(None, ge=1)
    val_ratio: float | None = Field(None, gt=0, lt=1)  # link prediction, graph classification
    test_ratio: float | None = Field(None, gt=0, lt=1)
    folds: int | None = Field(None, ge=2, le=100)  # graph classification, split: kfold
    metric: Literal["acc", "roc_auc"] | None = None  # graph classification: what val_ scores
    batch_size: int | None = Field(None, ge=1)  # graph classification
    subgraphs: int | None = Field(None, ge=1, le=64)  # link prediction: NESS static subgraphs
    normalize_features: bool | None = None  # link prediction: rows of x sum to 1
    node_attributes: bool | None = None  # graph classification (tu): continuous attributes too

    def as_dict(self) -> dict[str, Any]:
        """The settings given (unset ones left out, so they do not enter cache keys)."""
        return self.model_dump(exclude_none=True)

    @field_validator("loader")
    @classmethod
    def _known_loader(cls, v: str) -> str:
        return _known(v, LOADERS, "loader")


class ModelSpec(_Strict):
    name: str
    kwargs: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        return _known(v, MODELS, "model")


class BaselineSpec(_Strict):
    epochs: int = Field(200, ge=1)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    seed: int = 0


class RangeSpec(_Strict):
    low: float
    high: float
    log: bool = False
    default: float | None = None


class SearchSpace(_Strict):
    """A validated space file."""

    task: str
    dataset: DatasetSpec
    model: ModelSpec
    baseline: BaselineSpec = BaselineSpec()
    objectives: dict[str, Literal["max", "min"]]
    sampler: str = DEFAULT_SAMPLER
    space: dict[str, list[Any] | RangeSpec | str | int | float]
    warm_start: list[dict[str, Any]] = []  # known-good points, evaluated first
    source: str = ""

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        return _known(v, TASKS, "task")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str) -> str:
        return _known(v, SAMPLERS, "sampler")

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("at least one objective is needed, e.g. {val_acc: max}")
        for metric in v:
            if metric not in OBJECTIVE_METRICS:
                raise ValueError(
                    f"{metric!r} cannot be an objective; allowed: {', '.join(OBJECTIVE_METRICS)}"
                    + (" (test metrics are reported, never searched on)"
                       if metric.startswith("test_") else "")
                )
        return v

    @field_validator("space")
    @classmethod
    def _valid_space(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, entry in v.items():
            if key not in PARAMS:
                raise ValueError(f"unknown parameter {key!r}; allowed: {', '.join(PARAMS)}")
            param = PARAMS[key]
            if isinstance(entry, list):
                if not entry:
                    raise ValueError(f"{key}: empty list of choices")
                for value in entry:
                    param.check(key, value)
            elif isinstance(entry, RangeSpec):
                if param.kind == "choice":
                    raise ValueError(f"{key} takes a list of choices ({param.allowed()})")
                param.check(key, entry.low)
                param.check(key, entry.high)
                if entry.low >= entry.high:
                    raise ValueError(f"{key}: low={entry.low} must be below high={entry.high}")
                if entry.log and entry.low <= 0:
                    raise ValueError(f"{key}: a log range needs low > 0, got {entry.low}")
                if entry.default is not None and not entry.low <= entry.default <= entry.high:
                    raise ValueError(
                        f"{key}: default={entry.default} is outside [{entry.low}, {entry.high}]"
                    )
            else:
                param.check(key, entry)
        if not any(isinstance(e, (list, RangeSpec)) for e in v.values()):
            fixed = ", ".join(f"{k}={e}" for k, e in v.items())
            raise ValueError(f"nothing to search: every parameter is fixed ({fixed}); give at "
                             "least one a list of choices or a {low, high} range")
        return v

    @model_validator(mode="after")
    def _valid_points(self) -> SearchSpace:
        """Warm-start points must lie inside the space: listed choices, ranges, fixed values."""
        for point in self.warm_start:
            for key, value in validate_config(point).items():
                entry = self.space.get(key)
                value_ok = (
                    entry is None
                    or (isinstance(entry, list) and value in entry)
                    or (isinstance(entry, RangeSpec) and entry.low <= value <= entry.high)
                    or (not isinstance(entry, (list, RangeSpec)) and value == entry)
                )
                if not value_ok:
                    allowed = (f"[{entry.low}, {entry.high}]" if isinstance(entry, RangeSpec)
                               else entry)
                    raise ValueError(f"warm_start: {key}={value!r} is outside the space; "
                                     f"allowed: {allowed}")
        return self

    @model_validator(mode="after")
    def _model_builds(self) -> SearchSpace:
        """Catch a misspelt model argument now, not after the dataset has loaded."""
        try:
            build_model(self.model.name, 4, 2, **self.model.kwargs)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model.kwargs: {err}") from None
        return self

    @property
    def task_spec(self) -> TaskSpec:
        return TASKS[self.task]

    @model_validator(mode="after")
    def _data_and_model_fit_task(self) -> SearchSpace:
        """Loader, split, dataset settings and model as the task's spec allows them."""
        self.task_spec.check_dataset(self.dataset.as_dict())
        self.task_spec.check_model(self.model.name)
        return self

    @model_validator(mode="after")
    def _objectives_fit_task(self) -> SearchSpace:
        """A validation objective must be a score this task computes (e.g. no val_acc for
        link prediction)."""
        scores = self.task_spec.metrics(self.dataset.as_dict()).scores
        for metric in self.objectives:
            if metric.startswith("val_") and metric not in scores:
                raise ValueError(f"objective {metric!r} is not a score of task {self.task!r} "
                                 f"here; allowed: {', '.join(sorted(scores))}")
        return self

    @model_validator(mode="after")
    def _methods_fit(self) -> SearchSpace:
        """Methods the task or model cannot run (A2Q on new graphs, structured pruning of a
        model whose channels it does not know) are refused in choices and warm-start points."""
        transductive = self.task_spec.transductive
        for key in ("prune.method", "quant.method"):
            entry = self.space.get(key)
            for value in entry if isinstance(entry, list) else [entry] if entry else []:
                try:
                    check_fit({key: value}, transductive, self.model.name)
                except ValueError as err:
                    raise ValueError(f"space.{key}: {err}") from None
        for point in self.warm_start:
            check_fit(point, transductive, self.model.name)
        return self

    # ---- what the search and the trial command use -------------------------------------

    @property
    def metrics(self) -> list[str]:
        return list(self.objectives)

    @property
    def modes(self) -> list[str]:
        return list(self.objectives.values())

    def allows(self, config: dict[str, Any]) -> bool:
        """Whether this task and model can run ``config``'s methods (A2Q needs a fixed graph,
        structured pruning a model whose channels it knows)."""
        try:
            check_fit(config, self.task_spec.transductive, self.model.name)
        except ValueError:
            return False
        return True

    @property
    def reported(self) -> list[str]:
        """Test metrics the task reports beside the objectives (never searched on)."""
        return list(self.task_spec.metrics(self.dataset.as_dict()).reported)

    def define_by_run(self, trial) -> dict[str, Any]:
        """Suggest one configuration on an Optuna trial; returns the fixed (constant) values.

        Pure function of the trial: parameters in :data:`PARAMS` order so that conditions
        see the choices they depend on.
        """
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for key in PARAMS:
            if key not in self.space or not is_active(key, chosen):
                continue
            entry = self.space[key]
            if isinstance(entry, list):
                chosen[key] = trial.suggest_categorical(key, entry)
            elif isinstance(entry, RangeSpec):
                if PARAMS[key].kind == "int":
                    chosen[key] = trial.suggest_int(key, int(entry.low), int(entry.high),
                                                    log=entry.log)
                else:
                    chosen[key] = trial.suggest_float(key, entry.low, entry.high, log=entry.log)
            else:
                chosen[key] = constants[key] = entry
        return constants

    def warm_start_points(self, baseline: bool = True) -> list[dict[str, Any]]:
        """Points Optuna evaluates first: the uncompressed model (no pruning, FP32) when the
        space allows it, then the file's ``warm_start`` points; searched keys only (the rest
        is sampled)."""
        searched = {k for k, e in self.space.items() if isinstance(e, (list, RangeSpec))}
        points = []
        if baseline:
            point = {"prune.method": "none", "quant.method": "fp32"}
            if all(k in searched and v in self.space[k] for k, v in point.items()):
                points.append(point)
        for point in self.warm_start:
            points.append({k: PARAMS[k].check(k, v) for k, v in point.items() if k in searched})
        return [p for p in points if p]

    def defaults(self) -> dict[str, Any]:
        """One configuration from the file alone: first choice, range default (else the
        middle, geometric for log ranges), fixed values."""
        return validate_config(self._all_defaults())

    def _all_defaults(self) -> dict[str, Any]:
        """A default for every parameter in the file, active or not."""
        config: dict[str, Any] = {}
        for key in PARAMS:
            if key not in self.space:
                continue
            entry = self.space[key]
            if isinstance(entry, list):
                value = entry[0]
            elif isinstance(entry, RangeSpec):
                if entry.default is not None:
                    value = entry.default
                elif entry.log:
                    value = math.sqrt(entry.low * entry.high)
                else:
                    value = (entry.low + entry.high) / 2
                if PARAMS[key].kind == "int":
                    value = round(value)
            else:
                value = entry
            config[key] = value
        return config

    def with_overrides(self, overrides: dict[str, str]) -> dict[str, Any]:
        """The defaults with ``key=value`` overrides, checked against what each method
        allows (not against the search range). An override that does not apply under the
        other choices (``quant.bits`` with ``quant.method=fp32``) is an error."""
        for key in overrides:
            if key not in PARAMS:
                raise SpaceError(f"unknown parameter {key!r}; allowed: {', '.join(PARAMS)}")
        merged = {**self._all_defaults(), **overrides}
        try:
            config = validate_config(merged)
        except ValueError as err:
            raise SpaceError(str(err)) from None
        for key in overrides:
            if key not in config:
                raise SpaceError(f"{key}={overrides[key]} does not apply with " + ", ".join(
                    f"{k}={v}" for k, v in config.items() if k.split(".")[0] ==
                    key.split(".")[0] and k.endswith(".method")))
        return config


def bundled_spaces() -> dict[str, Path]:
    """Space files shipped with the package, by name (file stem)."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.yaml"))}


def resolve_space_path(space: str | os.PathLike) -> Path:
    """A path to a space file, or the name of a bundled one (``cora_node``)."""
    path = Path(space).expanduser()
    if path.is_file():
        return path.resolve()
    bundled = bundled_spaces()
    if str(space) in bundled:
        return bundled[str(space)]
    raise SpaceError(
        f"space file {str(space)!r} not found; give a path or one of: {', '.join(bundled)}"
    )


def _format_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"] if not str(part).startswith(("list[",
                                                                                  "function")))
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{path}: {key + ': ' if key else ''}{msg}{shown}"


def load_space(space: str | os.PathLike) -> SearchSpace:
    """Read and validate a space file (path or bundled name)."""
    path = resolve_space_path(space)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: malformed YAML: {err}; expected a YAML mapping of task, "
                         "dataset, model, objectives and space (README, 'Space files')"
                         .replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with task, dataset, model, objectives, space")
    try:
        return SearchSpace(**raw, source=str(path))
    except ValidationError as err:
        raise SpaceError(_format_error(path, err)) from None
