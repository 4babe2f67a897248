"""``patched()``: change a workflow's code while runs of the old code are in flight."""

from __future__ import annotations

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.utils.names import check_name


def patched(patch_id: str) -> bool:
    """Whether this run takes the new path of the change named ``patch_id``.

    ::

        if patched("fraud-check"):
            await check_fraud(order)     # the new code
        await charge(order)              # runs started before the deploy replay this

    A run that reaches the call for the first time takes the new path, and that is
    recorded (once per run: later calls answer the same). A run replaying a history
    recorded before the change, past this point, answers ``False``: it keeps the path
    its history holds. Outside a durable run (a transient run, a step, no run at all)
    the answer is ``True``.

    Retire a patch once no run takes its old path (``pyworkflow verify`` lists how many
    still do): drop the old branch, keep the ``patched()`` call or the new code alone.

    Raises:
        ValueError: ``patch_id`` is not 1-100 letters, digits, ``_ . : -``.
    """
    check_name(patch_id, "patch id")
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        return True
    return ctx.patched(patch_id)
