"""``/api/hooks``: listing with filters and pages, one hook, and the admin's resume."""

from __future__ import annotations

from fastapi import FastAPI

from pyworkflow import cancel_workflow, get_workflow_events, start
from pyworkflow.primitives.hook_tokens import hash_token
from tests.server.conftest import READ_TOKEN, client
from tests.server.flows import srv_approval, srv_untyped_hook
from tests.server.hook_flows import token_of, wait_status


async def test_list_and_read_hooks_without_tokens(app: FastAPI) -> None:
    typed = [await start(srv_approval, f"order-{i}") for i in range(3)]
    untyped = await start(srv_untyped_hook)
    for run_id in [*typed, untyped]:
        await wait_status(run_id, "suspended")
    tokens = [token_of(r, "srv_approval") for r in typed] + [token_of(untyped, "srv_raw")]
    async with client(app, READ_TOKEN) as http:
        listing = await http.get("/api/hooks")
        assert listing.status_code == 200
        hooks = listing.json()["hooks"]
        assert {h["run_id"] for h in hooks} == {*typed, untyped}
        assert all(h["status"] == "pending" and h["open"] for h in hooks)

        first = await http.get("/api/hooks", params={"limit": 2})
        assert len(first.json()["hooks"]) == 2 and first.json()["next_offset"] == 2
        rest = await http.get("/api/hooks", params={"limit": 2, "offset": 2})
        assert rest.json()["next_offset"] is None
        paged = first.json()["hooks"] + rest.json()["hooks"]
        assert sorted(h["key"] for h in paged) == sorted(h["key"] for h in hooks)

        of_run = (await http.get("/api/hooks", params={"run_id": untyped})).json()["hooks"]
        assert [(h["name"], h["hook_id"], h["typed"]) for h in of_run] == [
            ("srv_raw", "hook:srv_raw#1", False)
        ]
        key = hash_token(tokens[0])
        detail = await http.get(f"/api/hooks/{key}")
        assert detail.status_code == 200
        body = detail.json()
        assert body["run_id"] == typed[0] and body["hook_id"] == "hook:srv_approval#1"
        assert body["payload_schema"]["properties"]["approved"]["type"] == "boolean"
        assert body["payload"] is None and body["expires_at"] and body["received_at"] is None
        for text in (listing.text, detail.text):  # the API never hands a token out
            assert not any(token in text for token in tokens)

        assert (await http.get(f"/api/hooks/{'0' * 64}")).status_code == 404
        assert (await http.get("/api/hooks/not-a-key")).status_code == 404
        bad_status = await http.get("/api/hooks", params={"status": "sleeping"})
        assert bad_status.status_code == 422


async def test_admin_resume_validates_and_resumes(app: FastAPI) -> None:
    run_id = await start(srv_approval, "order-9")
    await wait_status(run_id, "suspended")
    key = hash_token(token_of(run_id, "srv_approval"))
    url = f"/api/hooks/{key}/resume"
    async with client(app, READ_TOKEN) as reader:
        refused = await reader.post(url, json={"approved": True, "approver": "ada"})
        assert refused.status_code == 403
    async with client(app) as admin:
        invalid = await admin.post(url, json={"approved": "perhaps"})
        assert invalid.status_code == 422
        assert {e["path"] for e in invalid.json()["errors"]} == {"approved", "approver"}
        still_open = (await admin.get(f"/api/hooks/{key}")).json()
        assert still_open["status"] == "pending"

        done = await admin.post(url, json={"approved": True, "approver": "ada"})
        assert done.status_code == 202, done.text
        assert done.json() == {"run_id": run_id, "hook_id": "hook:srv_approval#1"}
        run = await wait_status(run_id, "completed")
        assert run.result_payload is not None and '"by": "ada"' in run.result_payload

        received = (await admin.get(f"/api/hooks/{key}")).json()
        assert received["status"] == "received" and received["received_at"]
        assert received["payload"] == {"approved": True, "approver": "ada"}
        again = await admin.post(url, json={"approved": False, "approver": "bob"})
        assert again.status_code == 409 and "already received" in again.json()["detail"]
        assert (await admin.post(f"/api/hooks/{'0' * 64}/resume", json={})).status_code == 404
    events = await get_workflow_events(run_id)
    assert [e.type for e in events].count("hook.received") == 1


async def test_resume_of_an_ended_run_is_refused(app: FastAPI) -> None:
    run_id = await start(srv_untyped_hook)
    await wait_status(run_id, "suspended")
    await cancel_workflow(run_id)
    await wait_status(run_id, "cancelled")
    key = hash_token(token_of(run_id, "srv_raw"))
    async with client(app) as admin:
        hook = (await admin.get(f"/api/hooks/{key}")).json()
        assert hook["status"] == "disposed" and not hook["open"]
        late = await admin.post(f"/api/hooks/{key}/resume", json=[1, 2])
        assert late.status_code == 409 and "disposed" in late.json()["detail"]
        disposed = await admin.get("/api/hooks", params={"status": "disposed"})
        assert [h["key"] for h in disposed.json()["hooks"]] == [key]


async def test_resume_body_must_be_json(app: FastAPI) -> None:
    run_id = await start(srv_untyped_hook)
    await wait_status(run_id, "suspended")
    url = f"/api/hooks/{hash_token(token_of(run_id, 'srv_raw'))}/resume"
    async with client(app) as admin:
        text = await admin.post(url, content=b"yes", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415 and "application/json" in text.json()["detail"]
        broken = await admin.post(url, content=b"{", headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and "not valid JSON" in broken.json()["detail"]
        null = await admin.post(url, content=b"null", headers={"Content-Type": "application/json"})
        assert null.status_code == 202  # null is a JSON value an untyped hook takes
        await wait_status(run_id, "completed")
        assert (await admin.get(f"/api/runs/{run_id}")).json()["result"] is None
