"""The dashboard in a real browser: headless Chromium from Debian's packages driven by
Selenium through Debian's matching chromedriver, against ``pyworkflow dashboard`` serving
a SQLite file in a subprocess with :mod:`tests.server.ui_flows` imported (the runs the
pages show really execute, in the server).

Each test is a flow a person performs: log in, filter runs, read a run's timeline,
cancel a sleeping run, resume a hook from its form, pause a schedule. Screenshots go to
a temporary directory, or to ``$PYWORKFLOW_TEST_SCREENSHOTS`` (``make screenshots``
points it at ``docs/img``).

Under CI a missing browser fails the tests; on a laptop they skip with the command that
installs it (the rule of :mod:`tests.services`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyworkflow.core.config import resolve_storage
from pyworkflow.schedules import create_schedule
from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN

webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INSTALL = "sudo apt-get install -y chromium chromium-driver"
WAIT = 10.0  # seconds a page may take to show what a test waits for


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = f"headless Chromium and chromedriver are not installed; install them with: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Server:
    url: str
    storage_url: str
    log: Path
    runs: dict[str, str]  # seeded run ids by role ("order", "refund", ...)

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``pyworkflow --module tests.server.ui_flows dashboard`` on a free port, with both
    tokens set and the runs and schedules the pages show."""
    _browser_paths()  # no server either when the browser is missing
    home = tmp_path_factory.mktemp("dashboard")
    storage_url = f"sqlite:///{home / 'runs.db'}"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYWORKFLOW_DASHBOARD_TOKEN=ADMIN_TOKEN,
        PYWORKFLOW_DASHBOARD_READ_TOKEN=READ_TOKEN,
        PYWORKFLOW_SECRET_KEY="dashboard-browser-tests-secret-key",
        PYTHONPATH=str(REPO),
    )
    log = home / "server.log"
    command = [sys.executable, "-m", "pyworkflow", "--module", "tests.server.ui_flows"]
    command += ["--storage", storage_url, "dashboard", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=home, env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, process, log)
        server = Server(url, storage_url, log, {})
        _seed(server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the dashboard exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the dashboard did not answer within 20 s:\n{log.read_text()}")


def _seed(server: Server) -> None:
    """Start the runs through the API (they execute in the server) and create two
    schedules through the library (as an operator's script would)."""
    starts = {
        "order": ("process_order", ["o-1001", 129.9, ["kettle", "teapot"]]),
        "order2": ("process_order", ["o-1002", 48.5, ["mug"]]),
        "order3": ("process_order", ["o-1003", 310.0, ["grinder", "scale", "filters"]]),
        "refund": ("refund_order", ["o-0950"]),
        "report": ("nightly_report", ["2025-06-01"]),
        "approval": ("large_order_approval", ["o-1004", 7200.0]),
        "shipment": ("wait_for_shipment", ["o-1005"]),
    }
    with server.api() as api:
        for role, (name, args) in starts.items():
            answer = api.post(f"/api/workflows/{name}/runs", json={"args": args})
            assert answer.status_code == 202, answer.text
            server.runs[role] = answer.json()["run_id"]
        settled = {"order", "order2", "order3", "refund", "report"}
        _wait_for(
            lambda: all(_status(api, server.runs[r]) in ("completed", "failed") for r in settled)
        )
        _wait_for(lambda: _status(api, server.runs["approval"]) == "suspended")
        _wait_for(lambda: _status(api, server.runs["shipment"]) == "suspended")
    asyncio.run(_create_schedules(server.storage_url))


async def _create_schedules(storage_url: str) -> None:
    storage = resolve_storage(storage_url)
    try:
        await create_schedule(
            workflow_name="nightly_report",
            spec="0 2 * * *",
            args=("yesterday",),
            schedule_id="nightly-report",
            storage=storage,
        )
        await create_schedule(
            workflow_name="wait_for_shipment",
            spec="6h",
            args=("o-restock",),
            schedule_id="restock-check",
            overlap_policy="buffer_one",
            storage=storage,
        )
    finally:
        await storage.close()


def _status(api: httpx.Client, run_id: str) -> str:
    status: str = api.get(f"/api/runs/{run_id}").json()["status"]
    return status


def _wait_for(condition: Callable[[], Any], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the server")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,1000",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[WebDriver, str], Path]:
    """``shots(driver, name)`` saves the whole page as ``name.png``."""
    target = os.environ.get("PYWORKFLOW_TEST_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def shoot(driver: WebDriver, name: str) -> Path:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1440, min(max(int(height), 700), 2200))
        path = folder / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot {path}"
        driver.set_window_size(1440, 1000)
        return path

    return shoot


@pytest.fixture(autouse=True)
def _no_script_errors(browser: WebDriver) -> Iterator[None]:
    """Every flow ends without a script error or a Content-Security-Policy violation in
    the console (HTMX and app.js run under the pages' strict policy)."""
    browser.get_log("browser")  # what earlier tests left
    yield
    problems = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Uncaught" in entry["message"]
    ]
    assert not problems


def _log_in(driver: WebDriver, server: Server, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{server.url}/login")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _until(driver, lambda d: d.find_element(By.CSS_SELECTOR, "header .role"))


@pytest.fixture
def admin(browser: WebDriver, server: Server) -> WebDriver:
    """The browser, logged in as admin (each test can run alone)."""
    browser.get(f"{server.url}/")
    roles = browser.find_elements(By.CSS_SELECTOR, "header .role")
    if not roles or roles[0].text != "admin":
        _log_in(browser, server, ADMIN_TOKEN)
    return browser


def _until(driver: WebDriver, condition: Callable[[WebDriver], Any]) -> Any:
    # While a page loads, what the condition looks at may be missing or replaced.
    ignored = [NoSuchElementException, StaleElementReferenceException]
    return WebDriverWait(driver, WAIT, ignored_exceptions=ignored).until(condition)


def _heading_status(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "h1 .badge").text


def _rows(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#runs-table tr.run-row")


# -- the flows ------------------------------------------------------------------------------


def test_log_in_with_the_token(browser: WebDriver, server: Server, shots: Any) -> None:
    browser.delete_all_cookies()
    browser.get(f"{server.url}/runs/{server.runs['order']}")
    assert "/login" in browser.current_url  # a page asked for without a login
    shots(browser, "login")

    browser.find_element(By.NAME, "token").send_keys("not-the-token-of-this-server")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "not valid" in _until(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".error")).text

    browser.find_element(By.NAME, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    # Back where the login started, with the session cookie (the token is not kept).
    _until(browser, lambda d: server.runs["order"] in d.current_url)
    assert browser.find_element(By.CSS_SELECTOR, "header .role").text == "admin"
    cookie = browser.get_cookie("pyworkflow_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]

    browser.find_element(By.LINK_TEXT, "Runs").click()
    _until(browser, lambda d: len(_rows(d)) >= len(server.runs))
    shots(browser, "runs")


def test_filter_runs(admin: WebDriver, server: Server) -> None:
    admin.get(f"{server.url}/")
    Select(admin.find_element(By.NAME, "status")).select_by_value("failed")
    admin.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    _until(admin, lambda d: "status=failed" in d.current_url)
    rows = _rows(admin)
    assert [r.get_attribute("data-run-id") for r in rows] == [server.runs["refund"]]
    assert "refund_order" in rows[0].text

    admin.get(f"{server.url}/")
    admin.find_element(By.NAME, "workflow").send_keys("process_order")
    admin.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    _until(admin, lambda d: "workflow=process_order" in d.current_url)
    shown = {r.get_attribute("data-run-id") for r in _rows(admin)}
    assert shown == {server.runs["order"], server.runs["order2"], server.runs["order3"]}


def test_open_a_run_and_see_its_timeline(admin: WebDriver, server: Server, shots: Any) -> None:
    admin.get(f"{server.url}/?workflow=process_order")
    link = admin.find_element(By.LINK_TEXT, server.runs["order"])
    link.click()
    _until(admin, lambda d: _heading_status(d) == "completed")

    names = [e.text for e in admin.find_elements(By.CSS_SELECTOR, "table.timeline .span-name")]
    assert names[0] == "process_order"
    assert {"reserve_stock", "charge_card", "settle", "send_receipt"} <= set(names)
    bars = admin.find_elements(By.CSS_SELECTOR, "table.timeline svg rect.bar")
    assert len(bars) == len(names)
    charge = admin.find_element(By.XPATH, "//tr[.//span[text()='charge_card']]")
    assert charge.find_element(By.CSS_SELECTOR, ".retried").text == "2"  # attempts
    assert "payment gateway timeout" in charge.text  # the failed attempt's error
    assert "kettle" in admin.find_element(By.CSS_SELECTOR, ".columns").text  # the input
    shots(admin, "run")

    admin.get(f"{server.url}/runs/{server.runs['refund']}")
    failure = admin.find_element(By.CSS_SELECTOR, ".failure")
    assert "refund window closed for order o-0950" in failure.text
    assert "Traceback" in failure.find_element(By.CSS_SELECTOR, "pre.traceback").text
    shots(admin, "run-failed")

    admin.get(f"{server.url}/runs/{server.runs['report']}")
    children = admin.find_elements(By.CSS_SELECTOR, "table.timeline tr.kind-child .span-name")
    assert [c.text for c in children] == ["summarize_region"] * 3
    children[0].click()  # the child's bar links to the child's run
    _until(admin, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("summarize"))


def test_cancel_a_sleeping_run(admin: WebDriver, server: Server) -> None:
    run_id = server.runs["shipment"]
    admin.get(f"{server.url}/runs/{run_id}")
    assert _heading_status(admin) == "suspended"
    sleeping = admin.find_element(By.XPATH, "//tr[.//span[text()='carrier_pickup']]")
    assert "sleeping" in sleeping.text

    admin.find_element(By.ID, "cancel-run").click()
    prompt = WebDriverWait(admin, WAIT).until(expected_conditions.alert_is_present())
    prompt.send_keys("customer changed their mind")
    prompt.accept()

    _until(admin, lambda d: _heading_status(d) == "cancelled")
    assert "customer changed their mind" in admin.find_element(By.CSS_SELECTOR, ".facts").text
    assert not admin.find_elements(By.ID, "cancel-run")  # nothing left to cancel


def test_resume_a_hook_from_its_form(admin: WebDriver, server: Server, shots: Any) -> None:
    admin.get(f"{server.url}/runs/{server.runs['approval']}")
    waiting = admin.find_element(By.XPATH, "//tr[.//span[text()='manager_approval']]")
    assert "waiting" in waiting.text and "until" in waiting.text  # its expiry
    shots(admin, "run-waiting")

    admin.get(f"{server.url}/hooks")
    card = admin.find_element(By.CSS_SELECTOR, "article.hook[data-hook-name=manager_approval]")
    assert server.runs["approval"] in card.text
    card.find_element(By.NAME, "field.approved").click()
    card.find_element(By.NAME, "field.approver").send_keys("Dana (ops)")
    Select(card.find_element(By.NAME, "field.priority")).select_by_visible_text("high")
    card.find_element(By.NAME, "field.limit_eur").send_keys("10000")
    shots(admin, "hooks")
    card.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # The form leads to the run, which the delivery woke: it completes with the payload.
    _until(admin, lambda d: server.runs["approval"] in d.current_url)
    _until(admin, lambda d: _heading_status(d) == "completed")
    assert "Dana (ops)" in admin.find_element(By.CSS_SELECTOR, ".columns").text
    admin.get(f"{server.url}/hooks")
    assert not admin.find_elements(By.CSS_SELECTOR, "article.hook")


def test_pause_and_trigger_schedules(admin: WebDriver, server: Server, shots: Any) -> None:
    admin.get(f"{server.url}/schedules")

    def row(schedule_id: str) -> WebElement:
        return admin.find_element(By.CSS_SELECTOR, f"tr[data-schedule-id={schedule_id}]")

    def status(schedule_id: str) -> str:
        return str(row(schedule_id).find_element(By.CSS_SELECTOR, ".badge").text)

    assert "cron 0 2 * * *" in row("nightly-report").text
    assert status("nightly-report") == "active"
    row("nightly-report").find_element(By.CSS_SELECTOR, "button.pause").click()
    _until(admin, lambda d: status("nightly-report") == "paused")
    assert row("nightly-report").find_elements(By.CSS_SELECTOR, "button.resume")

    # Trigger now: a run starts at once and its page opens; the schedule links to it.
    row("restock-check").find_element(By.CSS_SELECTOR, "button.trigger").click()
    _until(admin, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("wait_for"))
    run_id = admin.current_url.rsplit("/", 1)[-1]
    admin.get(f"{server.url}/schedules")
    assert row("restock-check").find_element(By.CSS_SELECTOR, f"a[href$='/runs/{run_id}']")
    shots(admin, "schedules")

    admin.get(f"{server.url}/workflows")
    assert "process_order" in admin.find_element(By.CSS_SELECTOR, "table.workflows").text
    shots(admin, "workflows")


def test_a_read_only_login_sees_no_actions(browser: WebDriver, server: Server) -> None:
    _log_in(browser, server, READ_TOKEN)
    browser.get(f"{server.url}/runs/{server.runs['order']}")
    assert browser.find_element(By.CSS_SELECTOR, "header .role").text == "read-only"
    assert not browser.find_elements(By.CSS_SELECTOR, "form[method=post] button.danger")
    assert not browser.find_elements(By.ID, "retry-run")
    assert not browser.find_elements(By.LINK_TEXT, "Hooks")
    browser.get(f"{server.url}/hooks")
    assert "403" in browser.find_element(By.CSS_SELECTOR, "h1").text
