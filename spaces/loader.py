"""Load a YAML space file into a validated :class:`SearchSpace`.

A ``space`` entry is a list (categorical choices), a mapping ``{low, high, log, default}``
(a numeric range) or a scalar (fixed). Conditions between parameters are the fixed rules of
:func:`trainables.params.is_active`: ``prune.sparsity`` only when pruning, ``quant.bits`` only
when quantizing.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from spaces.samplers import DEFAULT_SAMPLER, SAMPLERS, SEED_MAX
from trainables.data import LOADERS
from trainables.errors import first_line, shown
from trainables.metrics import OBJECTIVE_METRICS
from trainables.model_check import check_model_on_task
from trainables.models import (
    build_model,
    check_kwargs,
    class_path,
    import_class,
    is_builtin,
    model_class,
    model_label,
)
from trainables.params import PARAMS, check_fit, is_active, validate_config
from trainables.paths import check_length
from trainables.sources import PYG, describe
from trainables.tasks import TASKS, TaskSpec

BUNDLED_DIR = Path(__file__).parent


class SpaceError(ValueError):
    """A space file is missing, malformed or asks for something not allowed."""


def _known(value: str, registry, what: str) -> str:
    """``value`` if ``registry`` has it, else an error naming it and what is allowed."""
    if value not in registry:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(registry)}")
    return value


def _culprit(model: str, kwargs: dict[str, Any]) -> str:
    """The argument(s) a model cannot be built with: the first that fails alone, else all."""
    for key, value in kwargs.items():
        try:
            build_model(model, 4, 2, **{key: value})
        except (RuntimeError, ValueError, TypeError):
            return f"{key}={shown(value)}"
    return ", ".join(f"{k}={shown(v)}" for k, v in kwargs.items())


def _not_bool(kind: str):
    """A validator refusing YAML's ``true``/``false`` where a ``kind`` of number is expected
    (pydantic would read ``true`` as 1)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(f"bool_not_{kind}", "a number is expected")
        return value

    return BeforeValidator(check)


Whole = Annotated[int, _not_bool("whole")]
Number = Annotated[float, _not_bool("number")]


class _Strict(BaseModel):
    # unknown keys are errors; .nan and .inf are no settings (a nan range, an inf weight decay)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetSpec(_Strict):
    """Which data and how it is split; fields a task does not use stay unset (None).

    The source is a ``loader`` with a ``name`` (``pyg``: a ``class`` too), or a ``function``
    by import path; ``kwargs`` go to the pyg class or the function
    (:mod:`trainables.sources` checks which combinations make one source)."""

    # ``class`` in a file, ``class_`` in Python (a model_dump() builds the spec again)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    loader: str | None = None
    name: str | None = None
    class_: str | None = Field(None, alias="class")  # loader pyg: a torch_geometric class
    function: str | None = None  # "package.module:function" returning the data
    kwargs: dict[str, Any] | None = None  # to the function or the pyg class
    split: str | None = None  # default: the task's first (its TaskSpec's splits)
    num_val: Whole | None = Field(None, ge=1)  # node classification, random split
    num_test: Whole | None = Field(None, ge=1)
    val_ratio: Number | None = Field(None, gt=0, lt=1)  # link prediction, graph classification
    test_ratio: Number | None = Field(None, gt=0, lt=1)
    folds: Whole | None = Field(None, ge=2, le=100)  # graph classification, split: kfold
    metric: Literal["acc", "roc_auc"] | None = None  # graph classification: what val_ scores
    batch_size: Whole | None = Field(None, ge=1)  # graph classification
    subgraphs: Whole | None = Field(None, ge=1, le=64)  # link prediction: NESS static subgraphs
    normalize_features: StrictBool | None = None  # every task: rows of x sum to 1
    node_attributes: StrictBool | None = None  # graph classification (tu): attributes too

    def as_dict(self) -> dict[str, Any]:
        """The settings given, as the file names them (unset ones left out, so they do not
        enter cache keys)."""
        return self.model_dump(exclude_none=True, by_alias=True)

    @property
    def label(self) -> str:
        """The data in a few words (its name, class or function), for logs."""
        return describe(self.as_dict())

    @field_validator("loader")
    @classmethod
    def _known_loader(cls, v: str) -> str:
        return _known(v, (*LOADERS, PYG), "loader")


