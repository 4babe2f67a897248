"""Who can hold a run's lease, and how to tell a dead holder.

A lease owner is a string stored with the run. Its kind is readable from its form:

* ``process``: ``host:pid:token``, a process executing the run; on the same host a
  holder whose pid is gone is dead at once, elsewhere its lease must expire.
* ``round``: ``round:<hex>``, the steps of one dispatch round running on step workers
  (not a process, so never judged dead by pid: only by expiry).
* ``queued``: ``queued:<where>``, a run waiting in a broker queue to be started; a run
  held this way never began executing (``celery:queued``: the same, written by
  earlier versions).
* ``sweep``: ``sweep:<process owner>[/claim]``, a run claimed by a timer/recovery sweeper
  and sent to a worker; like ``queued``, a delivery, not an execution.

Runtimes create owners only through :func:`new_owner` and judge them only through
:func:`owner_kind` / :func:`owner_is_dead`.
"""

from __future__ import annotations

import os
import socket
import uuid
from enum import StrEnum

from pyworkflow.utils.ids import unique_id

_HOST = socket.gethostname()


class OwnerKind(StrEnum):
    PROCESS = "process"
    ROUND = "round"
    QUEUED = "queued"
    SWEEP = "sweep"


# Kinds that hold a run only to deliver it somewhere: the run is not executing.
DELIVERY_KINDS = frozenset({OwnerKind.QUEUED, OwnerKind.SWEEP})

_PREFIXES = {
    "round:": OwnerKind.ROUND,
    "queued:": OwnerKind.QUEUED,
    "sweep:": OwnerKind.SWEEP,
}
# What versions before owner kinds stored for a queued run (matched whole: a host may be
# named "celery").
_LEGACY_QUEUED = "celery:queued"

# The placeholder owner of a run stored and sent to a broker queue, not yet taken.
QUEUED_OWNER = "queued:broker"


def process_owner() -> str:
    """A new owner id naming this host and process (so same-host peers can tell it died)."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def new_owner(kind: OwnerKind, of: str | None = None) -> str:
    """A new lease owner of ``kind``; ``of`` names the sweeper process (``SWEEP``) or
    the queue (``QUEUED``)."""
    if kind is OwnerKind.PROCESS:
        return process_owner()
    if kind is OwnerKind.ROUND:
        return f"round:{unique_id()}"
    if kind is OwnerKind.SWEEP:
        return f"sweep:{of or process_owner()}"
    return f"queued:{of or 'broker'}"


def owner_kind(owner: str) -> OwnerKind:
    """The kind of a stored lease owner (see the module docstring)."""
    if owner == _LEGACY_QUEUED:
        return OwnerKind.QUEUED
    head, sep, _ = owner.partition(":")
    if sep:
        kind = _PREFIXES.get(head + sep)
        if kind is not None:
            return kind
    return OwnerKind.PROCESS


def is_delivery(owner: str | None) -> bool:
    """True for an owner that only delivers the run (no process is executing it)."""
    return owner is not None and owner_kind(owner) in DELIVERY_KINDS


def sweeper_of(owner: str | None) -> str | None:
    """The process owner id of the sweeper that holds a run as ``owner`` (a ``sweep:``
    owner, with or without its ``/claim`` suffix); ``None`` for other kinds."""
    if owner is None or owner_kind(owner) is not OwnerKind.SWEEP:
        return None
    return owner.removeprefix("sweep:").partition("/")[0] or None


def same_host_prefix() -> str:
    """The prefix every process owner of this host starts with."""
    return f"{_HOST}:"


def owner_is_dead(owner: str | None, me: str) -> bool:
    """True when ``owner`` is a process on this host that no longer exists.

    Only same-host process owners can be checked; others are judged by lease expiry.
    """
    if not owner or owner == me or owner_kind(owner) is not OwnerKind.PROCESS:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # an owner id of this pid that is not ours: a previous process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
