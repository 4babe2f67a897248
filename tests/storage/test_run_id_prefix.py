"""The run id prefix filter where the SQL backends take their less common paths.

The conformance suite (:class:`RunQueryConformance`) checks the filter on every backend
with a few dozen runs. Two SQL paths need more than that to be taken:

* SQLite counts a prefix's ids first and, when at least ``prefix_probe`` (1000) match,
  walks the ``created_at`` order instead of seeking the key. Here the limit is lowered
  to 2 so the whole conformance class runs through the walk.
* MySQL tables whose ``run_id`` collation pads with spaces (``utf8mb4_bin``, what
  MySQL 8.0.0 to 8.0.16 created) match with a byte-wise ``LIKE``: checked on a real
  table created with that collation.
* Redis reads few matches from its id set and sorts them in Lua, or walks the creation
  order when many match; both against the in-memory reference, and the id set built for
  runs an older release stored.

And the two value helpers the SQL filter is built from, against ``str.startswith``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyworkflow.storage._sql_dialect import like_prefix, prefix_successor
from pyworkflow.storage._sql_statements import Statements
from pyworkflow.storage.base import RunQuery, StorageBackend, run_cursor
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus
from pyworkflow.storage.sqlite import SQLITE, SQLiteStorageBackend
from pyworkflow.testing.conformance import at, make_run
from pyworkflow.testing.conformance_queries import (
    TRICKY_IDS,
    TRICKY_PREFIXES,
    RunQueryConformance,
)
from tests.services import require_service
from tests.storage import backend_mysql, backend_redis

# Characters around the edges a successor must step over: the last ASCII and BMP code
# points, the surrogate gap, the last code point, and LIKE's special characters.
EDGES = "az{%_\\ \t\x7f\u00e9\ud7ff\ue000\uffff\U00010000\U0001f642\U0010ffff"
# Surrogates excluded: run ids are stored as UTF-8, which cannot hold them.
texts = st.text(
    alphabet=st.sampled_from(EDGES) | st.characters(exclude_categories=("Cs",)), max_size=6
)


@given(prefix=texts, text=texts)
def test_successor_bounds_exactly_the_strings_with_the_prefix(prefix: str, text: str) -> None:
    upper = prefix_successor(prefix)
    in_range = prefix <= text and (upper is None or text < upper)
    assert in_range == text.startswith(prefix)
    # Code point order is UTF-8 byte order: what the servers' binary collations compare.
    assert (prefix <= text) == (prefix.encode() <= text.encode())


@given(prefix=texts, tail=texts)
def test_successor_is_never_a_surrogate_and_starts_above_the_prefix(prefix: str, tail: str) -> None:
    upper = prefix_successor(prefix)
    if upper is None:
        assert set(prefix) <= {"\U0010ffff"}
        return
    upper.encode("utf-8")  # bindable: no lone surrogate
    assert prefix + tail < upper


def test_like_pattern_escapes_wildcards_and_the_escape_character() -> None:
    assert like_prefix("run_1") == "run\\_1%"
    assert like_prefix("100%") == "100\\%%"
    assert like_prefix("a\\b") == "a\\\\b%"
    assert like_prefix("日本") == "日本%"


class TestSQLiteWalkedPrefix(RunQueryConformance):
    """The conformance cases with SQLite walking ``created_at`` for any prefix that
    matches two ids or more (the path a store of thousands of runs takes)."""

    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[StorageBackend]:
        backend = SQLiteStorageBackend(tmp_path / "walk.db")
        backend.sql = Statements(replace(SQLITE, prefix_probe=2))
        yield backend
        await backend.close()

    async def test_the_walk_is_taken(self, storage: StorageBackend) -> None:
        for i in range(3):
            await storage.create_run(make_run(f"x-{i}", created_at=at(i)))
        assert isinstance(storage, SQLiteStorageBackend)
        probe = storage.sql.prefix_probe("x-")
        assert probe is not None and "COUNT" in probe[0]
        sql, _ = storage.sql.query(RunQuery(run_id_prefix="x-"), walk=True)
        assert "+r.run_id >= ?" in sql
        assert [r.run_id for r in await storage.list_runs(run_id_prefix="x-")] == [
            "x-2",
            "x-1",
            "x-0",
        ]


async def test_mysql_table_with_a_padding_collation_matches_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table created as MySQL 8.0.0-8.0.16 would (``utf8mb4_bin``, PAD SPACE): ``'a'``
    equals ``'a '`` and sorts above ``'a\\tb'``, so a key range would lose ``a\\tb``
    from the ``a`` prefix; the byte-wise LIKE keeps it."""
    from pyworkflow.storage import mysql

    monkeypatch.setattr(mysql, "server_traits", lambda version: (True, "utf8mb4_bin"))
    # Under PAD SPACE "a" and "a " are one key: the table cannot hold both.
    ids = [run_id for run_id in TRICKY_IDS if run_id != "a "]
    async with backend_mysql.open_backend(tmp_path) as (storage, _):
        for i, run_id in enumerate(ids):
            await storage.create_run(make_run(run_id, created_at=at(i)))
        for prefix in TRICKY_PREFIXES:
            found = [r.run_id for r in await storage.list_runs(run_id_prefix=prefix)]
            assert found == [i for i in reversed(ids) if i.startswith(prefix)], prefix
        assert storage.sql.dialect.prefix_like  # connected: the column's collation read