class ModelSpec(_Strict):
    """A registered model (``name``: built-in or an installed plugin's) or a user's class by
    import path (``class: package.module:Class``), and its constructor's ``kwargs``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    name: str | None = None
    class_: str | None = Field(None, alias="class")
    kwargs: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        model_class({"name": v})  # a built-in or an installed plugin's name
        return v

    @field_validator("class_")
    @classmethod
    def _importable(cls, v: str) -> str:
        import_class(v)  # importable, and an nn.Module subclass
        return v

    @model_validator(mode="after")
    def _one_model(self) -> ModelSpec:
        if self.name is not None and self.class_ is not None:
            raise ValueError(f"give name or class, not both (name {self.name!r}, class "
                             f"{self.class_!r})")
        if self.name is None and self.class_ is None:
            raise ValueError("missing key 'name' (a registered model) or 'class' (an import "
                             "path such as my_pkg.models:SAGE)")
        return self

    @property
    def label(self) -> str:
        """How messages name the model: its name or its import path."""
        return model_label(self.as_dict())

    @property
    def builtin(self) -> bool:
        return is_builtin(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The spec as the baseline cache key and the model file record it:
        ``{"name", "kwargs"}`` or ``{"class", "kwargs"}``."""
        key = {"class": self.class_} if self.class_ is not None else {"name": self.name}
        return {**key, "kwargs": dict(self.kwargs)}

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, Any]:
        return self.as_dict()


class BaselineSpec(_Strict):
    epochs: Whole = Field(200, ge=1)
    lr: Number = Field(0.01, gt=0)
    weight_decay: Number = Field(5e-4, ge=0)
    seed: Whole = Field(0, ge=0, le=SEED_MAX)


class RangeSpec(_Strict):
    low: Number
    high: Number
    log: StrictBool = False
    default: Number | None = None


