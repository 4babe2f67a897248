"""The run id prefix filter where the SQL backends take their less common paths.

The conformance suite (:class:`RunQueryConformance`) checks the filter on every backend
with a few dozen runs. Two SQL paths need more than that to be taken:

* SQLite counts a prefix's ids first and, when at least ``prefix_probe`` (1000) match,
  walks the ``created_at`` order instead of seeking the key. Here the limit is lowered
  to 2 so the whole conformance class runs through the walk.
* MySQL tables whose ``run_id`` collation pads with spaces (``utf8mb4_bin``, what
  MySQL 8.0.0 to 8.0.16 created) match with a byte-wise ``LIKE``: checked on a real
  table created with that collation.

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
from pyworkflow.storage.base import RunQuery, StorageBackend
from pyworkflow.storage.sqlite import SQLITE, SQLiteStorageBackend
from pyworkflow.testing.conformance import at, make_run
from pyworkflow.testing.conformance_queries import (
    TRICKY_IDS,
    TRICKY_PREFIXES,
    RunQueryConformance,
)
from tests.storage import backend_mysql

# Characters around the edges a successor must step over: the last ASCII and BMP code
# points, the surrogate gap, the last code point, and LIKE's special characters.
EDGES = "az{%_\\ \t\x7f\u00e9\ud7ff\ue000\uffff\U00010000\U0001f642\U0010ffff"
texts = st.text(alphabet=st.sampled_from(EDGES) | st.characters(), max_size=6)


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
