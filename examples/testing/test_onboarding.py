"""The three testing tools on one workflow (needs pytest and pytest-asyncio; the
``pyworkflow_*`` fixtures come with pyworkflow).

* time skipping: a 30-day campaign in milliseconds;
* crash points: the campaign survives a crash after every write;
* a golden history: a run recorded before ``lead-scoring`` existed still replays.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from onboarding import onboarding, sent

from pyworkflow.testing import assert_replays

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _clean() -> None:
    sent.clear()


@pytest.mark.pyworkflow_env(time_skipping=True)
async def test_the_whole_campaign_in_milliseconds(pyworkflow_env) -> None:
    began = time.perf_counter()
    run_id = await pyworkflow_env.start(onboarding, "ada@example.com")
    assert await pyworkflow_env.result(run_id) == ["welcome", "tips", "sales-call", "offer"]
    assert time.perf_counter() - began < 1.0
    assert pyworkflow_env.skipped.days == 30  # a retry hour, 3 days, 27 days


async def test_nothing_is_sent_before_its_day(pyworkflow_env) -> None:
    run_id = await pyworkflow_env.start(onboarding, "bob@elsewhere.org")
    await pyworkflow_env.advance("1h")  # the welcome email's retry
    await pyworkflow_env.advance("2d")
    assert [s for s in sent if not s.endswith("-attempt")] == ["welcome"]
    await pyworkflow_env.advance("1d")
    assert sent[-1] == "tips"
    await pyworkflow_env.advance("27d")
    assert await pyworkflow_env.result(run_id) == ["welcome", "tips", "offer"]


async def test_every_crash_point(pyworkflow_crash_points) -> None:
    def no_email_twice(point) -> None:
        # At-least-once: a step whose completion a crash cut off runs again. Here that
        # may re-send one email; never more.
        for template in ("welcome", "tips", "offer"):
            assert sent.count(template) <= 2, (point, sent)

    report = await pyworkflow_crash_points(
        onboarding, "cy@example.com", reset=sent.clear, check=no_email_twice
    )
    assert report.result == ["welcome", "tips", "sales-call", "offer"]


def test_runs_recorded_before_lead_scoring_still_replay() -> None:
    # Exported with: pyworkflow runs export RUN_ID > histories/before-lead-scoring.json
    assert_replays(HERE / "histories" / "before-lead-scoring.json")