class SearchSpace(_Strict):
    """A validated space file."""

    task: str
    dataset: DatasetSpec
    model: ModelSpec
    baseline: BaselineSpec = BaselineSpec()
    objectives: dict[str, Literal["max", "min"]]
    sampler: str = DEFAULT_SAMPLER
    space: dict[str, list[Any] | RangeSpec | bool | str | int | float]  # bool: kept as written
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
            fixed = ", ".join(f"{k}={e if isinstance(e, str) else shown(e)}"
                              for k, e in v.items())
            raise ValueError(f"nothing to search: every parameter is fixed ({fixed}); give at "
                             "least one a list of choices or a {low, high} range")
        return v

    @model_validator(mode="after")
    def _valid_points(self) -> SearchSpace:
        """Warm-start points must lie inside the space: listed choices, ranges, fixed values."""
        for i, point in enumerate(self.warm_start):
            try:
                checked = validate_config(point)
            except ValueError as err:
                raise ValueError(f"warm_start[{i}]: {err}") from None
            for key, value in checked.items():
                entry = self.space.get(key)
                value_ok = (
                    entry is None
                    or (isinstance(entry, list) and value in entry)
                    or (isinstance(entry, RangeSpec) and entry.low <= value <= entry.high)
                    or (not isinstance(entry, (list, RangeSpec)) and value == entry)
                )
                if not value_ok:
                    allowed = (f"[{entry.low}, {entry.high}]" if isinstance(entry, RangeSpec)
                               else shown(entry))
                    raise ValueError(f"warm_start: {key}={shown(value)} is outside the space; "
                                     f"allowed: {allowed}")
        return self

    @model_validator(mode="after")
    def _model_builds(self) -> SearchSpace:
        """Catch a misspelt model argument now, not after the dataset has loaded: a built-in
        is built small (4 features, 2 classes); a user's class is checked by its constructor's
        signature here and built on the real data before the search starts
        (:func:`trainables.model_check.check_model_on_task`)."""
        if not self.model.builtin:
            try:
                check_kwargs(self.model.as_dict(), self.model.kwargs)
            except ValueError as err:
                raise ValueError(f"model.kwargs: {err}") from None
            return self
        try:
            build_model(self.model.name, 4, 2, **self.model.kwargs)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model.kwargs: {err}") from None
        except RuntimeError as err:  # torch refusing a size, e.g. hidden: -5
            raise ValueError(f"model.kwargs: model {self.model.name!r} cannot be built with "
                             f"{_culprit(self.model.name, self.model.kwargs)} ({first_line(err)})"
                             "; give it a value the model accepts") from None
        return self

    @property
    def task_spec(self) -> TaskSpec:
        return TASKS[self.task]

    @model_validator(mode="after")
    def _data_and_model_fit_task(self) -> SearchSpace:
        """Loader, split, dataset settings and model as the task's spec allows them."""
        self.task_spec.check_dataset(self.dataset.as_dict())
        if self.model.builtin:  # a user's class: the forward on the real data decides
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
        model with a layer it cannot prune) are refused in choices and warm-start points."""
        transductive = self.task_spec.transductive
        for key in ("prune.method", "quant.method"):
            entry = self.space.get(key)
            for value in entry if isinstance(entry, list) else [entry] if entry else []:
                try:
                    check_fit({key: value}, transductive, self._structured)
                except ValueError as err:
                    raise ValueError(f"space.{key}: {err}") from None
        for point in self.warm_start:
            check_fit(point, transductive, self._structured)
        return self

    def _structured(self) -> str | None:
        """Why structured pruning cannot run on this model (None: it can)."""
        from trainables.structured import registered_support

        return registered_support(self.task, self.model.as_dict())

    # ---- what the search and the trial command use -------------------------------------

    def import_paths(self) -> list[str]:
        """The user's code this space imports (``package.module:name``): the model's class
        (a plugin's resolved to its class) and the dataset's function; none for built-ins."""
        paths = []
        if not self.model.builtin:
            paths.append(self.model.class_ or class_path(model_class(self.model.as_dict())))
        if self.dataset.function is not None:
            paths.append(self.dataset.function)
        return paths

    def check_on_data(self, task) -> None:
        """A user's class (or a plugin's) built at the loaded ``task``'s sizes and run once
        on its real inputs (:func:`~trainables.model_check.check_model_on_task`), before any
        baseline, Ray or tracking work; built-ins fit the tasks their specs list."""
        if self.model.builtin:
            return
        try:
            check_model_on_task(self.model.as_dict(), self.task, task)
        except ValueError as err:
            raise SpaceError(f"{self.source}: {err}") from None

    @property
    def metrics(self) -> list[str]:
        return list(self.objectives)

    @property
    def modes(self) -> list[str]:
        return list(self.objectives.values())

    def allows(self, config: dict[str, Any]) -> bool:
        """Whether this task and model can run ``config``'s methods (A2Q needs a fixed graph,
        structured pruning a model whose layers it can prune)."""
        try:
            check_fit(config, self.task_spec.transductive, self._structured)
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
    try:
        check_length(space, "--space")
    except ValueError as err:
        raise SpaceError(str(err)) from None
    path = Path(space).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise SpaceError(f"space file {str(space)!r} is a folder; give a YAML space file in it, "
                         "or the name of a bundled one")
    bundled = bundled_spaces()
    if str(space) in bundled:
        return bundled[str(space)]
    raise SpaceError(
        f"space file {str(space)!r} not found; give a path or one of: {', '.join(bundled)}"
    )


# What a mapping at a key looks like, for "expected a mapping" errors.
EXAMPLES = {
    "dataset": "{loader: planetoid, name: Cora}",
    "model": "{name: gcn, kwargs: {hidden: 16}}",
    "model.kwargs": "{hidden: 16}",
    "baseline": "{epochs: 200, lr: 0.01}",
    "objectives": "{val_acc: max, size_bytes: min}",
    "space": "{prune.method: [global, none], prune.sparsity: {low: 0.3, high: 0.9}}",
    "warm_start": "[{prune.method: global, prune.sparsity: 0.8}]",
}
BYTE_ORDER_MARKS = (  # longest first: UTF-32's little-endian mark starts like UTF-16's
    (b"\xff\xfe\x00\x00", "UTF-32 byte-order mark"),
    (b"\x00\x00\xfe\xff", "UTF-32 byte-order mark"),
    (b"\xff\xfe", "UTF-16 byte-order mark"),
    (b"\xfe\xff", "UTF-16 byte-order mark"),
)


class _SpaceYAML(yaml.SafeLoader):
    """YAML's safe loader, except that a key written twice in one mapping (YAML would keep
    the last one silently) or a key that is not a name is an error naming it and its line."""

    def construct_mapping(self, node, deep=False):
        lines: dict[str, int] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                written = key_node.value if isinstance(key_node, yaml.ScalarNode) else key
                raise SpaceError(f"key {written!r} on line {line} is not a name (YAML reads it "
                                 f"as {type(key).__name__}); keys must be names such as "
                                 "prune.method: quote it to make it text")
            if key in lines:
                raise SpaceError(f"key {key!r} is written twice (lines {lines[key]} and "
                                 f"{line}); write it once (YAML would keep only the last)")
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path) -> str:
    """The file's text; a file that is not UTF-8 text is a one-line error saying what the
    file holds instead."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SpaceError(f"{path}: cannot be read ({err.strerror or err}); expected a "
                         "readable YAML space file") from None
    found = next((name for mark, name in BYTE_ORDER_MARKS if data.startswith(mark)), None)
    if found is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            found = f"byte 0x{data[err.start]:02x} at offset {err.start}"
        else:
            if "\x00" not in text:
                return text
            found = f"byte 0x00 at offset {data.index(0)}"
    raise SpaceError(f"{path}: not a UTF-8 text file ({found}); expected a YAML space file "
                     "(README, 'Space files')")


