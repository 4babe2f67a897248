"""Tests for pyworkflow.serialization: value encoding and exception encoding."""

from __future__ import annotations

import base64
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cloudpickle
import pytest
from pydantic import BaseModel

import pyworkflow
from pyworkflow.core.exceptions import (
    NonDeterminismError,
    RetryableError,
    SerializationError,
    StepFailedError,
)
from pyworkflow.serialization import decode, decode_error, dumps, encode, encode_error, loads
from pyworkflow.serialization.errors import ERROR_TEXT_LIMIT, truncate_text


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: int


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    items: list[Point]
    tags: frozenset[str] = frozenset()
    total: Decimal = Decimal("0")
    computed: int = field(init=False, default=0)


class Address(BaseModel):
    city: str
    zip_code: str


class User(BaseModel):
    name: str
    born: date
    address: Address
    scores: tuple[int, ...] = ()


class Opaque:
    """A plain class with no encoder of its own: must go through the pickle fallback."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.payload == self.payload

    def __hash__(self) -> int:
        return hash(self.payload)


class NeedsTwoArgs(Exception):
    """Pickles fine but cannot be unpickled (only one argument reaches Exception.__init__)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


class PaymentRejected(Exception):
    """Sets an attribute its arguments do not carry."""

    def __init__(self, amount: int) -> None:
        super().__init__(f"rejected {amount}")
        self.amount = amount
        self.when = date(2024, 1, 2)


class HoldsLock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def roundtrip(value: Any) -> Any:
    """Encode, go through real JSON text, decode."""
    tree = encode(value)
    text = json.dumps(tree)
    assert json.loads(text) == tree
    return loads(dumps(value))


def assert_same(actual: Any, expected: Any) -> None:
    """Equal values with equal types, all the way down."""
    assert type(actual) is type(expected), (actual, expected)
    assert actual == expected
    if isinstance(expected, dict):
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, list | tuple):
        for got, want in zip(actual, expected, strict=True):
            assert_same(got, want)


# --- JSON-native values -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["s", "", 0, -3, 1.5, True, False, None])
def test_natives_pass_through(value: Any) -> None:
    assert encode(value) is value
    assert_same(roundtrip(value), value)


def test_plain_structure_stays_plain() -> None:
    value = {"user": "ada", "ids": [1, 2, 3], "nested": {"ok": True, "none": None, "f": 0.5}}
    tree = encode(value)
    assert tree == value
    assert "__pw__" not in json.dumps(tree)
    assert_same(roundtrip(value), value)


def test_nan_and_inf_survive_json() -> None:
    result = loads(dumps([float("inf"), float("-inf"), float("nan")]))
    assert result[0] == float("inf") and result[1] == float("-inf")
    assert result[2] != result[2]


# --- tagged values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        (1, "a", None),
        (),
        {1, 2, 3},
        frozenset({"a", "b"}),
        datetime(2024, 5, 1, 12, 30, 15, 123456),
        date(2024, 2, 29),
        time(23, 59, 59, 999),
        time(8, 0, tzinfo=timezone(timedelta(hours=2))),
        timedelta(days=-1, seconds=5, microseconds=7),
        Decimal("3.14159265358979323846"),
        Decimal("-0"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        b"\x00\xffbinary",
        bytearray(b"mutable"),
        Color.BLUE,
        Priority.HIGH,
        Point(1, 2),
        Address(city="Paris", zip_code="75001"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_tagged_roundtrip(value: Any) -> None:
    tree = encode(value)
    assert isinstance(tree, dict) and "__pw__" in tree
    assert_same(roundtrip(value), value)


def test_aware_datetime_keeps_offset() -> None:
    value = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    result = roundtrip(value)
    assert result == value
    assert result.utcoffset() == timedelta(hours=-5, minutes=-30)
    assert result.isoformat() == value.isoformat()
    assert roundtrip(datetime(2024, 1, 1, tzinfo=UTC)).tzinfo is UTC


def test_zoneinfo_datetime_keeps_zone() -> None:
    value = datetime(2024, 3, 31, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))
    result = roundtrip(value)
    assert result == value
    assert result.tzinfo == ZoneInfo("Europe/Paris")
    assert result.utcoffset() == value.utcoffset()


def test_nested_values_roundtrip() -> None:
    value = {
        "when": [datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 2)],
        "pair": (Decimal("1.5"), {uuid.UUID(int=7)}),
        "deep": [[(b"x", Color.RED)], {"k": frozenset({(1, 2)})}],
    }
    assert_same(roundtrip(value), value)


