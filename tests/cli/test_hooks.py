"""``pyworkflow hooks list|info|resume``: what an operator sees of the hooks runs wait on,
and delivering a payload from a shell that does not have the workflow's code."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

import pyworkflow
from pyworkflow import define_hook, hook, list_hooks, resume, start, wait_for_run, workflow
from pyworkflow.cli import hooks as hooks_cli
from pyworkflow.cli import main
from pyworkflow.core import config as config_module
from pyworkflow.primitives import hooks as hook_primitives
from pyworkflow.runtime import get_runtime

T = TypeVar("T")
SECRET = "cli-hooks-test-secret-key-0123456789"

tokens: list[str] = []


async def remember(token: str) -> None:
    tokens.append(token)


class Level(StrEnum):
    low = "low"
    high = "high"


class Review(BaseModel):
    approved: bool
    approver: str
    amount: int | None = None
    level: Level = Level.low
    note: str = ""


review = define_hook("cli_review", Review)


@workflow(name="cli_hooks_order")
async def order(order_id: str) -> str:
    decision = await review(on_created=remember)
    verdict = "approved" if decision.approved else "rejected"
    return (
        f"{order_id} {verdict} by {decision.approver} ({decision.level.value}, {decision.amount})"
    )


@workflow(name="cli_hooks_reply")
async def reply(ticket: str) -> str:
    answer = await hook("cli_reply", on_created=remember)
    return f"{ticket}: {answer!r}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYWORKFLOW_SECRET_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    pyworkflow.reset_config()
    tokens.clear()
    yield
    pyworkflow.reset_config()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wf.db'}"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` on a fresh loop (as the CLI runs), leaving nothing open on it."""

    async def main_() -> T:
        try:
            return await coro
        finally:
            await get_runtime("local").shutdown()
            for backend in list(config_module._by_url.values()):
                await backend.close()

    return asyncio.run(main_())


def waiting(url: str, workflow_fn: Any = order, arg: str = "o-1") -> tuple[str, str]:
    """Start a run that waits on its hook; ``(run_id, token)``."""

    async def go() -> str:
        run_id: str = await start(workflow_fn, arg, storage=url)
        return run_id

    return run(go()), tokens[-1]


