"""Workflows for the dashboard example. From this directory, serve them with::

    pyworkflow --module flows dashboard --port 8080

(the server imports this module, so it can run these workflows: start them, start them
again, resume their hooks). See README.md.
"""

from __future__ import annotations

from pydantic import BaseModel

from pyworkflow import FatalError, define_hook, sleep, step, workflow


class Decision(BaseModel):
    approved: bool
    approver: str
    comment: str | None = None


# Typed: the dashboard's hooks page builds its resume form from this model's schema.
expense_decision = define_hook("expense_decision", Decision)

#: Expenses up to this amount are paid without a manager's decision.
AUTO_APPROVE_LIMIT = 100.0


@step()
async def validate_expense(expense_id: str, amount: float) -> dict[str, object]:
    if amount <= 0:
        raise FatalError(f"expense {expense_id}: the amount must be positive, not {amount}")
    return {"expense_id": expense_id, "amount": amount}


@step(max_retries=3, retry_delay="2s")
async def pay(expense_id: str, amount: float) -> str:
    return f"payment-{expense_id}-{amount:.2f}"


@workflow(tags=["expenses"])
async def expense_report(expense_id: str, amount: float) -> dict[str, object]:
    await validate_expense(expense_id, amount)
    approver = "auto"
    if amount > AUTO_APPROVE_LIMIT:
        decision = await expense_decision(timeout="7d")
        if not decision.approved:
            return {"expense_id": expense_id, "paid": False, "by": decision.approver}
        approver = decision.approver
    receipt = await pay(expense_id, amount)
    await sleep("3s", name="settlement")
    return {"expense_id": expense_id, "paid": True, "receipt": receipt, "by": approver}