def test_dataclass_roundtrip_encodes_fields_recursively() -> None:
    value = Order(
        id=uuid.uuid4(),
        items=[Point(1, 2), Point(3, 4)],
        tags=frozenset({"x"}),
        total=Decimal("9.99"),
    )
    object.__setattr__(value, "computed", 42)
    tree = encode(value)
    assert tree["__pw__"] == "dataclass"
    assert tree["cls"] == f"{__name__}:Order"
    assert tree["v"]["items"][0]["__pw__"] == "dataclass"
    result = roundtrip(value)
    assert_same(result, value)
    assert_same(result.items[1], Point(3, 4))
    assert result.computed == 42


def test_pydantic_roundtrip() -> None:
    value = User(
        name="ada",
        born=date(1815, 12, 10),
        address=Address(city="London", zip_code="N1"),
        scores=(3, 4),
    )
    tree = encode(value)
    assert tree["__pw__"] == "pydantic"
    assert tree["cls"] == f"{__name__}:User"
    result = roundtrip(value)
    assert_same(result, value)
    assert_same(result.address, value.address)
    assert_same(result.scores, (3, 4))


def test_set_encoding_is_deterministic() -> None:
    assert encode({"b", "a", "c"}) == {"__pw__": "set", "v": ["a", "b", "c"]}


# --- dicts ------------------------------------------------------------------------------


def test_dict_with_int_keys_roundtrips() -> None:
    value = {1: "one", 2: ["two"], (3, 4): "tuple key", Color.RED: 0}
    assert encode(value)["__pw__"] == "dict"
    assert_same(roundtrip(value), value)


def test_dict_with_reserved_key_roundtrips() -> None:
    value = {"__pw__": "pickle", "v": "not really a pickle"}
    assert_same(roundtrip(value), value)
    assert_same(roundtrip({"outer": [value]}), {"outer": [value]})


def test_str_enum_keys_keep_their_type() -> None:
    result = roundtrip({Color.RED: 1})
    assert list(result) == [Color.RED]


# --- pickle fallback (opt-in) -----------------------------------------------------------


@pytest.fixture
def allow_pickle() -> None:
    pyworkflow.configure(allow_pickle=True)


class CreatesFile:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _hostile_pickle(path: Path) -> str:
    return base64.b64encode(cloudpickle.dumps(CreatesFile(str(path)))).decode("ascii")


def test_value_needing_pickle_is_refused_by_default() -> None:
    where = "argument 'thing' of workflow 'onboarding'"
    with pytest.raises(SerializationError) as info:
        encode({"ok": [Opaque(1)]}, where=where)
    message = str(info.value)
    assert "'Opaque'" in message
    assert where in message
    assert "allow_pickle" in message and "PYWORKFLOW_ALLOW_PICKLE" in message


def test_local_class_refusal_says_why() -> None:
    @dataclass
    class Local:
        n: int

    with pytest.raises(SerializationError, match="inside a function") as info:
        encode(Local(1), where="result of step 's'")
    assert "allow_pickle" in str(info.value)


@pytest.fixture
def main_class(monkeypatch: pytest.MonkeyPatch) -> type[BaseModel]:
    """A model class defined in ``__main__`` (as in a script), found there by name."""

    class ScriptModel(BaseModel):
        name: str

    ScriptModel.__module__ = "__main__"
    ScriptModel.__qualname__ = "ScriptModel"
    monkeypatch.setattr(sys.modules["__main__"], "ScriptModel", ScriptModel, raising=False)
    return ScriptModel


