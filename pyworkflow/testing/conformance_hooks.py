"""Conformance tests for requests from outside a run: cancellation requests and hook
records. Used exactly like :class:`~pyworkflow.testing.conformance.StorageConformance`
(a ``storage`` fixture yielding a fresh backend)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pyworkflow.storage.base import StorageBackend, hook_cursor, run_cursor
from pyworkflow.storage.schemas import HookRecord, HookStatus, RunStatus, RunUpdate
from pyworkflow.testing.conformance import T0, append, at, create, fetch, make_run


def make_hook(
    token_hash: str, run_id: str = "r1", hook_id: str = "hook:approval#1", **kw: object
) -> HookRecord:
    values: dict[str, object] = {
        "token_hash": token_hash,
        "run_id": run_id,
        "hook_id": hook_id,
        "name": "approval",
        "token": f"whk_secret_{token_hash}",
        "created_at": T0,
    }
    values.update(kw)
    return HookRecord(**values)  # type: ignore[arg-type]


class HookConformance:
    """Cancellation requests and hooks, as every backend must store them."""

    async def test_cancellation_request_is_recorded_once(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        assert await storage.request_cancellation("r1", "customer asked", at(1))
        assert await storage.request_cancellation("r1", "second ask", at(2))
        run = await fetch(storage, "r1")
        assert run.cancel_requested_at == at(1)
        assert run.cancel_reason == "customer asked"

    async def test_cancellation_does_not_fence_out_the_runs_writer(
        self, storage: StorageBackend
    ) -> None:
        await create(storage, "r1", events=1)
        assert await storage.request_cancellation("r1", None, at(1))
        # The run's own writer still appends at the sequence it knows.
        from pyworkflow.testing.conformance import make_events

        await storage.append_events("r1", make_events("r1", 2, 1), expected_last_sequence=1)
        run = await fetch(storage, "r1")
        assert run.last_sequence == 2 and run.cancel_requested_at == at(1)

    async def test_cancellation_of_terminal_or_unknown_run_is_refused(
        self, storage: StorageBackend
    ) -> None:
        await storage.create_run(make_run("done", status=RunStatus.COMPLETED))
        assert not await storage.request_cancellation("done", "late", at(1))
        assert (await fetch(storage, "done")).cancel_requested_at is None
        assert not await storage.request_cancellation("nope", None, at(1))

    async def test_cancellation_can_be_cleared_by_the_runs_writer(
        self, storage: StorageBackend
    ) -> None:
        await create(storage, "r1", events=1)
        await storage.request_cancellation("r1", "x", at(1))
        await storage.append_events(
            "r1",
            [],
            expected_last_sequence=1,
            update=RunUpdate({"status": RunStatus.CANCELLED, "cancel_requested_at": None}),
        )
        run = await fetch(storage, "r1")
        assert run.status == RunStatus.CANCELLED and run.cancel_requested_at is None

    async def test_cancel_requested_suspended_runs_page_newest_first(
        self, storage: StorageBackend
    ) -> None:
        # The query crash recovery asks on every pass: suspended runs asked to cancel.
        for i in range(9):
            await create(storage, f"s{i}", status=RunStatus.SUSPENDED, created_at=at(i))
        await create(storage, "s4b", status=RunStatus.SUSPENDED, created_at=at(4))  # a tie
        await create(storage, "busy", created_at=at(5))
        asked = ["s8", "s7", "s4b", "s4", "s2", "s0"]
        for run_id in [*asked, "busy"]:
            assert await storage.request_cancellation(run_id, "stop", at(20))

        pages, cursor = [], None
        while True:
            page = await storage.list_runs(
                status=RunStatus.SUSPENDED, cancel_requested=True, limit=2, cursor=cursor
            )
            pages.append([r.run_id for r in page])
            if len(page) < 2:
                break
            cursor = run_cursor(page[-1])
        assert pages == [["s8", "s7"], ["s4b", "s4"], ["s2", "s0"], []]
        quiet = await storage.list_runs(status=RunStatus.SUSPENDED, cancel_requested=False)
        assert [r.run_id for r in quiet] == ["s6", "s5", "s3", "s1"]
        everyone = await storage.list_runs(cancel_requested=True)
        assert [r.run_id for r in everyone] == ["s8", "s7", "busy", "s4b", "s4", "s2", "s0"]
        offset = await storage.list_runs(
            status=RunStatus.SUSPENDED, cancel_requested=True, limit=2, offset=3
        )
        assert [r.run_id for r in offset] == ["s4", "s2"]

    async def test_cancel_requested_filter_follows_the_runs_writes(
        self, storage: StorageBackend
    ) -> None:
        await create(storage, "r1", status=RunStatus.SUSPENDED, created_at=at(1))
        await storage.create_run(
            make_run(
                "born-asked",
                status=RunStatus.SUSPENDED,
                created_at=at(2),
                cancel_requested_at=at(0),
            )
        )
        await storage.request_cancellation("r1", None, at(3))

        async def asked(status: RunStatus | None = RunStatus.SUSPENDED) -> list[str]:
            runs = await storage.list_runs(status=status, cancel_requested=True)
            return [r.run_id for r in runs]

        assert await asked() == ["born-asked", "r1"]
        await append(storage, "r1", 1, status=RunStatus.RUNNING)  # woken: no longer suspended
        assert await asked() == ["born-asked"]
        assert await asked(RunStatus.RUNNING) == ["r1"]
        await append(storage, "r1", 2, status=RunStatus.SUSPENDED)
        assert await asked() == ["born-asked", "r1"]
        await append(storage, "r1", 3, status=RunStatus.CANCELLED)  # finished, request kept
        assert await asked() == ["born-asked"]
        assert await asked(RunStatus.CANCELLED) == ["r1"]
        assert await asked(None) == ["born-asked", "r1"]
        # The writer may clear the request; then only the other filter value finds it.
        await storage.append_events(
            "born-asked",
            [],
            expected_last_sequence=0,
            update=RunUpdate({"cancel_requested_at": None}),
        )
        assert await asked() == []
        quiet = await storage.list_runs(status=RunStatus.SUSPENDED, cancel_requested=False)
        assert [r.run_id for r in quiet] == ["born-asked"]

    async def test_cancel_requested_combines_with_other_filters(
        self, storage: StorageBackend
    ) -> None:
        for i in range(6):
            await create(
                storage,
                f"r{i}",
                status=RunStatus.SUSPENDED,
                created_at=at(i),
                workflow_name="even" if i % 2 == 0 else "odd",
                tags=["vip"] if i < 3 else [],
            )
            if i != 3:
                await storage.request_cancellation(f"r{i}", None, at(10))
        by_name = await storage.list_runs(workflow_name="odd", cancel_requested=True)
        assert [r.run_id for r in by_name] == ["r5", "r1"]
        by_tag = await storage.list_runs(
            tag="vip", status=RunStatus.SUSPENDED, cancel_requested=True, limit=1, offset=1
        )
        assert [r.run_id for r in by_tag] == ["r1"]
        window = await storage.list_runs(
            cancel_requested=True, created_after=at(2), created_before=at(5)
        )
        assert [r.run_id for r in window] == ["r4", "r2"]
        assert [r.run_id for r in await storage.list_runs(cancel_requested=False)] == ["r3"]

    async def test_hook_round_trip_and_lookup_by_token_hash(self, storage: StorageBackend) -> None:
        hook = make_hook("h1", expires_at=at(60), schema='{"type": "object"}')
        saved = await storage.save_hook(hook)
        assert saved == hook
        got = await storage.get_hook("h1")
        assert got == hook
        assert got is not None and got.status == HookStatus.PENDING
        assert got.created_at.tzinfo is not None and got.expires_at == at(60)
        assert await storage.get_hook("missing") is None

    async def test_saving_the_same_runs_hook_again_returns_the_first(
        self, storage: StorageBackend
    ) -> None:
        first = await storage.save_hook(make_hook("h1"))
        again = await storage.save_hook(make_hook("h2"))  # same run and hook_id, new token
        assert again.token_hash == first.token_hash == "h1"
        assert again.token == first.token
        assert await storage.get_hook("h2") is None

    async def test_list_hooks_filters_newest_first(self, storage: StorageBackend) -> None:
        await storage.save_hook(make_hook("a", created_at=at(1)))
        await storage.save_hook(make_hook("b", hook_id="hook:approval#2", created_at=at(2)))
        await storage.save_hook(make_hook("c", run_id="r2", created_at=at(3)))
        await storage.update_hook(
            "a", expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload="{}"
        )
        assert [h.token_hash for h in await storage.list_hooks()] == ["c", "b", "a"]
        assert [h.token_hash for h in await storage.list_hooks(run_id="r1")] == ["b", "a"]
        pending = await storage.list_hooks(status=HookStatus.PENDING)
        assert [h.token_hash for h in pending] == ["c", "b"]
        assert [h.token_hash for h in await storage.list_hooks(limit=1, offset=1)] == ["b"]

    async def test_list_hooks_pages_after_a_cursor(self, storage: StorageBackend) -> None:
        # 14 hooks over two runs, pairs sharing a created_at (ties go by token_hash);
        # every third received.
        hooks = [
            make_hook(f"h{i:02d}", run_id=f"r{i % 2}", hook_id=f"hook:h#{i}", created_at=at(i // 2))
            for i in range(14)
        ]
        for hook in hooks:
            await storage.save_hook(hook)
        received = [h.token_hash for h in hooks[::3]]
        for token_hash in received:
            await storage.update_hook(
                token_hash, expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload="1"
            )

        async def pages(**filters: object) -> list[list[str]]:
            found: list[list[str]] = []
            cursor = None
            while True:
                page = await storage.list_hooks(limit=3, cursor=cursor, **filters)  # type: ignore[arg-type]
                found.append([h.token_hash for h in page])
                if len(page) < 3:
                    return found
                cursor = hook_cursor(page[-1])

        newest_first = [h.token_hash for h in reversed(hooks)]
        everything = await pages()
        assert [h for p in everything for h in p] == newest_first
        assert [len(p) for p in everything] == [3, 3, 3, 3, 2]
        by_status = await pages(status=HookStatus.RECEIVED)
        assert [h for p in by_status for h in p] == list(reversed(received))
        by_run = await pages(run_id="r1")
        assert [h for p in by_run for h in p] == [h for h in newest_first if int(h[1:]) % 2]
        # A cursor from a hook that is gone still pages from where it stood.
        gone = make_hook("h07x", created_at=at(3))
        after_gone = await storage.list_hooks(limit=2, cursor=hook_cursor(gone))
        assert [h.token_hash for h in after_gone] == ["h07", "h06"]

    async def test_update_hook_is_a_compare_and_set(self, storage: StorageBackend) -> None:
        await storage.save_hook(make_hook("h1"))
        assert await storage.update_hook(
            "h1",
            expected=HookStatus.PENDING,
            status=HookStatus.RECEIVED,
            payload='{"approved": true}',
            received_at=at(5),
        )
        assert not await storage.update_hook(
            "h1", expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload='"late"'
        )
        hook = await storage.get_hook("h1")
        assert hook is not None
        assert (hook.status, hook.payload, hook.received_at) == (
            HookStatus.RECEIVED,
            '{"approved": true}',
            at(5),
        )
        assert not await storage.update_hook(
            "nope", expected=HookStatus.PENDING, status=HookStatus.EXPIRED
        )

    async def test_concurrent_deliveries_have_one_winner(self, storage: StorageBackend) -> None:
        await storage.save_hook(make_hook("h1"))
        wins = await asyncio.gather(
            *(
                storage.update_hook(
                    "h1",
                    expected=HookStatus.PENDING,
                    status=HookStatus.RECEIVED,
                    payload=f'"{n}"',
                    received_at=T0 + timedelta(seconds=n),
                )
                for n in range(8)
            )
        )
        assert wins.count(True) == 1
        hook = await storage.get_hook("h1")
        assert hook is not None and hook.payload == f'"{wins.index(True)}"'

    async def test_large_unicode_payload(self, storage: StorageBackend) -> None:
        await storage.save_hook(make_hook("h1"))
        payload = '{"text": "' + ("żółć ✓ " * 20_000) + '"}'
        assert await storage.update_hook(
            "h1", expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload=payload
        )
        hook = await storage.get_hook("h1")
        assert hook is not None and hook.payload == payload


__all__ = ["HookConformance", "make_hook"]
