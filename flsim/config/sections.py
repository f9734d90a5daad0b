"""Registries through which the parts that own a scenario section validate it.

The generic schema (:mod:`flsim.config.schema`) knows the shape of a scenario but not what
an algorithm, a study, a topology or a compressor accepts: those belong to the parts that
implement them, and config sits below every part, so it may not import them. Instead each
part fills one of two registries when it is imported:

- :func:`register_section` gives a section's pydantic model. The scenario field marked
  ``OwnedSection(name)`` is parsed by that model (``scenario.topology.kind`` stays typed),
  pydantic's errors keep their dotted keys, and ``flsim schema`` embeds the model.
- :func:`register_check` gives a check that needs the whole validated scenario (an
  algorithm's hyperparameters against its ``name``, a dataset's parameters, a section that
  the algorithm's mode ignores). :func:`run_checks` runs them after the schema.

Which parts are imported is decided above config (the face's scenario loader imports the
built-in ones, plugins add theirs). A section or check that nobody registered is a
programming error and raises :class:`SectionNotRegistered`, never a silent pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

if TYPE_CHECKING:
    from flsim.config.schema import Scenario

#: A check of a validated scenario; it raises ConfigError (or ConfigErrors) naming the key.
ScenarioCheck = Callable[["Scenario"], None]

#: The checks each scenario kind must go through after the schema, in this order, so that of
#: several errors the same one is reported first. Checks registered under other names (a
#: feature's or a plugin's) run after these, by name: import order never changes which error
#: a scenario reports.
REQUIRED_CHECKS: dict[str, tuple[str, ...]] = {
    "federated": ("algorithm", "task", "mode", "topology"),
    "study": ("study",),
}


class SectionNotRegistered(RuntimeError):
    """A scenario was validated before the part owning one of its sections was imported."""


@dataclass(frozen=True)
class _Check:
    check: ScenarioCheck
    kinds: tuple[str, ...]


_MODELS: dict[str, type[BaseModel]] = {}
_CHECKS: dict[str, _Check] = {}


def register_section(name: str, model: type[BaseModel]) -> None:
    """Parse the scenario's ``name`` section with ``model`` (idempotent for the same model)."""
    if _MODELS.get(name, model) is not model:
        raise ValueError(f"section {name!r} is owned by {_MODELS[name].__qualname__} already")
    _MODELS[name] = model


def register_check(name: str, check: ScenarioCheck, kinds: tuple[str, ...] = ("federated",)) -> None:
    """Run ``check`` on every validated scenario whose ``kind`` is in ``kinds``.

    A name has one owner: the same function registered again (a module reloaded) replaces
    itself, another function under a taken name is refused.
    """
    taken = _CHECKS.get(name)
    if taken is not None and _origin(taken.check) != _origin(check):
        raise ValueError(f"scenario check {name!r} is registered by {'.'.join(_origin(taken.check))} already")
    _CHECKS[name] = _Check(check, kinds)


def _origin(function: ScenarioCheck) -> tuple[str, str]:
    return (getattr(function, "__module__", "?"), getattr(function, "__qualname__", "?"))


def section_model(name: str) -> type[BaseModel]:
    """The model registered for section ``name``."""
    try:
        return _MODELS[name]
    except KeyError:
        raise SectionNotRegistered(
            f"no part registered the scenario section {name!r}: load scenarios through "
            "flsim.scenario.load_scenario, which imports the parts first"
        ) from None


def parse_section(name: str, value: Any, optional: bool = False) -> BaseModel | None:
    """``value`` as the section's model; pydantic errors keep their location inside it.

    ``None`` stays ``None`` for an optional section (the scenario leaves it out).
    """
    if value is None and optional:
        return None
    model = section_model(name)
    return value if isinstance(value, model) else model.model_validate(value)


def run_checks(scenario: Scenario) -> None:
    """Run the required checks of the scenario's kind in order, then every other one by name."""
    required = REQUIRED_CHECKS.get(scenario.kind, ())
    missing = [name for name in required if name not in _CHECKS]
    if missing:
        raise SectionNotRegistered(
            f"no part registered the scenario check(s) {missing}: load scenarios through "
            "flsim.scenario.load_scenario, which imports the parts first"
        )
    extra = sorted(name for name in _CHECKS if name not in required)
    for name in [*required, *extra]:
        if scenario.kind in _CHECKS[name].kinds:
            _CHECKS[name].check(scenario)


class OwnedSection:
    """Marks a scenario field as parsed by the model its owning part registered.

    Used as ``Annotated[Any, OwnedSection("compression")]``; validation calls
    :func:`parse_section`. The generic JSON Schema leaves the section open (config does not
    know the model); :func:`embed_section_schemas` puts the registered models in once the
    parts are loaded, which is what ``flsim schema`` prints.
    """

    def __init__(self, name: str, optional: bool = False) -> None:
        self.name = name
        self.optional = optional

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            lambda value: parse_section(self.name, value, self.optional)
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"description": f"the {self.name} section, as the part that owns it defines it"}


def embed_section_schemas(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema ``schema`` with each owned section's registered model in place.

    A section reads ``{"$ref": "#/$defs/<Model>"}`` (or that or ``null`` when optional), and
    the model with its own definitions joins ``$defs``, as if the schema had embedded it.
    """
    defs = schema.setdefault("$defs", {})
    for field, info in model.model_fields.items():
        owned = next((meta for meta in info.metadata if isinstance(meta, OwnedSection)), None)
        if owned is None:
            continue
        section = section_model(owned.name)
        section_schema = section.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(section_schema.pop("$defs", {}))
        defs[section.__name__] = section_schema
        ref = {"$ref": f"#/$defs/{section.__name__}"}
        optional = {"anyOf": [ref, {"type": "null"}], "default": None}
        schema["properties"][field] = optional if owned.optional else ref
    schema["$defs"] = dict(sorted(defs.items()))
    return schema