def test_main_class_is_stored_by_reference_without_pickle(
    main_class: type[BaseModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = encode(main_class(name="acme"))
    assert tree == {"__pw__": "pydantic", "cls": "__main__:ScriptModel", "v": {"name": "acme"}}
    assert decode(tree) == main_class(name="acme")  # the script that stored it reads it
    monkeypatch.delattr(sys.modules["__main__"], "ScriptModel")  # another process's __main__
    with pytest.raises(SerializationError, match="importable module"):
        decode(tree)


@pytest.mark.usefixtures("allow_pickle")
def test_main_class_is_pickled_by_value_with_the_setting(main_class: type[BaseModel]) -> None:
    assert encode(main_class(name="acme"))["__pw__"] == "pickle"


def test_stored_pickle_is_refused_by_default_and_not_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    tree = {"args": [{"__pw__": "pickle", "v": _hostile_pickle(marker)}]}
    with pytest.raises(SerializationError) as info:
        decode(tree)
    assert "allow_pickle" in str(info.value)
    assert "earlier PyWorkflow version" in str(info.value)
    assert not marker.exists()


def test_stored_pickle_is_read_with_the_setting() -> None:
    tree = encode(Opaque(3), allow_pickle=True)
    with pytest.raises(SerializationError, match="allow_pickle"):
        decode(tree)
    pyworkflow.configure(allow_pickle=True)
    assert decode(tree) == Opaque(3)


def test_environment_variable_enables_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_ALLOW_PICKLE", "1")
    pyworkflow.reset_config()
    assert encode(Opaque(1))["__pw__"] == "pickle"


def test_allow_pickle_must_be_a_bool() -> None:
    with pytest.raises(pyworkflow.ConfigurationError, match="allow_pickle"):
        pyworkflow.configure(allow_pickle="false")


@pytest.mark.usefixtures("allow_pickle")
def test_explicit_refusal_wins_over_the_setting(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(SerializationError, match="not accepted here"):
        decode({"__pw__": "pickle", "v": _hostile_pickle(marker)}, allow_pickle=False)
    assert not marker.exists()
    with pytest.raises(SerializationError, match="not accepted here"):
        encode(Opaque(1), allow_pickle=False)
    assert encode(Opaque(1))["__pw__"] == "pickle"  # the override ended with the call


@pytest.mark.usefixtures("allow_pickle")
def test_unknown_class_falls_back_to_pickle() -> None:
    value = Opaque({"a": [1, 2]})
    assert encode(value)["__pw__"] == "pickle"
    assert_same(roundtrip(value), value)
    assert_same(roundtrip([value, (value,)]), [value, (value,)])


@pytest.mark.usefixtures("allow_pickle")
def test_local_dataclass_is_pickled_by_value() -> None:
    @dataclass
    class Local:
        n: int

    assert encode(Local(1))["__pw__"] == "pickle"
    assert roundtrip(Local(1)).n == 1


def _gen() -> Iterator[int]:
    yield 1


@pytest.mark.usefixtures("allow_pickle")
def test_unpicklable_value_raises_serialization_error() -> None:
    where = "argument 'conn' of workflow 'onboarding'"
    with pytest.raises(SerializationError) as info:
        encode(_gen(), where=where)
    message = str(info.value)
    assert "generator" in message
    assert where in message


@pytest.mark.usefixtures("allow_pickle")
def test_unpicklable_value_nested_names_inner_type() -> None:
    where = "result of step 'charge'"
    with pytest.raises(SerializationError) as info:
        dumps({"ok": [1, Point(1, threading.Lock())]}, where=where)  # type: ignore[arg-type]
    message = str(info.value)
    assert "lock" in message
    assert where in message


def test_cyclic_list_raises_serialization_error() -> None:
    value: list[Any] = [1]
    value.append(value)
    with pytest.raises(SerializationError, match="cycle"):
        encode(value, where="the cycle")


# --- decode errors ----------------------------------------------------------------------


def test_unknown_tag_raises() -> None:
    with pytest.raises(SerializationError, match="martian"):
        decode({"__pw__": "martian", "v": 1})
    with pytest.raises(SerializationError, match="martian"):
        decode([{"x": {"__pw__": "martian", "v": 1}}])


def test_bad_class_path_raises() -> None:
    with pytest.raises(SerializationError, match="no_such_module:Thing"):
        decode({"__pw__": "dataclass", "cls": "no_such_module:Thing", "v": {}})
    with pytest.raises(SerializationError, match="Missing"):
        decode({"__pw__": "enum", "cls": f"{__name__}:Missing", "v": "red"})


def test_class_of_wrong_kind_raises() -> None:
    with pytest.raises(SerializationError, match="Enum"):
        decode({"__pw__": "enum", "cls": f"{__name__}:Point", "v": 1})


@pytest.mark.usefixtures("allow_pickle")
def test_corrupt_pickle_raises() -> None:
    with pytest.raises(SerializationError, match="pickle"):
        decode({"__pw__": "pickle", "v": "bm90IGEgcGlja2xl"})
    with pytest.raises(SerializationError, match="pickle"):
        decode({"__pw__": "pickle", "v": "!!! not base64"})


def test_malformed_payload_raises() -> None:
    with pytest.raises(SerializationError, match="datetime"):
        decode({"__pw__": "datetime", "v": "yesterday"})
    with pytest.raises(SerializationError, match="decimal"):
        decode({"__pw__": "decimal"})


def test_invalid_json_text_raises() -> None:
    with pytest.raises(SerializationError):
        loads("{not json")


# --- exceptions -------------------------------------------------------------------------


def _raised_by(fn: Any) -> BaseException:
    try:
        fn()
    except BaseException as caught:
        return caught
    raise AssertionError(f"{fn} did not raise")


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_value_error_roundtrip() -> None:
    data = encode_error(_raised(ValueError("bad value")))
    assert data["type"] == "builtins.ValueError"
    assert data["message"] == "bad value"
    assert "Traceback" in data["traceback"]
    assert "ValueError: bad value" in data["traceback"]
    data = json.loads(json.dumps(data))
    rebuilt = decode_error(data)
    assert type(rebuilt) is ValueError
    assert str(rebuilt) == "bad value"


def test_error_without_traceback_has_empty_text() -> None:
    assert encode_error(KeyError("k"))["traceback"] == ""


def test_retryable_error_keeps_attributes() -> None:
    data = json.loads(json.dumps(encode_error(RetryableError("x", retry_after="5s"))))
    rebuilt = decode_error(data)
    assert type(rebuilt) is RetryableError
    assert str(rebuilt) == "x"
    assert rebuilt.retry_after == "5s"


def test_unpicklable_error_falls_back_to_step_failed() -> None:
    data = encode_error(_raised(HoldsLock("locked up")))
    assert data["pickled"] is None
    rebuilt = decode_error(json.loads(json.dumps(data)))
    assert type(rebuilt) is StepFailedError
    assert str(rebuilt) == "locked up"
    assert rebuilt.error_type == f"{__name__}.HoldsLock"


def test_unrebuildable_error_falls_back_to_step_failed() -> None:
    data = encode_error(NeedsTwoArgs("a", "b"))
    assert data["pickled"] is None
    rebuilt = decode_error(data)
    assert isinstance(rebuilt, StepFailedError)
    assert str(rebuilt) == "a/b"
    assert rebuilt.error_type == f"{__name__}.NeedsTwoArgs"


def test_corrupt_pickled_error_falls_back_to_step_failed() -> None:
    rebuilt = decode_error({"type": "x.Y", "message": "m", "traceback": "", "pickled": "AAAA"})
    assert isinstance(rebuilt, StepFailedError)
    assert rebuilt.error_type == "x.Y"


def test_error_is_rebuilt_without_pickle() -> None:
    data = json.loads(json.dumps(encode_error(_raised(PaymentRejected(99)))))
    assert data["pickled"] is None
    assert data["cls"] == f"{__name__}:PaymentRejected"
    rebuilt = decode_error(data)
    assert type(rebuilt) is PaymentRejected
    assert str(rebuilt) == "rejected 99"
    assert rebuilt.amount == 99 and rebuilt.when == date(2024, 1, 2)


HUGE = 5_000_000  # characters: a failure event holding them whole would be refused


def _raise_huge() -> None:
    raise ValueError("e" * HUGE)


def test_a_huge_error_message_is_stored_cut_and_marked() -> None:
    data = encode_error(_raised_by(_raise_huge))
    cut = HUGE - ERROR_TEXT_LIMIT
    assert data["message"] == "e" * ERROR_TEXT_LIMIT + f"... [truncated {cut:,} chars]"
    assert data["args"] == [data["message"]]
    # The traceback keeps its frames and the start of the error's line.
    text = data["traceback"]
    assert len(text) < ERROR_TEXT_LIMIT
    assert text.startswith("Traceback (most recent call last):")
    assert "in _raise_huge" in text and "ValueError: eee" in text
    assert text.endswith(" chars]\n")
    assert len(json.dumps(data)) < 3 * ERROR_TEXT_LIMIT
    rebuilt = decode_error(json.loads(json.dumps(data)))
    assert type(rebuilt) is ValueError and str(rebuilt) == data["message"]


def test_a_small_error_is_stored_whole() -> None:
    text = "x" * ERROR_TEXT_LIMIT  # exactly at the cap: kept whole
    data = encode_error(_raised(RetryableError(text, retry_after="5s")))
    assert data["message"] == text and data["args"] == [text]
    assert data["attrs"]["message"] == text
    rebuilt = decode_error(json.loads(json.dumps(data)))
    assert type(rebuilt) is RetryableError and str(rebuilt) == text


def test_a_huge_library_error_keeps_its_class_and_attributes() -> None:
    data = json.loads(json.dumps(encode_error(RetryableError("r" * HUGE, retry_after="5s"))))
    rebuilt = decode_error(data)
    assert type(rebuilt) is RetryableError and rebuilt.retry_after == "5s"
    assert str(rebuilt).endswith(f"... [truncated {HUGE - ERROR_TEXT_LIMIT:,} chars]")


def test_huge_constructor_data_is_dropped_and_the_type_kept() -> None:
    err = NeedsTwoArgs("a" * HUGE, "b")
    err.extra = ["c" * HUGE]  # not a top-level string: cannot be cut, so it is dropped
    data = encode_error(err)
    assert data["args"] is None and data["attrs"] is None
    rebuilt = decode_error(json.loads(json.dumps(data)))
    assert isinstance(rebuilt, StepFailedError)
    assert rebuilt.error_type == f"{__name__}.NeedsTwoArgs"
    assert len(str(rebuilt)) < ERROR_TEXT_LIMIT + 100


def test_a_long_traceback_keeps_its_start_and_end() -> None:
    def chain(depth: int) -> None:
        try:
            if depth == 0:
                raise KeyError("deepest")
            chain(depth - 1)
        except Exception as exc:
            raise ValueError(f"level {depth} " + "z" * 200) from exc

    data = encode_error(_raised_by(lambda: chain(200)))  # a chain of ~100 KB of text
    text = data["traceback"]
    assert len(text) < ERROR_TEXT_LIMIT + 100 and "chars] ...\n" in text
    assert text.startswith("Traceback (most recent call last):")
    assert "KeyError: 'deepest'" in text  # the first cause, at the start
    assert text.endswith("ValueError: level 200 " + "z" * 200 + "\n")  # the error raised


def test_truncate_text_marks_the_cut() -> None:
    assert truncate_text("abcdef", 6) == "abcdef"
    assert truncate_text("abcdefgh", 4) == "abcd... [truncated 4 chars]"
    assert truncate_text("abcdefgh", 4, keep_end=True) == "ab\n... [truncated 4 chars] ...\ngh"


def test_library_error_with_its_own_init_is_rebuilt() -> None:
    original = NonDeterminismError("run_1", 2, "step:a#1", "step:b#1", sequence=7)
    rebuilt = decode_error(json.loads(json.dumps(encode_error(original))))
    assert type(rebuilt) is NonDeterminismError
    assert str(rebuilt) == str(original)
    assert (rebuilt.run_id, rebuilt.position, rebuilt.sequence) == ("run_1", 2, 7)


@pytest.mark.parametrize("path", ["os:system", "builtins:dict", "builtins:SystemExit"])
def test_only_exception_classes_are_rebuilt(path: str) -> None:
    data = {"type": "x.Y", "message": "m", "traceback": "", "cls": path, "args": ["m"]}
    rebuilt = decode_error(data)
    assert type(rebuilt) is StepFailedError
    assert str(rebuilt) == "m" and rebuilt.error_type == "x.Y"


def test_error_record_from_an_earlier_version_is_rebuilt_without_its_pickle(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    data = {
        "type": f"{__name__}.PaymentRejected",
        "message": "7",
        "traceback": "",
        "pickled": _hostile_pickle(marker),
    }
    rebuilt = decode_error(data)
    assert type(rebuilt) is PaymentRejected  # from its type name and message
    assert not marker.exists()
    legacy = {"type": "pyworkflow.core.exceptions.RetryableError", "message": "later"}
    retry = decode_error(legacy)
    assert type(retry) is RetryableError and str(retry) == "later"


@pytest.mark.usefixtures("allow_pickle")
def test_pickled_error_copy_is_used_with_the_setting() -> None:
    data = encode_error(_raised(HoldsLock("locked up")))
    assert data["pickled"] is None  # cannot be pickled: still the fallback
    data = encode_error(PaymentRejected(5))
    assert data["pickled"] is not None
    data["args"] = None  # only the pickled copy can rebuild it now
    rebuilt = decode_error(data)
    assert type(rebuilt) is PaymentRejected and rebuilt.amount == 5
