"""``/api/schedules``: create, list, read, change, pause, resume, trigger, backfill and
delete schedules over real storage, and the errors a caller gets for bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from pyworkflow import get_storage
from tests.server.conftest import READ_TOKEN, client
from tests.server.waiting import wait_status


def _times(answer: dict[str, Any]) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in answer["next_fire_times"]]


async def test_create_read_list_and_next_fire_times(app: FastAPI) -> None:
    async with client(app) as http:
        created = await http.post(
            "/api/schedules",
            json={
                "workflow": "srv_quick",
                "spec": {"cron": "0 9 * * *", "timezone": "Europe/Paris"},
                "args": [4],
                "schedule_id": "paris-nine",
                "overlap_policy": "buffer_one",
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["schedule_id"] == "paris-nine" and body["status"] == "active"
        assert body["workflow_registered"] is True and body["args"] == [4]
        assert body["overlap_policy"] == "buffer_one" and body["catchup_window"] == 3600
        paris = [t.astimezone(ZoneInfo("Europe/Paris")) for t in _times(body)]
        assert len(paris) == 5 and all((t.hour, t.minute) == (9, 0) for t in paris)
        assert [(b.date() - a.date()).days for a, b in zip(paris, paris[1:], strict=False)] == [
            1
        ] * 4
        assert paris[0] > datetime.now(UTC)

        hourly = await http.post(
            "/api/schedules", json={"workflow": "not_imported_here", "spec": "1h"}
        )
        assert hourly.status_code == 201, hourly.text
        hourly_id = hourly.json()["schedule_id"]
        assert hourly.json()["workflow_registered"] is False
        top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        assert _times(hourly.json()) == [top + timedelta(hours=h) for h in range(1, 6)]

    async with client(app, READ_TOKEN) as reader:
        one = (await reader.get("/api/schedules/paris-nine")).json()
        assert one["spec"] == {"cron": "0 9 * * *", "timezone": "Europe/Paris"}
        listed = (await reader.get("/api/schedules")).json()["schedules"]
        assert sorted(s["schedule_id"] for s in listed) == sorted(["paris-nine", hourly_id])
        mine = (await reader.get("/api/schedules", params={"workflow": "srv_quick"})).json()
        assert [s["schedule_id"] for s in mine["schedules"]] == ["paris-nine"]
        limited = (await reader.get("/api/schedules", params={"limit": 1})).json()
        assert len(limited["schedules"]) == 1
        paused = (await reader.get("/api/schedules", params={"status": "paused"})).json()
        assert paused["schedules"] == []
        refused = await reader.post("/api/schedules/paris-nine/pause")
        assert refused.status_code == 403
        assert (await reader.get("/api/schedules/nope")).status_code == 404


async def test_update_pause_resume_delete(app: FastAPI) -> None:
    async with client(app) as http:
        await http.post(
            "/api/schedules", json={"workflow": "srv_quick", "spec": "1h", "schedule_id": "s1"}
        )
        changed = await http.patch(
            "/api/schedules/s1",
            json={"spec": "*/30 * * * *", "overlap_policy": "allow_all", "catchup_window": "5m"},
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["spec"]["cron"] == "*/30 * * * *" and body["overlap_policy"] == "allow_all"
        assert body["catchup_window"] == 300
        assert all(t.minute in (0, 30) and t.second == 0 for t in _times(body))

        paused = (await http.post("/api/schedules/s1/pause")).json()
        assert paused["status"] == "paused" and paused["next_fire_times"] == []
        listed = (await http.get("/api/schedules", params={"status": "paused"})).json()
        assert [s["schedule_id"] for s in listed["schedules"]] == ["s1"]
        resumed = (await http.post("/api/schedules/s1/resume")).json()
        assert resumed["status"] == "active" and len(resumed["next_fire_times"]) == 5

        assert (await http.delete("/api/schedules/s1")).status_code == 204
        assert (await http.get("/api/schedules/s1")).status_code == 404
        again = await http.delete("/api/schedules/s1")
        assert again.status_code == 404 and "s1" in again.json()["detail"]
        for path in ("/api/schedules/s1/pause", "/api/schedules/s1/trigger"):
            assert (await http.post(path)).status_code == 404
        assert (await http.patch("/api/schedules/s1", json={"spec": "2h"})).status_code == 404


async def test_trigger_starts_a_run_now(app: FastAPI) -> None:
    async with client(app) as http:
        await http.post(
            "/api/schedules",
            json={"workflow": "srv_quick", "spec": "1h", "args": [21], "schedule_id": "t1"},
        )
        answer = await http.post("/api/schedules/t1/trigger")
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        assert answer.json()["runtime"] == "local"
        assert await wait_status(run_id, "completed") == "completed"
        run = (await http.get(f"/api/runs/{run_id}")).json()
        assert run["result"] == 42 and run["workflow_name"] == "srv_quick"
        schedule = (await http.get("/api/schedules/t1")).json()
        assert schedule["last_run_id"] == run_id and schedule["fired"] == 1
        assert schedule["recent"][0]["run_id"] == run_id
        assert schedule["recent"][0]["outcome"] == "started"


async def test_trigger_without_the_code_is_refused(app: FastAPI) -> None:
    async with client(app) as http:
        await http.post(
            "/api/schedules", json={"workflow": "elsewhere", "spec": "1h", "schedule_id": "x"}
        )
        hours_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
        for path, body in (("trigger", None), ("backfill", {"start": hours_ago})):
            refused = await http.post(f"/api/schedules/x/{path}", json=body)
            assert refused.status_code == 409, refused.text
            assert "'elsewhere'" in refused.json()["detail"]
            assert "--module" in refused.json()["detail"]
        assert (await http.get("/api/schedules/x")).json()["fired"] == 0


async def test_backfill_starts_one_run_per_tick_once(app: FastAPI) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=2)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    async with client(app) as http:
        await http.post(
            "/api/schedules",
            json={"workflow": "srv_quick", "spec": "1h", "args": [1], "schedule_id": "b1"},
        )
        answer = await http.post("/api/schedules/b1/backfill", json=window)
        assert answer.status_code == 202, answer.text
        run_ids = answer.json()["run_ids"]
        assert len(run_ids) == 3  # start, start + 1h, end: both ends included
        for run_id in run_ids:
            await wait_status(run_id, "completed")
        again = (await http.post("/api/schedules/b1/backfill", json=window)).json()
        assert again["run_ids"] == run_ids
        runs = await get_storage().list_runs(workflow_name="srv_quick")
        assert sorted(r.run_id for r in runs) == sorted(run_ids)  # nothing started twice
        assert (await http.get("/api/schedules/b1")).json()["fired"] == 3

        backwards = await http.post(
            "/api/schedules/b1/backfill",
            json={"start": end.isoformat(), "end": start.isoformat()},
        )
        assert backwards.status_code == 422 and "end must not be before start" in backwards.text
        huge = await http.post("/api/schedules/b1/backfill", json={"start": "2000-01-01T00:00:00Z"})
        assert huge.status_code == 400 and "more than 1000 ticks" in huge.json()["detail"]


def _error_text(answer: Any) -> str:
    detail = answer.json()["detail"]
    if isinstance(detail, str):
        return detail
    return " | ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail)


async def test_bad_input_names_the_field(app: FastAPI) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"workflow": "srv_quick", "spec": "61 * * * *"}, "spec.cron"),
        ({"workflow": "srv_quick", "spec": "every week"}, "spec.cron"),
        ({"workflow": "srv_quick", "spec": "fortnight"}, "spec.interval"),
        ({"workflow": "srv_quick", "spec": {"cron": "0 9 * * *", "timezone": "Mars/Base"}}, "Mars"),
        ({"workflow": "srv_quick", "spec": {"cron": "0 9 * * *", "interval": "1h"}}, "exactly one"),
        ({"workflow": "srv_quick", "spec": {"calendar": {"hour": 25}}}, "spec.calendar"),
        ({"workflow": "srv_quick", "spec": {"cronn": "0 9 * * *"}}, "spec.cronn"),
        ({"workflow": "srv_quick"}, "spec"),
        ({"workflow": "", "spec": "1h"}, "workflow"),
        ({"workflow": "srv_quick", "spec": "1h", "overlap_policy": "maybe"}, "overlap_policy"),
        ({"workflow": "srv_quick", "spec": "1h", "catchup_window": "soon"}, "catchup_window"),
        ({"workflow": "srv_quick", "spec": "1h", "schedule_id": "a/b"}, "schedule_id"),
    ]
    async with client(app) as http:
        for body, named in cases:
            answer = await http.post("/api/schedules", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert named in _error_text(answer), (body, _error_text(answer))
        assert (await http.get("/api/schedules")).json()["schedules"] == []

        await http.post("/api/schedules", json={"workflow": "w", "spec": "1h", "schedule_id": "d"})
        dup = await http.post(
            "/api/schedules", json={"workflow": "w", "spec": "2h", "schedule_id": "d"}
        )
        assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
        nothing = await http.patch("/api/schedules/d", json={})
        assert nothing.status_code == 422 and "nothing to change" in _error_text(nothing)
        bad = await http.patch("/api/schedules/d", json={"spec": {"interval": -5}})
        assert bad.status_code == 422 and "spec.interval" in _error_text(bad)
        assert (await http.get("/api/schedules/d")).json()["spec"] == {
            "interval": 3600.0,
            "timezone": "UTC",
        }
