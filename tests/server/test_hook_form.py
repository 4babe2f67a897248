"""The hooks page's resume form: the inputs a stored schema gives (as hooks store it:
the Pydantic model's JSON Schema) and the payload a submitted form stands for."""

from __future__ import annotations

import json
from enum import StrEnum

import pytest
from pydantic import BaseModel

from pyworkflow.server.ui.hook_form import FormError, form_fields, payload_from
from tests.server.ui_flows import Approval


class Size(StrEnum):
    S = "s"
    M = "m"


class Order(BaseModel):
    count: int
    size: Size  # an enum behind a $ref
    lines: list[str]  # no input of its own: a JSON text area
    gift: bool = False
    discount: float | None = None  # Optional: anyOf [number, null]


def _schema(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema())


def test_one_input_per_property_of_the_kind_its_type_needs() -> None:
    fields = form_fields(_schema(Approval))
    assert fields is not None
    shown = [(f.name, f.widget, f.required) for f in fields]
    assert shown == [
        ("approved", "checkbox", True),
        ("approver", "text", True),
        ("priority", "select", False),
        ("limit_eur", "number", False),
    ]
    assert fields[1].description == "who decided"
    assert [text for _, text in fields[2].options] == ["low", "normal", "high"]


def test_refs_enums_lists_and_optionals() -> None:
    fields = form_fields(_schema(Order))
    assert fields is not None
    widgets = {f.name: f.widget for f in fields}
    assert widgets == {
        "count": "integer",
        "size": "select",
        "lines": "json",
        "gift": "checkbox",
        "discount": "number",
    }


def test_no_schema_or_no_object_schema_means_one_json_area() -> None:
    assert form_fields(None) is None
    assert form_fields('{"type": "array"}') is None
    assert form_fields("not json") is None


def test_a_form_stands_for_a_typed_payload() -> None:
    fields = form_fields(_schema(Order))
    form = {
        "field.count": "3",
        "field.size": '"m"',
        "field.lines": '["a", "b"]',
        "field.gift": "true",
        "field.discount": "",  # left empty: the model's default applies
    }
    assert payload_from(fields, form) == {
        "count": 3,
        "size": "m",
        "lines": ["a", "b"],
        "gift": True,
    }
    assert payload_from(fields, {**form, "field.gift": ""})["gift"] is False  # unchecked
    assert payload_from(fields, {**form, "field.discount": "2.5"})["discount"] == 2.5


def test_raw_json_wins_and_stands_alone_without_a_schema() -> None:
    fields = form_fields(_schema(Order))
    assert payload_from(fields, {"payload_json": '{"count": 1}'}) == {"count": 1}
    assert payload_from(None, {"payload_json": "[1, 2]"}) == [1, 2]
    assert payload_from(None, {}) is None


def test_values_that_are_not_of_their_kind_name_the_field() -> None:
    fields = form_fields(_schema(Order))
    with pytest.raises(FormError) as caught:
        payload_from(fields, {"field.count": "three", "field.lines": "[oops", "field.size": '"s"'})
    assert caught.value.problems == [
        "Count: 'three' is not a whole number",
        "Lines: not valid JSON (Expecting value: line 1 column 2 (char 1))",
    ]
    with pytest.raises(FormError, match="Discount: 'nan' is not a number"):
        payload_from(fields, {"field.count": "1", "field.lines": "[]", "field.discount": "nan"})
    with pytest.raises(FormError, match="Count: a value is needed"):
        payload_from(fields, {"field.lines": "[]"})
