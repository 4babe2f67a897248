"""A hook's resume form, built from the JSON Schema the hook stored, and the payload a
submitted form stands for.

An object schema gets one input per property: text for strings, a number box for numbers
and integers, a checkbox for booleans, a select for enums (also behind ``$ref`` and
``Optional[...]``), and a JSON text area for anything else (lists, nested objects). A hook
without a schema, or with one that is not an object, gets one JSON text area for the
whole payload. The payload is then validated by the library, as any delivery is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Widget = Literal["text", "number", "integer", "checkbox", "select", "json"]

#: Form field names: one prefix for properties, so none can clash with ``csrf_token``.
PREFIX = "field."
RAW = "payload_json"


class FormError(ValueError):
    """The form cannot stand for a payload: ``problems`` says where and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Field:
    """One input of the form."""

    name: str
    label: str
    widget: Widget
    required: bool = False
    description: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)  # (JSON value, label)

    @property
    def input_name(self) -> str:
        return PREFIX + self.name


def form_fields(schema_text: str | None) -> list[Field] | None:
    """The inputs of a hook's form, or ``None`` for one JSON text area."""
    try:
        schema = json.loads(schema_text) if schema_text else None
    except ValueError:
        return None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return None
    required = set(schema.get("required") or [])
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return [
        _field(name, _resolve(spec, defs), name in required)
        for name, spec in properties.items()
        if isinstance(spec, dict)
    ]


def _resolve(spec: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` and unwrap ``anyOf [X, null]`` (an optional field)."""
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        merged = {**defs[ref.rsplit("/", 1)[-1]], **{k: v for k, v in spec.items() if k != "$ref"}}
        return _resolve(merged, defs)
    branches = spec.get("anyOf")
    if isinstance(branches, list):
        concrete = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
        if len(concrete) == 1:
            rest = {k: v for k, v in spec.items() if k != "anyOf"}
            return _resolve({**concrete[0], **rest}, defs)
    return spec


def _field(name: str, spec: dict[str, Any], required: bool) -> Field:
    label = str(spec.get("title") or name)
    description = str(spec.get("description") or "")
    choices = spec.get("enum") if isinstance(spec.get("enum"), list) else None
    if choices is None and "const" in spec:
        choices = [spec["const"]]
    if choices is not None:
        options = [(json.dumps(v), v if isinstance(v, str) else json.dumps(v)) for v in choices]
        return Field(name, label, "select", required, description, options)
    widgets: dict[Any, Widget] = {
        "string": "text",
        "number": "number",
        "integer": "integer",
        "boolean": "checkbox",
    }
    return Field(name, label, widgets.get(spec.get("type"), "json"), required, description)


def payload_from(fields: list[Field] | None, form: Mapping[str, str]) -> Any:
    """The payload a submitted form stands for (a non-empty raw JSON text area wins).

    Raises:
        FormError: a value is not of its input's kind (``"abc"`` for a number, bad JSON).
    """
    raw = form.get(RAW, "").strip()
    if raw or fields is None:
        return _json(raw or "null", "payload")
    payload: dict[str, Any] = {}
    problems: list[str] = []
    for spec in fields:
        text = form.get(spec.input_name, "")
        if spec.widget == "checkbox":
            payload[spec.name] = text not in ("", "false", "off")
            continue
        if not text.strip() and spec.widget != "text":
            if spec.required:
                problems.append(f"{spec.label}: a value is needed")
            continue
        if not text and not spec.required:
            continue
        try:
            payload[spec.name] = _value(spec, text)
        except FormError as exc:
            problems.extend(exc.problems)
    if problems:
        raise FormError(problems)
    return payload


def _value(spec: Field, text: str) -> Any:
    if spec.widget == "text":
        return text
    if spec.widget in ("select", "json"):
        return _json(text, spec.label)
    try:
        return int(text) if spec.widget == "integer" else _number(text)
    except ValueError:
        kind = "a whole number" if spec.widget == "integer" else "a number"
        raise FormError([f"{spec.label}: {text!r} is not {kind}"]) from None


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        number = float(text)
    if not math.isfinite(number):  # JSON has no NaN or infinity
        raise ValueError(text)
    return number


def _json(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FormError([f"{label}: not valid JSON ({exc})"]) from None
