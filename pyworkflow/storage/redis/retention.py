"""Retention: :meth:`delete_runs` removes finished runs with every key and index entry
that names them (see ``lua/delete_runs.lua`` for the list, and :mod:`.keys`).

One script call deletes up to :data:`DELETE_CHUNK` runs, each atomically (the script
checks the run is terminal, then removes it whole), so a big batch never blocks the
server for long; event logs are ``UNLINK``-ed, freed off the script's time. Cost per
run: O(log n) per index entry it leaves, plus one hash lookup per hook. Deleting the
same runs again finds nothing, so a retried call is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyworkflow.storage.redis.connection import RedisConnection

#: Runs deleted per script call.
DELETE_CHUNK = 100


class RetentionStore(RedisConnection):
    """The retention part of :class:`RedisStorageBackend`."""

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(run_ids))
        _, scripts = self._client()
        deleted = 0
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk = ids[start : start + DELETE_CHUNK]
            with self._errors():
                deleted += int(await scripts.delete_runs(keys=[], args=[self._base, *chunk]))
        return deleted