def _fields(spec: type[BaseModel]) -> list[str]:
    """The keys a space file may write for ``spec`` (``source`` is set by the loader)."""
    return [field.alias or name for name, field in spec.model_fields.items()
            if name != "source"]


def _check_names(where: str, mapping: dict, allowed: list[str]) -> None:
    """Every key of ``mapping`` is one of ``allowed``; a misspelt one names its nearest."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            raise SpaceError(f"{where + ': ' if where else ''}unknown key {key!r}; {hint}")


def _check_keys(raw: dict[str, Any]) -> None:
    """Unknown keys at the top, in ``dataset``, ``model``, ``baseline`` and in a range."""
    _check_names("", raw, _fields(SearchSpace))
    for section, spec in (("dataset", DatasetSpec), ("model", ModelSpec),
                          ("baseline", BaselineSpec)):
        if isinstance(raw.get(section), dict):
            _check_names(section, raw[section], _fields(spec))
    if isinstance(raw.get("space"), dict):
        for key, entry in raw["space"].items():
            if isinstance(entry, dict):
                _check_names(f"space.{key}", entry, _fields(RangeSpec))


def _expected(error: dict[str, Any], where: str) -> str:
    """Pydantic's complaint as what is expected at ``where``."""
    kind, ctx = error["type"], error.get("ctx") or {}
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        sign, name = bounds[kind]
        return f"expected a number {sign} {ctx[name]}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        example = EXAMPLES.get(where) or ("{prune.method: global}"
                                          if where.startswith("warm_start[") else "")
        return "expected a mapping" + (f" such as {example}" if example else "")
    if kind == "list_type":
        return "expected a list" + (f" such as {EXAMPLES[where]}" if where in EXAMPLES else "")
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    return {
        "int_type": "expected a whole number", "int_parsing": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_type": "expected a number", "float_parsing": "expected a number",
        "finite_number": "expected a finite number", "bool_not_number": "expected a number",
        "bool_not_whole": "expected a whole number",
        "bool_type": "expected true or false", "bool_parsing": "expected true or false",
        "string_type": "expected a name (text)",
    }.get(kind, error["msg"].replace("Input should be", "expected"))


def _where(loc: tuple) -> str:
    """``("warm_start", 0, "prune.method")`` -> ``warm_start[0].prune.method``."""
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif not part.startswith(("list[", "function-")):  # pydantic's validator steps
            where += f".{part}" if where else part
    return where


def _format_error(path: Path, err: ValidationError) -> str:
    """The first of pydantic's errors as one line in this project's words: the key, what is
    expected there and what was given."""
    errors = err.errors()
    first = errors[0]
    loc = first["loc"]
    if first["type"] != "value_error" and len(loc) >= 2 and loc[0] == "space":
        # A space entry is a union (choices, range, fixed value): pydantic lists one error
        # per alternative. A mapping is meant as a range: say what is wrong inside it.
        entry = first.get("input")
        inside = [e for e in errors if e["loc"][:3] == (*loc[:2], "RangeSpec")
                  and len(e["loc"]) > 3]
        if isinstance(entry, dict) and inside:
            first, loc = inside[0], ("space", loc[1], *inside[0]["loc"][3:])
        else:
            return (f"{path}: space.{loc[1]}: expected a list of choices, a {{low, high}} "
                    f"range or a single value, got {shown(entry)}")
    where = _where(loc)
    if first["type"] == "value_error":
        msg = first["msg"].removeprefix("Value error, ")
    elif first["type"] == "missing":
        parent, _, key = where.rpartition(".")
        needed = ("; a space file needs task, dataset, model, objectives and space (README, "
                  "'Space files')" if not parent else "")
        return f"{path}: {parent + ': ' if parent else ''}missing key {key!r}{needed}"
    else:
        msg = _expected(first, where)
    value = first.get("input")
    got = "" if isinstance(value, dict) and first["type"] == "value_error" else (
        f" (got {shown(value)})")
    return f"{path}: {where + ': ' if where else ''}{msg}{got}"


def load_space(space: str | os.PathLike) -> SearchSpace:
    """Read and validate a space file (path or bundled name)."""
    path = resolve_space_path(space)
    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_SpaceYAML)  # a SafeLoader
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: malformed YAML: {err}; expected a YAML mapping of task, "
                         "dataset, model, objectives and space (README, 'Space files')"
                         .replace("\n", " ")) from None
    except SpaceError as err:
        raise SpaceError(f"{path}: {err}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with task, dataset, model, objectives, space")
    try:
        _check_keys(raw)
    except SpaceError as err:
        raise SpaceError(f"{path}: {err}") from None
    try:
        return SearchSpace(**raw, source=str(path))
    except ValidationError as err:
        raise SpaceError(_format_error(path, err)) from None
