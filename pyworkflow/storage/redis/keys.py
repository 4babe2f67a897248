"""Key layout: every key the backend writes, and the members of its run indexes.

Every key starts with ``{prefix}:``. The braces make the prefix a Redis Cluster *hash
tag*: all keys of one prefix live in one slot, which the multi-key Lua scripts need on a
cluster (they also touch keys they compute, not only those passed in ``KEYS``). A
cluster therefore spreads *prefixes*, not runs, over its shards (cluster mode is designed
for but not covered by the test suite, which runs against a single server). A prefix may not
contain braces; because it is enclosed in braces, no prefix's keys can collide with
another prefix's.

==========================================  ====================================================
key                                         content
==========================================  ====================================================
``{p}:run:<run_id>``                        hash: one field per non-``None`` run field
                                            (datetimes as integer epoch microseconds, tags as
                                            JSON, booleans ``0``/``1``), plus ``_m`` (the run's
                                            index member, below) and ``_w`` (the token of the
                                            last write, see "Retries" in connection.py)
``{p}:events:<run_id>``                     list: one compact JSON object per event
                                            (``RPUSH``), sequence ``n`` at index ``n - 1``
``{p}:idem:<key>``                          string: idempotency key -> run id
``{p}:idx:all``                             zset of every run
``{p}:idx:id``                              zset of every run id (every score 0: member
                                            order is id order; prefix search)
``{p}:idx:status:<status>``                 zset of the runs in that status
``{p}:idx:wf:<workflow_name>``              zset of the runs of that workflow
``{p}:idx:tag:<tag>``                       zset of the runs carrying that tag
``{p}:idx:parent:<parent_run_id>``          zset of a parent's child runs
``{p}:idx:cancel``                          zset of the runs asked to cancel (with a
                                            ``cancel_requested_at``)
``{p}:idx:cancel:<status>``                 zset of the runs asked to cancel in that status
``{p}:meta``                                hash: ``cancel_index`` = ``1`` once the runs asked
                                            to cancel before ``idx:cancel`` existed are in it;
                                            ``id_index`` = ``1`` once every run stored before
                                            ``idx:id`` existed is in it
``{p}:wake``                                zset: suspended runs with a ``wake_at``, score =
                                            ``wake_at`` in epoch microseconds
``{p}:active``                              zset: pending/running/interrupted runs, score =
                                            ``lease_expires_at`` (``-inf`` when unleased)
``{p}:hook:<token_hash>``                   hash: one field per non-``None`` hook field
                                            (encoded like run hashes), plus ``_m`` (its
                                            index member) and ``_w`` (the last write's token)
``{p}:hookids:<run_id>``                    hash: the run's hook ids -> their token hashes
``{p}:hidx:all``                            zset of every hook (members like ``idx:*``,
                                            with the token hash in place of the run id)
``{p}:hidx:run:<run_id>``                   zset of a run's hooks
``{p}:hidx:status:<status>``                zset of the hooks in that status
``{p}:signals:<run_id>``                    list: the run's signal inbox, one compact JSON
                                            object per signal (``RPUSH``), sequence ``n`` at
                                            index ``n - 1``
``{p}:sigids:<run_id>``                     hash: the run's signal ids -> their sequences
``{p}:schedule:<schedule_id>``              hash: one field per non-``None`` schedule field
                                            (encoded like run hashes), plus ``_w`` (the token
                                            of the last write)
``{p}:sidx:all``                            zset of every schedule id (every score 0: member
                                            order is id order)
``{p}:sidx:due``                            zset: active schedules with a ``next_run_time``,
                                            score = ``next_run_time`` in epoch microseconds
``{p}:gate:<key>``                          hash: one field per gate field (encoded like run
                                            hashes, ``key`` and ``data`` as is), plus ``_w``
                                            (the token of the last write); ``<key>`` is the
                                            gate's key as is (UTF-8; braces in it do not
                                            change the hash tag, which is the first ``{...}``)
``{p}:worker:<worker_id>``                  hash: ``last_beat`` (epoch microseconds) and
                                            ``data`` (the record's other fields as JSON)
``{p}:widx:all``                            zset of every worker id (every score 0: member
                                            order is id order)
==========================================  ====================================================

The ``idx:*`` sets are *lexicographic* sorted sets (every score 0) whose members are
``<created_at micros + 10**18, 19 digits>:<run_id>``: member order is exactly
``(created_at, run_id)``, so ``list_runs`` (newest first, ties by ``run_id`` descending)
is one ``ZRANGE ... BYLEX REV`` and a paging cursor is an exclusive lex bound (keyset
paging, unaffected by runs created meanwhile). Zsets emptied by ``ZREM`` disappear.

Datetimes are stored as exact integer epoch microseconds in run hashes and events. Sorted
set scores (``wake``, ``active``, ``sidx:due``) are doubles, exact for integers up to 2**53 µs, i.e.
for dates between the years 1685 and 2255; beyond that only the *ordering* of
``wake``/lease/next-run times can blur by a few microseconds (the stored values stay exact).
Lease and wake times are compared inside Lua as numbers, with the same range.
"""

from __future__ import annotations

from datetime import datetime

from pyworkflow.storage.redis.codec import micros

MEMBER_BIAS = 10**18  # makes every datetime's micros non-negative, 19 digits
MEMBER_TS_LEN = 20  # "<19 digits>:"


def member(created_micros: int, record_id: str) -> str:
    """The record's entry in its lexicographic index sets: order = (created_at, id)."""
    return f"{created_micros + MEMBER_BIAS:019d}:{record_id}"


def time_bound(value: datetime) -> str:
    """The timestamp part of the members created at ``value`` (a lex range bound)."""
    return f"{micros(value) + MEMBER_BIAS:019d}"
