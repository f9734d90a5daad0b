"""What a scenario may say, read off the pydantic models: ``flsim list --details`` and ``flsim schema``.

Both read the models the loader validates against, so what they print cannot drift from
what ``flsim validate`` accepts: a parameter added to an algorithm's ``Config`` shows up in
its details and in the editor's completion without anyone editing a table by hand. They read
every part's models, so they live in the face, next to the CLI that prints them.
"""

from __future__ import annotations

import json
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _type_name(annotation: Any) -> str:
    """``float``, ``int | None``, ``'samples' | 'uniform'``: the annotation as a reader writes it.

    Constraints (``PositiveInt``'s ``> 0``) are left to the description and to ``flsim schema``.
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> Any:
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    value = None if value is PydanticUndefined else value
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One row per field: name, type, default (``required`` when there is none), description."""
    rows = []
    for name, field in model.model_fields.items():
        required = field.is_required()
        rows.append(
            {
                "name": name,
                "type": _type_name(field.annotation),
                "default": "required" if required else _default(field),
                "description": (field.description or "").strip().splitlines()[0] if field.description else "",
            }
        )
    return rows


def catalogue() -> dict[str, dict[str, type[BaseModel]]]:
    """Every registered algorithm's, dataset's and study's parameter model, by kind and name.

    Datasets share :class:`~flsim.config.schema.TaskConfig`; their own ``dataset_params`` have
    no model (``flsim.tasks.params`` reads them key by key), so they are not listed.
    """
    from flsim.algorithms import REGISTRY
    from flsim.config.schema import TaskConfig
    from flsim.studies.spec import load_builtin_studies
    from flsim.tasks import DATASETS

    return {
        "algorithms": {name: REGISTRY[name].Config for name in sorted(REGISTRY)},
        "datasets": dict.fromkeys(sorted(DATASETS), TaskConfig),
        "studies": {name: spec.params for name, spec in sorted(load_builtin_studies().items())},
    }


def details(name: str | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``kind → name → parameter rows``, for every entry or only those called ``name``."""
    found = {
        kind: {entry: parameters(model) for entry, model in entries.items() if name in (None, entry)}
        for kind, entries in catalogue().items()
    }
    return {kind: entries for kind, entries in found.items() if entries}


def format_details(listing: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Plain text: one block per entry, one line per parameter."""
    lines = []
    for kind, entries in listing.items():
        for entry, rows in entries.items():
            lines.append(f"{entry} ({kind[:-1] if kind != 'studies' else 'study'})")
            width = max((len(r["name"]) for r in rows), default=0)
            for r in rows:
                default = (
                    r["default"] if r["default"] == "required" else json.dumps(r["default"], default=str)
                )
                text = f"  {r['name']:<{width}}  {r['type']} = {default}"
                lines.append(f"{text}  # {r['description']}" if r["description"] else text)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _algorithm_schema(name: str, model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    """One algorithm's hyperparameters, with ``name`` pinned so an editor picks the right branch."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    schema["properties"]["name"] = {"const": name, "description": f"the {name} algorithm"}
    schema["title"] = f"algorithm: {name}"
    schema["required"] = sorted({"name", *schema.get("required", [])})
    return schema


def scenario_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a scenario file, algorithm hyperparameters included.

    The compression and topology sections come from the models their parts registered
    (:mod:`flsim.config.sections`), so the parts are loaded first.
    """
    from flsim.algorithms import REGISTRY
    from flsim.config.schema import Scenario
    from flsim.config.sections import embed_section_schemas
    from flsim.scenario import load_parts

    load_parts()
    schema = embed_section_schemas(Scenario.model_json_schema(ref_template="#/$defs/{model}"), Scenario)
    defs = schema["$defs"]
    branches = [_algorithm_schema(name, REGISTRY[name].Config, defs) for name in sorted(REGISTRY)]
    algorithm = schema["properties"]["algorithm"]
    schema["properties"]["algorithm"] = {"description": algorithm.get("description", ""), "anyOf": branches}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
