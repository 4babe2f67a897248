"""``pyworkflow hooks list|info|resume``: see the hooks runs wait on and deliver payloads.

An operator's shell rarely has the workflow's code imported, so nothing here needs it:
a typed hook's payload is checked against the JSON Schema the hook stored (the API does
that, see :func:`pyworkflow.api.resume_hook`), and the interactive prompt of ``resume``
is built from the same schema.

A hook is named either by its token (``whk_...``, what ``on_created`` handed out; the
one form :func:`~pyworkflow.api.resume_hook` takes) or, for an operator who has the
deployment's secret key, by ``--run RUN_ID`` and its hook id (``hook:approval#1``) or
name. Tokens are capabilities: no output shows one, and token hashes appear only as a
short hint.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from pyworkflow.api import get_hook, list_hooks, resume_hook, resume_run_hook
from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.output import emit_list, emit_one
from pyworkflow.core.exceptions import (
    HookAlreadyReceivedError,
    HookExpiredError,
    HookPayloadError,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.payloads import loads_strict
from pyworkflow.storage.schemas import HookRecord, HookStatus

T = TypeVar("T")

_LIST_COLUMNS = ("hook_id", "name", "run_id", "status", "created_at", "expires_at")
_HINT_CHARS = 12
_RUN_HELP = "The hook's run (HOOK is then its hook id or name)."


@click.group("hooks")
def hooks() -> None:
    """Inspect the hooks runs wait on, and deliver their payloads."""


@hooks.command("list")
@click.option("--run", "run_id", metavar="RUN_ID", help="Only the hooks of this run.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in HookStatus]),
    help="Only hooks in this state (pending: still waiting for a payload).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="At most this many hooks, newest first.",
)
@pass_cli
def list_command(cli: CliContext, run_id: str | None, status: str | None, limit: int) -> None:
    """Hooks, newest first: `hooks info --run RUN HOOK_ID` shows one."""

    async def fetch(storage: StorageBackend) -> list[HookRecord]:
        return await list_hooks(run_id=run_id, status=status, limit=limit, storage=storage)

    rows = [_summary(record) for record in cli.run(_with_storage(cli, fetch))]
    emit_list(cli.output, "hooks", rows, _LIST_COLUMNS, title="hooks")


@hooks.command("info")
@click.argument("hook")
@click.option("--run", "run_id", metavar="RUN_ID", help=_RUN_HELP)
@pass_cli
def info_command(cli: CliContext, hook: str, run_id: str | None) -> None:
    """Everything stored about HOOK, including its payload schema.

    HOOK is the hook's token (whk_...), or with --run its hook id (hook:approval#1) or
    name (approval).
    """
    record = cli.run(_find(cli, hook, run_id))
    item: dict[str, Any] = _summary(record)
    item["received_at"] = record.received_at
    item["token_hash"] = _hint(record.token_hash)
    payload = None if record.payload is None else json.loads(record.payload)
    schema = None if record.schema is None else json.loads(record.schema)
    if cli.output == "table":  # people read nested JSON indented
        item["payload"] = None if payload is None else json.dumps(payload, indent=2)
        item["fields"] = _describe_fields(schema) if schema is not None else None
        item["schema"] = None if schema is None else json.dumps(schema, indent=2)
    else:
        item["payload"] = payload
        item["schema"] = schema
    emit_one(cli.output, item, title=f"hook {record.hook_id}")


@hooks.command("resume")
@click.argument("hook")
@click.option("--run", "run_id", metavar="RUN_ID", help=_RUN_HELP)
@click.option("--payload", "payload_text", metavar="JSON", help="The payload, a JSON value.")
@click.option(
    "--payload-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the JSON payload from this file (- for standard input).",
)
@click.option("--yes", "-y", is_flag=True, help="Deliver a prompted payload without asking.")
@pass_cli
def resume_command(
    cli: CliContext,
    hook: str,
    run_id: str | None,
    payload_text: str | None,
    payload_file: Any,
    yes: bool,
) -> None:
    """Deliver a payload to HOOK; a process serving runs then continues its run.

    HOOK is the hook's token (whk_...), or with --run its hook id (hook:approval#1) or name
    (approval); the latter derives the token and needs the deployment's secret key
    (PYWORKFLOW_SECRET_KEY). The payload comes from --payload, --payload-file, or, on a
    terminal, from prompts built from the hook's schema. A payload the hook's schema
    refuses is not delivered: the hook stays open. The run itself is resumed by a process
    serving runs (a worker, or an application on the local runtime), not by this command.
    """
    _check_reference(hook, run_id)
    if payload_text is not None and payload_file is not None:
        raise click.UsageError("give the payload once: --payload or --payload-file")
    if payload_text is not None:
        payload = parse_json_option(payload_text, "--payload")
    elif payload_file is not None:
        payload = parse_json_option(payload_file.read(), "--payload-file")
    elif _interactive():
        record = cli.run(_find(cli, hook, run_id))
        if record.status == HookStatus.RECEIVED:  # say so before asking anything
            raise HookAlreadyReceivedError(f"hook {record.hook_id} already received a payload")
        if record.status != HookStatus.PENDING:
            raise HookExpiredError(f"hook {record.hook_id} is {record.status.value}")
        click.echo(f"payload for hook {record.hook_id} of run {record.run_id}", err=True)
        payload = prompt_payload(record.schema)
        if not yes:
            click.echo(json.dumps(payload, indent=2), err=True)
            click.confirm("deliver this payload?", default=True, abort=True, err=True)
    else:
        raise click.UsageError(
            "no payload: pass --payload JSON or --payload-file PATH (- reads standard input); "
            "the interactive prompt needs a terminal"
        )

    async def deliver(storage: StorageBackend) -> dict[str, Any]:
        try:
            if hook.startswith("whk_"):
                result = await resume_hook(hook, payload, storage=storage, wake_here=False)
            else:
                assert run_id is not None  # checked by _check_reference
                result = await resume_run_hook(
                    run_id, hook, payload, storage=storage, wake_here=False
                )
        except ValidationError as exc:  # the model is here: Pydantic's errors, one line
            raise _payload_error(hook, exc) from exc
        return {"run_id": result.run_id, "hook_id": result.hook_id, "status": result.status}

    emit_one(cli.output, cli.run(_with_storage(cli, deliver)), title="delivered")


COMMANDS = [hooks]


# -- finding the hook ----------------------------------------------------------------------


def _check_reference(hook: str, run_id: str | None) -> None:
    if not hook.startswith("whk_") and run_id is None:
        raise click.UsageError(
            f"{hook!r} is not a hook token (whk_...): name the hook's run with --run RUN_ID "
            "and give its hook id or name"
        )


async def _with_storage(cli: CliContext, work: Callable[[StorageBackend], Awaitable[T]]) -> T:
    """``work`` on the configured storage, closed afterwards: the command's event loop
    ends with it, and connections left open would complain at exit."""
    storage = await cli.storage()
    try:
        return await work(storage)
    finally:
        await storage.close()


async def _find(cli: CliContext, hook: str, run_id: str | None) -> HookRecord:
    _check_reference(hook, run_id)

    async def find(storage: StorageBackend) -> HookRecord:
        if hook.startswith("whk_"):
            return await get_hook(hook, storage=storage)
        return await get_hook(run_id=run_id, hook=hook, storage=storage)

    return await _with_storage(cli, find)


def _summary(record: HookRecord) -> dict[str, Any]:
    return {
        "hook_id": record.hook_id,
        "name": record.name,
        "run_id": record.run_id,
        "status": record.status,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
    }


def _hint(token_hash: str) -> str:
    return token_hash[:_HINT_CHARS] + "..."


# -- payloads ------------------------------------------------------------------------------


def parse_json_option(text: str, option: str) -> Any:
    """``text`` (the value of ``option``) as a JSON value; a usage error otherwise."""
    try:
        return loads_strict(text)
    except ValueError as exc:
        raise click.BadParameter(f"not a JSON value: {exc}", param_hint=option) from None


def _payload_error(hook: str, exc: ValidationError) -> HookPayloadError:
    errors = [
        {"path": "/".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors()
    ]
    listed = "; ".join(f"{e['path'] or '(payload)'}: {e['message']}" for e in errors)
    name = hook if not hook.startswith("whk_") else hook[:8] + "..."
    return HookPayloadError(f"payload refused by hook {name}: {listed}", errors=errors)


def _interactive() -> bool:
    """Whether a person can answer prompts (standard input is a terminal)."""
    return sys.stdin.isatty()


class _Skip:
    """An optional field left empty: not part of the payload (the model's default holds)."""


_SKIP = _Skip()


def prompt_payload(schema_text: str | None) -> Any:
    """Ask for a payload on the terminal: one prompt per property of the hook's JSON
    Schema (typed: yes/no, numbers, choices; optional ones may be left empty), or one
    JSON value for a hook without a schema."""
    schema = json.loads(schema_text) if schema_text else None
    if not isinstance(schema, dict):
        return click.prompt("payload (JSON)", value_proc=_json_value(required=True), err=True)
    root = _resolve(schema, schema)
    if root.get("type") != "object" or not root.get("properties"):
        return click.prompt("payload (JSON)", value_proc=_json_value(required=True), err=True)
    required = set(root.get("required", []))
    payload: dict[str, Any] = {}
    for name, spec in root["properties"].items():
        value = _prompt_field(name, _resolve(spec, schema), name in required, schema)
        if value is not _SKIP:
            payload[name] = value
    return payload


def _prompt_field(name: str, spec: dict[str, Any], required: bool, root: dict[str, Any]) -> Any:
    spec, nullable = _strip_null(spec, root)
    kind, convert = _converter(spec, required)
    notes = [kind]
    if not required:
        notes.append("optional")
        if "default" in spec:
            notes.append(f"default {json.dumps(spec['default'])}")
    if nullable:
        notes.append("'null' for none")
    label = f"{name} ({', '.join(notes)})"
    if spec.get("description"):
        label = f"{label} - {spec['description']}"

    def value_proc(text: str) -> Any:
        if nullable and text.strip() == "null":
            return None
        return convert(text)

    if required:
        return click.prompt(label, value_proc=value_proc, err=True)
    return click.prompt(label, default="", show_default=False, value_proc=value_proc, err=True)


def _converter(spec: dict[str, Any], required: bool) -> tuple[str, Callable[[str], Any]]:
    """How to read one property: its prompt hint and a text -> value converter that
    raises ``click.UsageError`` (the prompt asks again) for unusable input."""
    if "enum" in spec or "const" in spec:
        values = list(spec["enum"]) if "enum" in spec else [spec["const"]]
        by_text = {v if isinstance(v, str) else json.dumps(v): v for v in values}
        return f"one of: {', '.join(by_text)}", _optional(required, _choice(by_text))
    kind = spec.get("type")
    if kind == "boolean":
        return "yes/no", _optional(required, _boolean)
    if kind == "integer":
        return "integer", _optional(required, _integer)
    if kind == "number":
        return "number", _optional(required, _number)
    if kind == "string":
        return "text", _optional(required, lambda text: text)
    return "JSON", _json_value(required)


def _optional(required: bool, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if text == "" and not required:
            return _SKIP
        if text == "":
            raise click.UsageError("a value is required")
        return convert(text)

    return read


def _choice(by_text: dict[str, Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if text.strip() in by_text:
            return by_text[text.strip()]
        raise click.UsageError(f"choose one of: {', '.join(by_text)}")

    return read


def _boolean(text: str) -> bool:
    answer = text.strip().lower()
    if answer in ("y", "yes", "true", "1"):
        return True
    if answer in ("n", "no", "false", "0"):
        return False
    raise click.UsageError("answer yes or no")


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise click.UsageError(f"{text!r} is not an integer") from None


def _number(text: str) -> int | float:
    try:
        value = float(text.strip())
    except ValueError:
        raise click.UsageError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise click.UsageError("NaN and infinities are not JSON")
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _json_value(required: bool) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if text == "":
            if required:
                raise click.UsageError("a value is required")
            return _SKIP
        try:
            return loads_strict(text)
        except ValueError as exc:
            raise click.UsageError(f"not a JSON value: {exc}") from None

    return read


def _resolve(spec: Any, root: Any) -> dict[str, Any]:
    """``spec`` with a local ``$ref`` (``#/$defs/Color``, as Pydantic writes them) followed."""
    seen = 0
    while isinstance(spec, dict) and isinstance(spec.get("$ref"), str) and seen < 20:
        target: Any = root
        for part in spec["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        spec = {**target, **{k: v for k, v in spec.items() if k != "$ref"}}
        seen += 1
    return spec if isinstance(spec, dict) else {}


def _strip_null(spec: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``Optional[X]`` (``anyOf: [X, {"type": "null"}]``) read as X, and whether null is
    allowed."""
    options = spec.get("anyOf")
    if not isinstance(options, list):
        return spec, False
    others = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
    nullable = len(others) < len(options)
    if len(others) == 1:
        merged = {**_resolve(others[0], root), **{k: v for k, v in spec.items() if k != "anyOf"}}
        return merged, nullable
    return spec, nullable


def _describe_fields(schema: Any) -> str | None:
    """One line per property of the stored schema: ``name: type (required)``."""
    root = _resolve(schema, schema) if isinstance(schema, dict) else {}
    properties = root.get("properties")
    if not isinstance(properties, dict):
        return None
    required = set(root.get("required", []))
    lines = []
    for name, raw in properties.items():
        spec, nullable = _strip_null(_resolve(raw, schema), schema)
        kind, _ = _converter(spec, True)
        kind = {"yes/no": "boolean", "text": "string"}.get(kind, kind)
        flags = ["required" if name in required else "optional"]
        if nullable:
            flags.append("nullable")
        lines.append(f"{name}: {kind} ({', '.join(flags)})")
    return "\n".join(lines)
