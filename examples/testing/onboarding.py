"""An onboarding drip campaign: the workflow the tests beside it check.

python -m pytest examples/testing     # from the repository, or copy this folder
"""

from __future__ import annotations

from pyworkflow import RetryableError, patched, sleep, step, workflow

sent: list[str] = []  # what the mail provider was asked to send (the side effect)


@step(max_retries=3, retry_delay="1h")
async def send_email(email: str, template: str) -> str:
    if template == "welcome" and sent.count("welcome-attempt") == 0:
        sent.append("welcome-attempt")
        raise RetryableError("the mail provider is rate limiting us")
    sent.append(template)
    return template


@step()
async def score_lead(email: str) -> int:
    return 80 if email.endswith("@example.com") else 20


@workflow()
async def onboarding(email: str) -> list[str]:
    done = [await send_email(email, "welcome")]
    await sleep("3d")
    done.append(await send_email(email, "tips"))
    # Added after runs were in flight: those keep the old path (no scoring).
    if patched("lead-scoring") and await score_lead(email) > 50:
        done.append(await send_email(email, "sales-call"))
    await sleep("27d")
    done.append(await send_email(email, "offer"))
    return done
