"""Where the values passed between steps are stored: JSON, never pickles.

The values are small references and records (a :class:`~retrain_assets.core.delta.TableRef`, a
:class:`~retrain_assets.core.registry.ModelRef`, what validation found, the evaluation report, dicts and
lists of numbers and strings); the data itself lives in Delta and the models in MLflow. Dagster's default IO
managers pickle them, and loading a pickle runs whatever code it names, so anyone able to write the storage
could run code on the orchestrator through re-execution. Here a stored value is plain JSON; the only objects
it can turn back into are the dataclasses listed in :data:`STORED_TYPES`, field by field. Locally the files
sit under ``<dagster home>/storage``; with the lake on S3, under ``<prefix>/dagster`` through dagster-aws's S3
resource (:mod:`retrain_assets.defs.s3_io_manager`, imported only then: dagster-aws takes most of a second
to import).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Union

from dagster import ConfigurableIOManager, InputContext, OutputContext

from retrain_assets.core.batches import ValidatedBatches
from retrain_assets.core.decision import Decision, EvaluationReport
from retrain_assets.core.delta import TableRef
from retrain_assets.core.monitoring import Finding
from retrain_assets.core.registry import ModelRef
from retrain_assets.core.statefiles import write_atomic

# The only classes a stored value can be decoded into; anything else is refused when it is stored.
STORED_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (TableRef, ModelRef, ValidatedBatches, Finding, EvaluationReport, Decision)
}
TYPE_KEY = "__retrain_type__"
SUFFIX = ".json"


def encode(value: Any, what: str) -> bytes:
    """``value`` as JSON; ``what`` names the output in the error for a type JSON cannot hold faithfully."""

    def known(obj: Any) -> Any:
        name = type(obj).__name__
        if STORED_TYPES.get(name) is type(obj) and dataclasses.is_dataclass(obj):
            return {TYPE_KEY: name, **{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}}
        if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():  # numpy scalar
            return obj.item()
        raise TypeError(
            f"{what}: a {type(obj).__module__}.{name} cannot be stored between steps; the IO manager stores JSON "
            f"values and only these classes: {', '.join(sorted(STORED_TYPES))}"
        )

    return json.dumps(value, default=known).encode()


def decode(payload: bytes, what: str) -> Any:
    """The value :func:`encode` stored; an unknown type tag or a field that does not belong is refused."""

    def rebuild(obj: dict) -> Any:
        if TYPE_KEY not in obj:
            return obj
        name = obj.pop(TYPE_KEY)
        cls = STORED_TYPES.get(name)
        if cls is None:
            raise ValueError(f"{what}: the stored value names the type {name!r}, not one the IO manager stores")
        try:
            return cls(**obj)
        except TypeError as exc:
            raise ValueError(f"{what}: the stored {name} does not match its fields: {exc}") from None

    try:
        return json.loads(payload, object_hook=rebuild)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not a JSON value the IO manager wrote ({exc})") from None


def _key(context: Union[InputContext, OutputContext]) -> list[str]:
    """The storage path of an output: its asset key (and partition) for assets, run and step for ops."""
    if context.has_asset_key:
        return list(context.get_asset_identifier())
    if isinstance(context, InputContext) and context.upstream_output is not None:
        return list(context.upstream_output.get_identifier())
    return list(context.get_identifier())


class JsonIOManager(ConfigurableIOManager):
    """Stores each value with :func:`encode` and loads it with :func:`decode`; subclasses say where."""

    def _write(self, parts: list[str], payload: bytes) -> str:
        raise NotImplementedError

    def _read(self, parts: list[str]) -> bytes:
        raise NotImplementedError

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        parts = _key(context)
        where = self._write(parts, encode(obj, "/".join(parts)))
        context.add_output_metadata({"stored_at": where})

    def load_input(self, context: InputContext) -> Any:
        parts = _key(context)
        return decode(self._read(parts), "/".join(parts))


class LocalJsonIOManager(JsonIOManager):
    """Values as JSON files under ``base_dir``, each replaced whole (:func:`statefiles.write_atomic`)."""

    base_dir: str

    def _path(self, parts: list[str]) -> Path:
        return Path(self.base_dir, *parts[:-1], parts[-1] + SUFFIX)

    def _write(self, parts: list[str], payload: bytes) -> str:
        path = self._path(parts)
        write_atomic(path, payload.decode())
        return str(path)

    def _read(self, parts: list[str]) -> bytes:
        path = self._path(parts)
        if not path.is_file():
            raise FileNotFoundError(f"no stored value for {'/'.join(parts)} at {path}")
        return path.read_bytes()