def cli(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--storage", url, *args], input=input)


def hook_status(url: str, run_id: str) -> str:
    (record,) = run(list_hooks(run_id=run_id, storage=url))
    return record.status.value


def finish(url: str, run_id: str) -> Any:
    """Resume the run as a process serving runs would, and return its result."""

    async def go() -> Any:
        await resume(run_id, storage=url)
        return (await wait_for_run(run_id, storage=url, timeout=10)).result

    return run(go())


@pytest.fixture
def codeless(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Call after the run waits: this process then delivers like one that never imported
    the workflow module (awaiting the hook registered its model)."""
    return lambda: monkeypatch.delitem(hook_primitives._MODELS, "cli_review")


# -- hooks list ----------------------------------------------------------------------------


def test_list_shows_each_hook_with_its_run_and_never_a_token(url: str) -> None:
    run_id, token = waiting(url)
    (record,) = run(list_hooks(run_id=run_id, storage=url))

    result = CliRunner().invoke(main, ["--storage", url, "hooks", "list"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "hook:cli_review#1" in result.output and run_id in result.output
    assert "pending" in result.output
    assert token not in result.output and record.token_hash not in result.output


def test_list_filters_by_run_status_and_limit(url: str) -> None:
    first, first_token = waiting(url, arg="o-1")
    second, _ = waiting(url, arg="o-2")
    assert (
        cli(
            url, "hooks", "resume", first_token, "--payload", '{"approved": true, "approver": "a"}'
        ).exit_code
        == 0
    )

    def listed(*options: str) -> list[dict[str, Any]]:
        result = cli(url, "-o", "json", "hooks", "list", *options)
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["next_cursor"] is None
        return list(data["hooks"])

    assert {h["run_id"] for h in listed()} == {first, second}
    assert [h["run_id"] for h in listed("--run", first)] == [first]
    assert [h["run_id"] for h in listed("--status", "pending")] == [second]
    assert [h["status"] for h in listed("--status", "received")] == ["received"]
    assert len(listed("--limit", "1")) == 1
    row = listed("--run", second)[0]
    assert set(row) == {"hook_id", "name", "run_id", "status", "created_at", "expires_at"}
    datetime.fromisoformat(row["created_at"])


def test_list_plain_is_tab_separated_for_scripts(url: str) -> None:
    run_id, _ = waiting(url)
    result = cli(url, "-o", "plain", "hooks", "list")
    assert result.output.splitlines()[0].split("\t")[:4] == [
        "hook:cli_review#1",
        "cli_review",
        run_id,
        "pending",
    ]


def test_list_refuses_an_unknown_status_as_usage(url: str) -> None:
    result = cli(url, "hooks", "list", "--status", "open")
    assert result.exit_code == 2


# -- hooks info ----------------------------------------------------------------------------


def test_info_by_token_or_by_run_and_hook_id_or_name_shows_the_schema(url: str) -> None:
    run_id, token = waiting(url)
    shown = [
        json.loads(cli(url, "-o", "json", "hooks", "info", *ref).output)
        for ref in (
            [token],
            ["--run", run_id, "hook:cli_review#1"],
            ["--run", run_id, "cli_review"],
        )
    ]
    assert shown[0] == shown[1] == shown[2]
    info = shown[0]
    assert info["hook_id"] == "hook:cli_review#1" and info["run_id"] == run_id
    assert info["status"] == "pending" and info["payload"] is None
    assert info["schema"]["required"] == ["approved", "approver"]
    assert info["token_hash"].endswith("...") and len(info["token_hash"]) == 15
    assert token not in json.dumps(info)


def test_info_table_lists_the_fields_a_payload_needs(url: str) -> None:
    run_id, token = waiting(url)
    (record,) = run(list_hooks(run_id=run_id, storage=url))
    result = CliRunner().invoke(
        main, ["--storage", url, "hooks", "info", token], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    for line in (
        "approved: boolean (required)",
        "approver: string (required)",
        "amount: integer (optional, nullable)",
        "level: one of: low, high (optional)",
        '"$defs"',  # the schema itself, indented
    ):
        assert line in result.output
    assert token not in result.output and record.token_hash not in result.output


def test_info_shows_the_received_payload(url: str) -> None:
    run_id, token = waiting(url)
    cli(url, "hooks", "resume", token, "--payload", '{"approved": false, "approver": "bo"}')
    info = json.loads(cli(url, "-o", "json", "hooks", "info", token).output)
    assert info["status"] == "received" and info["received_at"]
    assert info["payload"]["approver"] == "bo"


def test_info_errors_name_the_problem(url: str) -> None:
    run_id, _ = waiting(url)
    missing = cli(url, "hooks", "info", "whk_" + "A" * 32)
    assert missing.exit_code == 1 and missing.output.startswith(
        "error: no hook with token whk_AAAA"
    )
    malformed = cli(url, "hooks", "info", "whk_short")
    assert malformed.exit_code == 1 and "malformed hook token" in malformed.output
    no_run = cli(url, "hooks", "info", "cli_review")
    assert no_run.exit_code == 2 and "--run RUN_ID" in no_run.output
    unknown_run = cli(url, "hooks", "info", "--run", "run_nope", "cli_review")
    assert unknown_run.exit_code == 1 and "no run with id 'run_nope'" in unknown_run.output
    unknown_hook = cli(url, "hooks", "info", "--run", run_id, "other")
    assert unknown_hook.exit_code == 1 and "has no hook 'other'" in unknown_hook.output


# -- hooks resume --------------------------------------------------------------------------


def test_resume_with_payload_delivers_and_the_run_completes_with_it(url: str) -> None:
    run_id, token = waiting(url)
    result = cli(
        url,
        "-o",
        "json",
        "hooks",
        "resume",
        token,
        "--payload",
        '{"approved": true, "approver": "ada", "amount": 3}',
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "run_id": run_id,
        "hook_id": "hook:cli_review#1",
        "status": "received",
    }
    assert finish(url, run_id) == "o-1 approved by ada (low, 3)"


def test_resume_by_run_and_name_derives_the_token_from_the_secret_key(url: str) -> None:
    run_id, _ = waiting(url)
    result = cli(
        url,
        "hooks",
        "resume",
        "--run",
        run_id,
        "cli_review",
        "--payload",
        '{"approved": true, "approver": "ada"}',
    )
    assert result.exit_code == 0, result.output
    assert hook_status(url, run_id) == "received"


def test_resume_by_run_with_a_different_secret_key_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _ = waiting(url)
    monkeypatch.setenv("PYWORKFLOW_SECRET_KEY", "not-the-deployment-key-at-all")
    pyworkflow.reset_config()
    result = cli(url, "hooks", "resume", "--run", run_id, "cli_review", "--payload", "{}")
    assert result.exit_code == 1
    assert "secret key of this process is not the one" in result.output
    assert hook_status(url, run_id) == "pending"


def test_resume_reads_the_payload_from_a_file_or_standard_input(url: str, tmp_path: Path) -> None:
    first, first_token = waiting(url, arg="o-1")
    second, second_token = waiting(url, arg="o-2")
    payload = tmp_path / "payload.json"
    payload.write_text('{"approved": true, "approver": "file"}')

    assert cli(url, "hooks", "resume", first_token, "--payload-file", str(payload)).exit_code == 0
    piped = cli(
        url,
        "hooks",
        "resume",
        second_token,
        "--payload-file",
        "-",
        input='{"approved": false, "approver": "pipe"}',
    )

    assert piped.exit_code == 0, piped.output
    assert finish(url, first) == "o-1 approved by file (low, None)"
    assert finish(url, second) == "o-2 rejected by pipe (low, None)"


def test_resume_without_a_payload_and_without_a_terminal_is_a_usage_error(url: str) -> None:
    run_id, token = waiting(url)
    result = cli(url, "hooks", "resume", token)
    assert result.exit_code == 2
    assert "--payload" in result.output
    both = cli(url, "hooks", "resume", token, "--payload", "{}", "--payload-file", "-", input="{}")
    assert both.exit_code == 2
    not_json = cli(url, "hooks", "resume", token, "--payload", "{approved: yes}")
    assert not_json.exit_code == 2 and "not a JSON value" in not_json.output
    nan = cli(
        url,
        "hooks",
        "resume",
        token,
        "--payload",
        '{"approved": true, "approver": "a", "amount": NaN}',
    )
    assert nan.exit_code == 2
    assert hook_status(url, run_id) == "pending"


def test_resume_without_the_code_refuses_what_the_schema_refuses_and_keeps_the_hook_open(
    url: str, codeless: Any
) -> None:
    run_id, token = waiting(url)
    codeless()

    refused = cli(
        url, "hooks", "resume", token, "--payload", '{"approved": "notabool", "approver": "ada"}'
    )

    assert refused.exit_code == 1
    assert refused.output == (
        "error: payload refused by hook 'cli_review' (hook:cli_review#1): "
        "approved: 'notabool' is not of type 'boolean'\n"
    )
    assert hook_status(url, run_id) == "pending"
    accepted = cli(
        url, "hooks", "resume", token, "--payload", '{"approved": true, "approver": "ada"}'
    )
    assert accepted.exit_code == 0, accepted.output
    assert finish(url, run_id) == "o-1 approved by ada (low, None)"


def test_resume_with_the_model_here_lists_pydantics_errors_on_one_line(url: str) -> None:
    run_id, token = waiting(url)
    refused = cli(url, "hooks", "resume", token, "--payload", '{"approved": "notabool"}')
    assert refused.exit_code == 1
    (line,) = refused.output.splitlines()
    assert line.startswith("error: payload refused by hook whk_")
    assert (
        "approved: Input should be a valid boolean" in line and "approver: Field required" in line
    )
    assert hook_status(url, run_id) == "pending"


def test_resume_twice_says_the_hook_already_received_its_payload(url: str) -> None:
    _, token = waiting(url)
    payload = '{"approved": true, "approver": "ada"}'
    assert cli(url, "hooks", "resume", token, "--payload", payload).exit_code == 0
    again = cli(url, "hooks", "resume", token, "--payload", payload)
    assert again.exit_code == 1 and "already received a payload" in again.output


def test_resume_on_a_terminal_prompts_per_field_typed_by_the_schema(
    url: str, monkeypatch: pytest.MonkeyPatch, codeless: Any
) -> None:
    run_id, token = waiting(url)
    codeless()
    monkeypatch.setattr(hooks_cli, "_interactive", lambda: True)
    answers = [
        "maybe",  # approved: not yes/no, asked again
        "yes",
        "",  # approver is required: asked again
        "ada",
        "lots",  # amount: not an integer, asked again
        "12",
        "urgent",  # level: not a choice, asked again
        "high",
        "",  # note: optional, left out
        "y",  # deliver this payload?
    ]

    result = cli(url, "hooks", "resume", token, input="\n".join(answers) + "\n")

    assert result.exit_code == 0, result.output
    assert "approved (yes/no)" in result.output
    assert "amount (integer, optional, default null, 'null' for none)" in result.output
    assert "level (one of: low, high, optional" in result.output
    assert "answer yes or no" in result.output and "choose one of: low, high" in result.output
    assert finish(url, run_id) == "o-1 approved by ada (high, 12)"


def test_prompted_payload_is_not_delivered_when_the_operator_says_no(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, token = waiting(url)
    monkeypatch.setattr(hooks_cli, "_interactive", lambda: True)
    result = cli(url, "hooks", "resume", token, input="no\nbo\n\n\n\nn\n")
    assert result.exit_code == 1  # Aborted
    assert hook_status(url, run_id) == "pending"
    skipped = cli(url, "hooks", "resume", token, "--yes", input="no\nbo\nnull\nlow\nhi\n")
    assert skipped.exit_code == 0, skipped.output
    assert finish(url, run_id) == "o-1 rejected by bo (low, None)"
    again = cli(url, "hooks", "resume", token)  # nothing is asked for a received hook
    assert again.exit_code == 1
    assert again.output == "error: hook hook:cli_review#1 already received a payload\n"


def test_a_hook_without_schema_prompts_for_one_json_value(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, token = waiting(url, reply, "t-1")
    monkeypatch.setattr(hooks_cli, "_interactive", lambda: True)
    result = cli(url, "hooks", "resume", token, "-y", input='{oops\n{"text": "thanks"}\n')
    assert result.exit_code == 0, result.output
    assert "payload (JSON)" in result.output and "not a JSON value" in result.output
    assert finish(url, run_id) == "t-1: {'text': 'thanks'}"


# -- processes without the workflow's code (the installed console script) ------------------

WORKFLOW_MODULE = """
from pathlib import Path

from pydantic import BaseModel

from pyworkflow import define_hook, workflow


class Approval(BaseModel):
    approved: bool
    approver: str


approval = define_hook("approval", Approval)


async def save_token(token: str) -> None:
    Path("token.txt").write_text(token)


@workflow()
async def order(order_id: str) -> str:
    decision = await approval(on_created=save_token)
    verdict = "approved" if decision.approved else "rejected"
    return f"{order_id} {verdict} by {decision.approver}"
"""

START = "import approvals, pyworkflow; print(pyworkflow.start(approvals.order, 'o-1'))"

# A process serving runs on the local runtime, with the code: it finishes the run once a
# payload was delivered elsewhere (its recovery pass), then prints the run's result.
SERVE = """
import asyncio, sys
import approvals, pyworkflow
from pyworkflow.runtime import get_runtime

async def main():
    serving = asyncio.create_task(get_runtime("local").serve())
    run = await pyworkflow.wait_for_run(sys.argv[1], timeout=60)
    serving.cancel()
    print(run.status.value, run.result)

asyncio.run(main())
"""

# Never imports the workflow module: only the stored schema can judge the payload.
CODELESS = """
import asyncio, json, sys
import pyworkflow
from pyworkflow import HookPayloadError, list_hooks, resume_hook

async def main():
    token, payload = sys.argv[1], json.loads(sys.argv[2])
    assert "approvals" not in sys.modules
    try:
        result = await resume_hook(token, payload)
    except HookPayloadError as exc:
        print(json.dumps({"refused": exc.errors}))
    else:
        print(json.dumps({"accepted": result.hook_id}))
    (record,) = await list_hooks(limit=1)
    print(record.status.value)
    await pyworkflow.get_storage().close()

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    from tests.services import require_service
    from tests.storage import backend_postgres

    pytest.importorskip("asyncpg")
    base = require_service("postgres")
    schema = backend_postgres.new_schema()
    yield backend_postgres.with_options(base, schema=schema)
    asyncio.run(backend_postgres.admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


class Project:
    """A project directory with the workflow module, and an operator's directory without it."""

    def __init__(self, root: Path, storage: str) -> None:
        self.app = root / "app"
        self.ops = root / "ops"
        self.app.mkdir()
        self.ops.mkdir()
        (self.app / "approvals.py").write_text(WORKFLOW_MODULE)
        self.storage = storage
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        self.env.update(
            PYWORKFLOW_SECRET_KEY=SECRET,
            PYWORKFLOW_STORAGE=storage,
            PYWORKFLOW_TIMER_POLL_INTERVAL="0.2",
            COLUMNS="200",
        )

    def python(self, cwd: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
        )

    def pyworkflow(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """The installed console script, run from the directory without the code."""
        script = Path(sys.executable).parent / "pyworkflow"
        stdin: dict[str, Any] = (
            {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        )
        return subprocess.run(
            [str(script), "--storage", self.storage, *args],
            cwd=self.ops,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            **stdin,
        )

    def start(self) -> tuple[str, str]:
        started = self.python(self.app, START)
        assert started.returncode == 0, started.stderr
        return started.stdout.strip().splitlines()[-1], (self.app / "token.txt").read_text()

    def serve(self, run_id: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", SERVE, run_id],
            cwd=self.app,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def test_a_process_without_the_code_refuses_an_invalid_payload_and_accepts_a_valid_one(
    tmp_path: Path, storage_url: str
) -> None:
    project = Project(tmp_path, storage_url)
    run_id, token = project.start()

    refused = project.python(
        project.ops, CODELESS, token, '{"approved": "notabool", "approver": "ada"}'
    )
    assert refused.returncode == 0, refused.stderr
    verdict, status = refused.stdout.splitlines()
    assert json.loads(verdict) == {
        "refused": [{"path": "approved", "message": "'notabool' is not of type 'boolean'"}]
    }
    assert status == "pending"

    accepted = project.python(project.ops, CODELESS, token, '{"approved": true, "approver": "ada"}')
    assert accepted.stdout.splitlines() == ['{"accepted": "hook:approval#1"}', "received"]
    assert "Traceback" not in accepted.stderr and "ERROR" not in accepted.stderr

    served = project.python(project.app, SERVE, run_id)  # the code's process, later
    assert served.stdout.strip() == "completed o-1 approved by ada", served.stderr


def test_the_cli_without_the_code_lists_shows_and_resumes_while_a_worker_serves_the_run(
    tmp_path: Path, storage_url: str
) -> None:
    project = Project(tmp_path, storage_url)
    run_id, token = project.start()
    server = project.serve(run_id)
    try:
        listed = project.pyworkflow("hooks", "list", "--status", "pending")
        assert listed.returncode == 0, listed.stderr
        assert "hook:approval#1" in listed.stdout and run_id in listed.stdout
        assert token not in listed.stdout

        info = project.pyworkflow("-o", "json", "hooks", "info", "--run", run_id, "approval")
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["schema"]["properties"]["approved"] == {
            "title": "Approved",
            "type": "boolean",
        }

        bad = project.pyworkflow(
            "hooks", "resume", token, "--payload", '{"approved": "notabool", "approver": "ada"}'
        )
        assert bad.returncode == 1
        assert bad.stderr == (
            "error: payload refused by hook 'approval' (hook:approval#1): "
            "approved: 'notabool' is not of type 'boolean'\n"
        )
        still = project.pyworkflow("-o", "plain", "hooks", "list", "--run", run_id)
        assert still.stdout.split("\t")[3] == "pending"

        good = project.pyworkflow(
            "hooks",
            "resume",
            "--run",
            run_id,
            "approval",
            "--payload-file",
            "-",
            input='{"approved": true, "approver": "ada"}',
        )
        assert good.returncode == 0, good.stderr
        assert "received" in good.stdout
        assert good.stderr == ""  # no traceback, no warning: nothing ran here

        out, err = server.communicate(timeout=60)
        assert out.strip() == "completed o-1 approved by ada", err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_the_cli_without_payload_off_a_terminal_is_a_usage_error(
    tmp_path: Path, storage_url: str
) -> None:
    project = Project(tmp_path, storage_url)
    run_id, token = project.start()
    result = project.pyworkflow("hooks", "resume", token)  # standard input: /dev/null
    assert result.returncode == 2 and "no payload" in result.stderr
    listed = project.pyworkflow("-o", "plain", "hooks", "list", "--run", run_id)
    assert listed.stdout.split("\t")[3] == "pending"


def _pane(socket: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, "capture-pane", "-p", "-t", "prompt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _wait_for(socket: str, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        pane = _pane(socket)
        if text in pane:
            return pane
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on screen:\n{pane}")
        time.sleep(0.1)


def test_on_a_terminal_resume_asks_for_each_field_of_the_schema(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    project = Project(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")
    run_id, token = project.start()
    socket = f"pwtest-{os.getpid()}-{time.monotonic_ns()}"
    env = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in project.env.items() if k.startswith("PYWORKFLOW_")
    )
    script = Path(sys.executable).parent / "pyworkflow"
    command = (
        f"cd {shlex.quote(str(project.ops))} && env {env} {shlex.quote(str(script))} "
        f"--storage {shlex.quote(project.storage)} hooks resume --run {run_id} approval; "
        "echo EXIT=$?; sleep 60"
    )
    subprocess.run(
        [
            "tmux",
            "-L",
            socket,
            "new-session",
            "-d",
            "-s",
            "prompt",
            "-x",
            "150",
            "-y",
            "40",
            command,
        ],
        check=True,
    )
    try:

        def answer(prompt: str, text: str) -> None:
            _wait_for(socket, prompt)
            subprocess.run(
                ["tmux", "-L", socket, "send-keys", "-t", "prompt", text, "Enter"], check=True
            )

        answer("approved (yes/no):", "perhaps")
        answer("Error: answer yes or no", "yes")
        answer("approver (text):", "ada")
        answer("deliver this payload? [Y/n]", "")
        screen = _wait_for(socket, "EXIT=")
        assert "EXIT=0" in screen, screen
        assert '"approver": "ada"' in screen and "received" in screen
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    served = project.python(project.app, SERVE, run_id)
    assert served.stdout.strip() == "completed o-1 approved by ada", served.stderr
