"""The Celery runtime: workflows and steps on Celery workers, timers fired by a scheduler.

Start workers with ``celery -A pyworkflow.celery.app worker`` (or ``pyworkflow worker``)
and fire timers with ``celery -A pyworkflow.celery.app beat`` (or ``pyworkflow
scheduler``); see ``docs/deployment.md``. Select the runtime with
``configure(default_runtime="celery")`` or ``start(..., runtime="celery")``.
"""
