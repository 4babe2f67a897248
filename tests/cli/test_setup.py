"""``pyworkflow setup``: the file it writes is the one the loader reads, and its report
says which configured service answers, without ever printing a password."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import pyworkflow
from pyworkflow.cli import main
from pyworkflow.core.config import get_config
from tests.services import require_service

SECRET = "s3cr3t-Pw"


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def checks_of(stdout: str) -> dict[str, dict[str, str]]:
    data = json.loads(stdout)
    assert set(data) == {"checks", "next_cursor"}
    return {row["component"]: row for row in data["checks"]}


def read_back(directory: Path) -> pyworkflow.PyWorkflowConfig:
    """The configuration a new process started in ``directory`` would use."""
    pyworkflow.reset_config()
    cwd = Path.cwd()
    os.chdir(directory)
    try:
        return get_config()
    finally:
        os.chdir(cwd)


def postgres_url(password: str | None = None) -> str:
    """The test server's URL with a fresh schema (the server trusts local users, so any
    password is accepted: it only has to be kept out of the output)."""
    pytest.importorskip("asyncpg")
    base = require_service("postgres")
    if password:
        base = base.replace("postgres@", f"postgres:{password}@", 1)
    return f"{base}?schema=pwcli_{uuid.uuid4().hex[:12]}"


def drop_schema(url: str) -> None:
    import asyncio

    import asyncpg

    schema = url.rsplit("schema=", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(require_service("postgres"))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = postgres_url(SECRET)
    yield url
    drop_schema(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- writing the file -----------------------------------------------------------------------


def test_yes_writes_the_embedded_default_and_checks_it(tmp_path: Path) -> None:
    code, out, err = invoke("setup", "--yes")
    assert code == 0, err
    assert "wrote" in out and "storage" in out and "ok" in out
    text = (tmp_path / "pyworkflow.config.yaml").read_text()
    assert "storage: sqlite:///.pyworkflow/pyworkflow.db" in text
    config = read_back(tmp_path)
    assert config.storage == "sqlite:///.pyworkflow/pyworkflow.db"
    assert config.default_runtime == "local"
    assert config.modules == []
    assert (tmp_path / ".pyworkflow" / "pyworkflow.db").exists()  # the check connected


def test_flags_are_written_in_keys_the_loader_reads(tmp_path: Path) -> None:
    code, _, err = invoke(
        "setup",
        "--yes",
        "--no-check",
        "--storage",
        "file:///srv/wf",
        "--runtime",
        "celery",
        "--broker",
        "amqp://guest@mq:5672//",
        "-m",
        "app.flows,app.billing",
        "--module",
        "app.more",
    )
    assert code == 0, err
    config = read_back(tmp_path)
    assert config.storage == "file:///srv/wf"
    assert config.default_runtime == "celery"
    assert config.celery_broker == "amqp://guest@mq:5672//"
    assert config.modules == ["app.flows", "app.billing", "app.more"]


def test_a_storage_kind_stands_for_its_default_url(tmp_path: Path) -> None:
    code, _, err = invoke("setup", "--yes", "--no-check", "--storage", "postgres")
    assert code == 0, err
    assert read_back(tmp_path).storage == "postgresql://postgres@localhost:5432/postgres"


def test_an_unknown_storage_kind_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = invoke("setup", "--yes", "--storage", "oracle")
    assert code == 2
    assert "oracle" in err
    assert not (tmp_path / "pyworkflow.config.yaml").exists()


def test_an_unknown_url_scheme_is_refused_before_writing(tmp_path: Path) -> None:
    code, _, err = invoke("setup", "--yes", "--storage", "postgress://db/x")
    assert code == 2
    assert "postgress" in err and "postgresql" in err
    assert not (tmp_path / "pyworkflow.config.yaml").exists()


def test_a_broker_alone_means_the_celery_runtime(tmp_path: Path) -> None:
    code, _, err = invoke("setup", "--yes", "--no-check", "--broker", "redis://mq:6379/0")
    assert code == 0, err
    config = read_back(tmp_path)
    assert config.default_runtime == "celery"
    assert config.celery_broker == "redis://mq:6379/0"


def test_global_options_count_as_setup_flags(tmp_path: Path) -> None:
    code, _, err = invoke(
        "--storage", "sqlite:///g.db", "-m", "flows", "setup", "--yes", "--no-check"
    )
    assert code == 0, err
    config = read_back(tmp_path)
    assert config.storage == "sqlite:///g.db"
    assert config.modules == ["flows"]


def test_an_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    path = tmp_path / "pyworkflow.config.yaml"
    path.write_text("runtime: local\n")
    code, _, err = invoke("setup", "--yes")
    assert code == 1
    assert "already exists" in err and "--force" in err
    assert path.read_text() == "runtime: local\n"

    code, _, err = invoke("setup", "--yes", "--force", "--no-check", "--storage", "memory://")
    assert code == 0, err
    assert read_back(tmp_path).storage == "memory://"


def test_interactive_answers_are_written(tmp_path: Path) -> None:
    (tmp_path / "workflows.py").write_text("")
    answers = "postgresql\npostgresql://app@db:5432/orders\ncelery\nredis://mq:6379/2\n\n"
    code, out, err = invoke("setup", "--no-check", input=answers)
    assert code == 0, err
    assert "Storage" in out and "Runtime" in out and "Celery broker URL" in out
    # The module prompt proposed the workflows.py found here; Enter accepted it.
    assert "[workflows]" in out
    config = read_back(tmp_path)
    assert config.storage == "postgresql://app@db:5432/orders"
    assert config.default_runtime == "celery"
    assert config.celery_broker == "redis://mq:6379/2"
    assert config.modules == ["workflows"]


def test_interactive_asks_only_what_flags_left_open(tmp_path: Path) -> None:
    code, out, err = invoke(
        "setup", "--no-check", "--storage", "sqlite:///x.db", "--runtime", "local", input="a, b\n"
    )
    assert code == 0, err
    assert "Storage" not in out and "Runtime" not in out
    assert read_back(tmp_path).modules == ["a", "b"]


def test_interactive_storage_kind_proposes_its_url(tmp_path: Path) -> None:
    code, out, err = invoke("setup", "--no-check", input="mysql\n\nlocal\n\n")
    assert code == 0, err
    assert "mysql://root@localhost:3306/pyworkflow" in out
    assert read_back(tmp_path).storage == "mysql://root@localhost:3306/pyworkflow"


def test_check_only_and_no_check_exclude_each_other() -> None:
    code, _, err = invoke("setup", "--no-check", "--check-only")
    assert code == 2
    assert "exclude" in err


# -- checking what it names -----------------------------------------------------------------


def test_json_report_has_a_stable_shape(tmp_path: Path) -> None:
    code, out, err = invoke("-o", "json", "setup", "--yes")
    assert code == 0, err
    checks = checks_of(out)  # stdout holds the JSON only; the "wrote" note is on stderr
    assert "wrote" in err
    assert list(checks) == ["storage", "runtime"]
    assert checks["storage"]["status"] == "ok"
    assert set(checks["storage"]) == {"component", "setting", "status", "detail"}


def test_plain_report_is_tab_separated(tmp_path: Path) -> None:
    code, out, _ = invoke("-o", "plain", "setup", "--yes")
    assert code == 0
    first = out.splitlines()[0].split("\t")
    assert first[:3] == ["storage", "sqlite:///.pyworkflow/pyworkflow.db", "ok"]


def test_postgres_answers_and_its_password_is_never_printed(tmp_path: Path, pg_url: str) -> None:
    code, out, err = invoke("setup", "--yes", "--storage", pg_url)
    assert code == 0, err
    assert SECRET not in out + err
    assert "postgres:***@" in out
    # The file holds the password, so only its owner may read it.
    path = tmp_path / "pyworkflow.config.yaml"
    assert SECRET in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "mode 600" in out

    code, out, err = invoke("-o", "json", "setup", "--check-only")
    assert code == 0, err
    assert checks_of(out)["storage"]["status"] == "ok"
    assert SECRET not in out + err


def test_unreachable_storage_fails_with_the_reason_and_no_password(tmp_path: Path) -> None:
    pytest.importorskip("asyncpg")
    url = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/db"
    code, out, err = invoke("-o", "json", "setup", "--yes", "--storage", url)
    assert code == 1
    storage = checks_of(out)["storage"]
    assert storage["status"] == "failed"
    assert "connect" in storage["detail"]
    assert storage["setting"] == f"postgresql://app:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert "check failed: storage" in err
    assert SECRET not in out + err


def test_a_server_that_never_answers_fails_within_the_timeout(tmp_path: Path) -> None:
    pytest.importorskip("asyncpg")
    with socket.socket() as silent:  # accepts TCP connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        code, out, _ = invoke(
            "-o", "json", "setup", "--yes", "--timeout", "1", "--storage",
            f"postgresql://postgres@127.0.0.1:{port}/db",
        )  # fmt: skip
    assert code == 1
    assert checks_of(out)["storage"]["detail"] == "no answer within 1 s"


@pytest.mark.parametrize("broker_service", ["redis", "rabbitmq"])
def test_celery_broker_that_answers(tmp_path: Path, broker_service: str) -> None:
    broker = require_service(broker_service)
    code, out, err = invoke(
        "-o", "json", "setup", "--yes", "--runtime", "celery", "--broker", broker
    )
    assert code == 0, err
    checks = checks_of(out)
    assert list(checks) == ["storage", "runtime", "broker"]
    assert checks["broker"]["status"] == "ok"
    assert "connected" in checks["broker"]["detail"]
    assert "guest:guest" not in out  # RabbitMQ's URL carries a password


def test_celery_broker_that_refuses(tmp_path: Path) -> None:
    require_service("rabbitmq")
    broker = f"amqp://guest:{SECRET}@127.0.0.1:5672//"
    code, out, err = invoke(
        "-o", "json", "setup", "--yes", "--runtime", "celery", "--broker", broker
    )
    assert code == 1
    checks = checks_of(out)
    assert checks["broker"]["status"] == "failed"
    assert "ACCESS_REFUSED" in checks["broker"]["detail"]
    assert checks["broker"]["setting"] == "amqp://guest:***@127.0.0.1:5672//"
    assert checks["storage"]["status"] == "ok"
    assert SECRET not in out + err


def test_celery_broker_that_is_down(tmp_path: Path) -> None:
    broker = f"redis://127.0.0.1:{free_port()}/0"
    code, out, _ = invoke("-o", "json", "setup", "--yes", "--runtime", "celery", "--broker", broker)
    assert code == 1
    assert "refused" in checks_of(out)["broker"]["detail"].lower()


def test_modules_are_found_without_being_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    (tmp_path / "flows.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    code, out, err = invoke("-o", "json", "setup", "--yes", "-m", "flows", "-m", "nope.flows")
    assert code == 1
    rows = json.loads(out)["checks"]
    modules = {r["setting"]: r for r in rows if r["component"] == "module"}
    assert modules["flows"]["status"] == "ok"
    assert modules["flows"]["detail"].endswith("flows.py")
    assert modules["nope.flows"]["status"] == "failed"
    assert "nope" in modules["nope.flows"]["detail"]
    assert "check failed: module" in err
    assert not marker.exists()  # a script's top level may start runs: never executed


def test_check_only_checks_the_file_as_written(tmp_path: Path) -> None:
    (tmp_path / "pyworkflow.config.yaml").write_text("storage: memory://\nruntime: local\n")
    code, out, err = invoke("-o", "json", "setup", "--check-only")
    assert code == 0, err
    storage = checks_of(out)["storage"]
    assert storage["setting"] == "memory://"
    assert "keeps nothing between processes" in storage["detail"]
    assert (tmp_path / "pyworkflow.config.yaml").read_text().startswith("storage: memory://")


def test_check_only_without_a_file_checks_the_defaults(tmp_path: Path) -> None:
    code, out, err = invoke("-o", "json", "setup", "--check-only")
    assert code == 0, err
    assert "no pyworkflow.config.yaml here" in err
    assert "(default)" in checks_of(out)["storage"]["setting"]
    assert not (tmp_path / "pyworkflow.config.yaml").exists()


def test_environment_overrides_are_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYWORKFLOW_STORAGE", "memory://")
    code, out, err = invoke("-o", "json", "setup", "--yes")
    assert code == 0, err
    assert "PYWORKFLOW_STORAGE" in err
    assert checks_of(out)["storage"]["setting"] == "sqlite:///.pyworkflow/pyworkflow.db"


def test_mask_and_scrub_cover_passwords_everywhere() -> None:
    from pyworkflow.cli.setup import mask_url, scrub

    assert mask_url("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert (
        mask_url("dynamodb://AKIAKEY:topsecret@table?region=x") == "dynamodb://***@table?region=x"
    )
    url = "mysql://u:p%40ss@h/db"
    assert scrub(f"cannot log in as u with p@ss to {url}", url) == (
        "cannot log in as u with *** to mysql://u:***@h/db"
    )


# -- the installed command ------------------------------------------------------------------


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "pyworkflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_installed_setup_on_sqlite(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text("")
    proc = run_cli(tmp_path, "setup", "--yes", "--storage", "sqlite:///app.db", "-m", "flows")
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "flows.py" in proc.stdout
    again = run_cli(tmp_path, "-o", "json", "setup", "--check-only")
    assert again.returncode == 0, again.stderr
    assert [c["status"] for c in json.loads(again.stdout)["checks"]] == ["ok", "ok", "ok"]


def test_installed_setup_on_postgres(tmp_path: Path, pg_url: str) -> None:
    proc = run_cli(tmp_path, "setup", "--yes", "--storage", pg_url)
    assert proc.returncode == 0, proc.stderr
    assert "Postgres" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    failed = run_cli(tmp_path, "setup", "--yes", "--storage", "sqlite:///x.db")
    assert failed.returncode == 1
    assert "already exists" in failed.stderr
