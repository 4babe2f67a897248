"""The Lua scripts: every multi-key write (and every read that returns many records) is
one script, which Redis runs atomically.

The sources are the ``lua/*.lua`` files of this package (package data), read once at
import; each file starts with its ``KEYS``/``ARGV`` contract. Every script gets the key
base ``{prefix}:`` as ``ARGV[1]``; the run's own keys come in ``KEYS`` (what a cluster
client routes by), derived keys are built from the base. The scripts that write runs
share ``lua/prelude.lua`` (``reindex`` and ``chunked``), after generated lines that
define the base ``P`` and the status sets, so a new status needs no Lua edit. The
compare-and-set saves of schedules and gates share ``lua/versioned.lua``
(``replace_versioned``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from pyworkflow.storage.redis.keys import MEMBER_TS_LEN
from pyworkflow.storage.schemas import TERMINAL_STATUSES, RunStatus

#: The statuses kept in the ``active`` set (lease recovery looks there).
ACTIVE_STATUSES = tuple(
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
)
_LUA = resources.files("pyworkflow.storage.redis").joinpath("lua")


def _source(name: str) -> str:
    return _LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _lua_set(values: Sequence[str]) -> str:
    return "{" + ", ".join(f"[{json.dumps(v)}] = true" for v in values) + "}"


_PRELUDE = (
    "local P = ARGV[1]\n"
    f"local TERMINAL = {_lua_set(sorted(s.value for s in TERMINAL_STATUSES))}\n"
    f"local ACTIVE = {_lua_set(ACTIVE_STATUSES)}\n\n" + _source("prelude") + "\n"
)


# The scripts that write runs share the prelude, the versioned saves versioned.lua; the
# others stand alone.
_WRITERS = (
    "create",
    "append",
    "acquire",
    "renew",
    "release",
    "claim",
    "cancel",
    "send_signal",
    "delete_runs",
)
_VERSIONED = _source("versioned") + "\n"
_MEMBER_TS = f"local MEMBER_TS_LEN = {MEMBER_TS_LEN}\n"
_STANDALONE = (
    "stale",
    "events",
    "by_key",
    "next_wake",
    "save_hook",
    "update_hook",
    "delete_schedule",
    "list_schedules",
    "due_schedules",
    "save_worker",
    "list_workers",
    "delete_worker",
)
#: Script name -> Lua source, as sent to Redis.
SOURCES: dict[str, str] = {
    **{name: _PRELUDE + _source(name) for name in _WRITERS},
    **{name: _VERSIONED + _source(name) for name in ("save_schedule", "save_gate")},
    **{name: _source(name) for name in _STANDALONE},
    "query": _MEMBER_TS + _source("query"),
    "backfill": _PRELUDE + _MEMBER_TS + _source("backfill"),
}


class Scripts:
    """The Lua scripts, registered once per client (``EVALSHA``, loaded on ``NOSCRIPT``)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.create: AsyncScript = client.register_script(SOURCES["create"])
        self.append: AsyncScript = client.register_script(SOURCES["append"])
        self.acquire: AsyncScript = client.register_script(SOURCES["acquire"])
        self.renew: AsyncScript = client.register_script(SOURCES["renew"])
        self.release: AsyncScript = client.register_script(SOURCES["release"])
        self.claim: AsyncScript = client.register_script(SOURCES["claim"])
        self.query: AsyncScript = client.register_script(SOURCES["query"])
        self.stale: AsyncScript = client.register_script(SOURCES["stale"])
        self.by_key: AsyncScript = client.register_script(SOURCES["by_key"])
        self.next_wake: AsyncScript = client.register_script(SOURCES["next_wake"])
        self.events: AsyncScript = client.register_script(SOURCES["events"])
        self.cancel: AsyncScript = client.register_script(SOURCES["cancel"])
        self.backfill: AsyncScript = client.register_script(SOURCES["backfill"])
        self.save_hook: AsyncScript = client.register_script(SOURCES["save_hook"])
        self.update_hook: AsyncScript = client.register_script(SOURCES["update_hook"])
        self.save_schedule: AsyncScript = client.register_script(SOURCES["save_schedule"])
        self.delete_schedule: AsyncScript = client.register_script(SOURCES["delete_schedule"])
        self.list_schedules: AsyncScript = client.register_script(SOURCES["list_schedules"])
        self.due_schedules: AsyncScript = client.register_script(SOURCES["due_schedules"])
        self.save_gate: AsyncScript = client.register_script(SOURCES["save_gate"])
        self.save_worker: AsyncScript = client.register_script(SOURCES["save_worker"])
        self.list_workers: AsyncScript = client.register_script(SOURCES["list_workers"])
        self.delete_worker: AsyncScript = client.register_script(SOURCES["delete_worker"])
        self.delete_runs: AsyncScript = client.register_script(SOURCES["delete_runs"])
        self.send_signal: AsyncScript = client.register_script(SOURCES["send_signal"])
