"""Workflow arguments from the command line: ``--arg k=v`` (repeatable) and
``--args-json``. Shared by ``workflows run`` and ``schedules create``, so a workflow's
arguments are typed the same way wherever the shell hands them over."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

ARGS_HELP = (
    "A keyword argument of the workflow, KEY=VALUE (repeatable). VALUE is read as JSON "
    'when it parses (42, true, null, [1,2], {"a":1}, "quoted"), else as a string.'
)
ARGS_JSON_HELP = (
    'The workflow\'s arguments as JSON: an object of keyword arguments ({"k": 1}) or a '
    "list of positional ones ([1, 2]). --arg values are added to (and override) the object."
)


def argument_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--arg`` and ``--args-json`` on a command (received as ``arg_pairs``, ``args_json``)."""
    fn = click.option("--args-json", "args_json", metavar="JSON", help=ARGS_JSON_HELP)(fn)
    fn = click.option("--arg", "arg_pairs", multiple=True, metavar="KEY=VALUE", help=ARGS_HELP)(fn)
    return fn


def parse_value(text: str) -> Any:
    """``text`` as JSON if it is JSON, else the text itself (``--arg name=ada``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def workflow_arguments(
    arg_pairs: tuple[str, ...], args_json: str | None
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments from ``--args-json`` and ``--arg`` options.

    Raises:
        click.BadParameter: malformed JSON or ``KEY=VALUE`` (a usage error, exit 2).
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if args_json is not None:
        try:
            parsed = json.loads(args_json)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--args-json") from None
        if isinstance(parsed, list):
            args = parsed
        elif isinstance(parsed, dict):
            kwargs = parsed
        else:
            raise click.BadParameter(
                "must be a JSON object (keyword arguments) or list (positional ones)",
                param_hint="--args-json",
            )
    for pair in arg_pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.BadParameter(
                f"{pair!r} is not KEY=VALUE with KEY a Python identifier", param_hint="--arg"
            )
        kwargs[key] = parse_value(value)
    return args, kwargs
