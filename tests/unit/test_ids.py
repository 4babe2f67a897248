"""Hot-path ids (event ids, dispatch round owners) stay unique across Celery's prefork
pool: a forked child draws its own prefix instead of repeating its parent's ids."""

from __future__ import annotations

import os

from pyworkflow.engine.owners import OwnerKind, new_owner, owner_kind
from pyworkflow.storage.schemas import Event, EventType
from pyworkflow.utils.ids import unique_id


def _ids_in_forked_child(count: int) -> list[str]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its ids, then leave without running pytest's exit
        os.close(read)
        os.write(write, "\n".join(unique_id() for _ in range(count)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        ids = pipe.read().split("\n")
    os.waitpid(pid, 0)
    return ids


def test_parent_and_forked_children_never_share_an_id() -> None:
    unique_id()  # the parent has handed out ids before forking, as a worker's main does
    children = [_ids_in_forked_child(100) for _ in range(3)]
    parent = [unique_id() for _ in range(100)]
    everything = parent + [i for ids in children for i in ids]
    assert len(set(everything)) == len(everything) == 400
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in everything)


def test_events_and_round_owners_get_distinct_ids() -> None:
    events = {Event(run_id="r", type=EventType.WORKFLOW_STARTED).event_id for _ in range(1000)}
    rounds = {new_owner(OwnerKind.ROUND) for _ in range(1000)}
    assert len(events) == len(rounds) == 1000
    assert all(owner_kind(owner) is OwnerKind.ROUND for owner in rounds)
