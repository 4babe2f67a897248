"""Queue names for routing a workflow's or a step's messages (``queue=`` options).

A queue name travels to the broker and to worker command lines (``-Q gpu``), so only a
conservative character set is accepted: what Redis keys, RabbitMQ queue names and shell
arguments all take without quoting.
"""

from __future__ import annotations

import re

from pyworkflow.core.exceptions import DefinitionError

# The default queues of the Celery runtime (a workflow's or step's ``queue=`` replaces
# the first two): separate, so each kind of work can get its own workers.
WORKFLOWS_QUEUE = "pyworkflow.workflows"
STEPS_QUEUE = "pyworkflow.steps"
SCHEDULES_QUEUE = "pyworkflow.schedules"

# Letters, digits and ``. _ - :``; starting with a letter or digit; at most 200 characters
# (RabbitMQ allows 255 bytes, and Celery prefixes some keys).
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_QUEUE_NAME = re.compile(QUEUE_PATTERN)


def validate_queue(
    queue: str | None, owner: str, error: type[ValueError] = ValueError
) -> str | None:
    """``queue`` itself when it is a usable queue name (or ``None``: the default queue).

    Raises:
        ValueError (or ``error``): the name is not a string of 1-200 letters, digits,
            ``.``, ``_``, ``-`` or ``:`` starting with a letter or digit; the message
            names ``owner`` and the bad value.
    """
    if queue is None:
        return None
    if not isinstance(queue, str) or _QUEUE_NAME.fullmatch(queue) is None:
        raise error(
            f"{owner}: invalid queue name {queue!r}: use 1-200 letters, digits, '.', '_', "
            "'-' or ':', starting with a letter or digit"
        )
    return queue


__all__ = [
    "QUEUE_PATTERN",
    "SCHEDULES_QUEUE",
    "STEPS_QUEUE",
    "WORKFLOWS_QUEUE",
    "validate_queue",
]


#: Message priorities: 0 (lowest, what a message without one gets) to this, higher first.
MAX_PRIORITY = 9


def check_priority(priority: int | None, owner: str) -> int | None:
    """A broker priority, 0 (lowest) to :data:`MAX_PRIORITY` (highest), or ``None`` (0).

    Raises:
        DefinitionError: anything else (the message names ``owner``).
    """
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise DefinitionError(f"{owner}: priority must be an int from 0 to 9, got {priority!r}")
    return priority