@pytest.fixture
async def redis_storage() -> AsyncIterator[StorageBackend]:
    url = require_service("redis")
    pytest.importorskip("redis", reason="pip install 'pyworkflow-engine[redis]'")
    from pyworkflow.storage.redis import RedisStorageBackend

    prefix = backend_redis.new_prefix()
    backend = RedisStorageBackend(url, prefix=prefix)
    yield backend
    await backend.close()
    await backend_redis.delete_prefix(url, prefix)


async def test_redis_prefix_plans_answer_like_the_reference(
    redis_storage: StorageBackend,
) -> None:
    """300 runs; ties on ``created_at`` whose ids order differently by bytes than in a
    locale (``B`` < ``a`` < ``é``), which the Lua sort of the few-matches plan must
    follow. Few matches with a big page take the id set, many with a small page walk."""
    reference = InMemoryStorageBackend()
    ids = [f"run_{c}{i:03}" for i in range(100) for c in "aBé"]
    for n, run_id in enumerate(ids):
        run = make_run(
            run_id,
            created_at=at(n // 6),  # six runs per timestamp
            status=RunStatus.FAILED if n % 4 == 0 else RunStatus.COMPLETED,
        )
        await redis_storage.create_run(run)
        await reference.create_run(run)
    middle = await reference.list_runs(limit=150)
    queries = [
        RunQuery(run_id_prefix="run_a00", limit=100),  # 10 of 300: the id set
        RunQuery(run_id_prefix="run_é0", limit=100, status=RunStatus.FAILED),
        RunQuery(run_id_prefix="run_a0", limit=100, cursor=run_cursor(middle[-1])),
        RunQuery(run_id_prefix="run_B", limit=60, created_after=at(10), created_before=at(20)),
        RunQuery(run_id_prefix="run_B0", limit=100, offset=5),
        RunQuery(run_id_prefix="run_", limit=7),  # 300 of 300: the walk
        RunQuery(run_id_prefix="run_", limit=7, offset=3, cursor=run_cursor(middle[-1])),
        RunQuery(run_id_prefix="run_a", limit=5, status=RunStatus.FAILED),
        RunQuery(run_id_prefix="run_x", limit=5),
    ]
    for query in queries:
        expected = [r.run_id for r in await reference.query_runs(query)]
        assert [r.run_id for r in await redis_storage.query_runs(query)] == expected, query


async def test_redis_runs_stored_before_the_id_index_are_found_after_connect(
    redis_storage: StorageBackend,
) -> None:
    from pyworkflow.storage.redis import RedisStorageBackend

    assert isinstance(redis_storage, RedisStorageBackend)
    for i in range(7):
        await redis_storage.create_run(make_run(f"old-{i}", created_at=at(i)))
    client, _ = redis_storage._client()
    # What a release without the id set left: the runs, no set, no marker.
    await client.delete(redis_storage._key("idx", "id"))
    await client.hdel(redis_storage._key("meta"), "id_index")
    await redis_storage.close()

    upgraded = RedisStorageBackend(require_service("redis"), prefix=redis_storage.prefix)
    try:
        found = await upgraded.list_runs(run_id_prefix="old-", limit=100)
        assert [r.run_id for r in found] == [f"old-{i}" for i in reversed(range(7))]
    finally:
        await upgraded.close()
