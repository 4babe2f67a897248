"""OpenTelemetry traces of runs and steps (the optional extra ``otel``).

Spans (``docs/observability.md`` shows the tree):

* ``workflow <name>``: one execution (attempt) of a run, from its start or wake-up to its
  outcome stored. Its parent is the trace context stored with the run (the caller's when
  the run was created), never what happens to be current where it executes: a run woken
  by a timer, a worker or a recovery sweep goes on in the same trace. A run stored before
  runs had a trace context gets a new root for each attempt.
* ``step <name>``: one live attempt of a step body, child of the span current where it
  runs: the workflow attempt inline, the dispatching attempt on a Celery step worker
  (carried in the message headers). A replayed step never enters the attempt loop, so it
  has no span.
* ``start <name>``: the root of a run's trace when it was created with no span current
  (a schedule's tick, a script), ended at once: every attempt of the run shares its trace.

A trace context travels as W3C ``traceparent``/``tracestate`` values, stored with a run as
small JSON text (:data:`~pyworkflow.storage.schemas.WorkflowRun.trace_context`) and sent
as Celery message headers. Values read from storage or a broker are used only when well
formed; anything else is ignored (the span starts a new trace).

Without the ``opentelemetry-api`` package nothing here imports it: the first hook finds
it missing, and from then on every hook returns at once. Spans go to the global tracer
provider (``opentelemetry.trace.set_tracer_provider``) unless :func:`use_tracer_provider`
names another. With the API alone and no provider set, nothing could record a span, so
none is made: a stored or received context is still made current, to be passed on.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pyworkflow.context.base import current_context
from pyworkflow.observability import lifecycle
from pyworkflow.storage.schemas import Event, EventType, RunStatus

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# W3C trace context, version 00, with non-zero ids (what every OpenTelemetry SDK sends).
_TRACEPARENT = re.compile(r"00-(?!0{32}-)[0-9a-f]{32}-(?!0{16}-)[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")  # printable ASCII; members checked by OTel


def trace_context_of(traceparent: Any, tracestate: Any = None) -> str | None:
    """The stored form (JSON text) of a ``traceparent``/``tracestate`` pair read from
    outside (message headers): ``None`` unless ``traceparent`` is well formed. A malformed
    ``tracestate`` is dropped alone, as W3C asks."""
    carrier = _checked(traceparent, tracestate)
    return None if carrier is None else _dumps(carrier)


def _checked(traceparent: Any, tracestate: Any) -> dict[str, str] | None:
    if not isinstance(traceparent, str) or not _TRACEPARENT.fullmatch(traceparent):
        return None
    carrier = {TRACEPARENT: traceparent}
    if isinstance(tracestate, str) and _TRACESTATE.fullmatch(tracestate):
        carrier[TRACESTATE] = tracestate
    return carrier


def _dumps(carrier: dict[str, str]) -> str:
    return json.dumps(carrier, separators=(",", ":"))


def headers(trace_context: str | None = None) -> dict[str, str]:
    """The ``traceparent``/``tracestate`` headers of a message: those of ``trace_context``
    (stored form), else of the span current here (none without the extra)."""
    if trace_context is not None:
        return _carrier(trace_context) or {}
    api = _otel()
    if api is None:
        return {}
    carrier: dict[str, str] = {}
    api.propagator.inject(carrier)
    return carrier


def current_trace_context() -> str | None:
    """The span current here, in stored form (``None``: no span, or no extra)."""
    api = _otel()
    if api is None:
        return None
    carrier: dict[str, str] = {}
    api.propagator.inject(carrier)
    return _dumps(carrier) if carrier else None


def new_run_trace_context(run_id: str, workflow_name: str) -> str | None:
    """The trace context a new run stores: the span current here (the caller's, or the
    parent run's attempt), or, with none current and spans recorded, a ``start <name>``
    root of its own, so all of the run's attempts share one trace."""
    api = _otel()
    if api is None:
        return None
    carrier: dict[str, str] = {}
    api.propagator.inject(carrier)
    if not carrier and api.recording():
        span = api.tracer.start_span(
            f"start {workflow_name}",
            attributes={RUN_ID: run_id, WORKFLOW: workflow_name},
        )
        span.end()
        api.propagator.inject(carrier, api.trace.set_span_in_context(span))
    return _dumps(carrier) if carrier else None


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` rather than the global tracer provider (``None``: the global
    one again). Like the ``tracer_provider=`` argument of OpenTelemetry instrumentations."""
    api = _otel()
    if api is None:
        raise RuntimeError(
            "tracing needs OpenTelemetry: pip install 'pyworkflow-engine[otel]' "
            "(and opentelemetry-sdk to record spans)"
        )
    api.use(provider)


# -- spans ----------------------------------------------------------------------------------

RUN_ID = "pyworkflow.run_id"
WORKFLOW = "pyworkflow.workflow"
STEP = "pyworkflow.step"
STEP_ID = "pyworkflow.step_id"
ATTEMPT = "pyworkflow.attempt"
OUTCOME = "pyworkflow.outcome"
SUSPEND_REASON = "pyworkflow.suspend_reason"


class _NoSpan:
    """What the hooks return when there is nothing to trace: does nothing, cheaply."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def ended(self, status: RunStatus | None, error: BaseException | None = None) -> None:
        """How the attempt ended (see :class:`_Attempt`)."""


_NO_SPAN = _NoSpan()


class _Attached:
    """A context current from ``__enter__`` to ``__exit__`` (in one task): a remote
    parent (a message's headers, a run's stored context)."""

    __slots__ = ("_api", "_context", "_token")

    def __init__(self, api: _Api, context: Context | None) -> None:
        self._api = api
        self._context = context
        self._token: Any = None

    def __enter__(self) -> _Attached:
        if self._context is not None:
            self._token = self._api.context.attach(self._context)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            self._api.context.detach(self._token)

    def ended(self, status: RunStatus | None, error: BaseException | None = None) -> None:
        """Nothing is recorded here (see :func:`workflow_span`)."""


class _Active(_Attached):
    """A span current while the block runs, ended on exit, its status set from the
    exception that left the block, if any."""

    __slots__ = ("span",)

    def __init__(self, api: _Api, span: Span) -> None:
        # A span with no valid context (no SDK, no caller) has nothing to pass on.
        valid = span.get_span_context().is_valid
        super().__init__(api, api.trace.set_span_in_context(span) if valid else None)
        self.span = span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and self.span.is_recording():
                self._failed(exc)
        finally:
            super().__exit__(exc_type, exc, tb)
            self.span.end()
            self._closed()

    def _closed(self) -> None:
        """The span has ended."""

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            self.span.set_attribute(OUTCOME, "cancelled")
            return
        self.span.set_attribute(OUTCOME, "failed")
        self._api.error(self.span, exc)


class _Attempt(_Active):
    """The ``workflow <name>`` span of one execution of a run."""

    __slots__ = ("_ended", "_run_id")

    def __init__(self, api: _Api, span: Span, run_id: str) -> None:
        super().__init__(api, span)
        self._run_id = run_id
        self._ended = False

    def __enter__(self) -> _Attempt:
        super().__enter__()
        if self.span.is_recording():
            _live[self._run_id] = self.span
            _tell_me()
        return self

    def _closed(self) -> None:
        if _live.get(self._run_id) is self.span:
            del _live[self._run_id]

    def _failed(self, exc: BaseException) -> None:
        if self._ended:
            return  # the outcome says it
        # No outcome was stored (storage failed, the run was deleted): the run goes on
        # from storage later, in a new attempt.
        self.span.set_attribute(OUTCOME, "interrupted")
        self._api.error(self.span, exc)

    def ended(self, status: RunStatus | None, error: BaseException | None = None) -> None:
        """The attempt's outcome: ``status`` stored (``None``: another process took the
        run over, nothing was stored), ``error`` the run failed with."""
        span = self.span
        self._ended = True
        if not span.is_recording():
            return
        span.set_attribute(OUTCOME, _OUTCOMES.get(status, "lost"))
        if status is RunStatus.FAILED and error is not None:
            self._api.error(span, error)


_OUTCOMES: dict[RunStatus | None, str] = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
    RunStatus.SUSPENDED: "suspended",
    RunStatus.CONTINUED_AS_NEW: "continued_as_new",
    RunStatus.RUNNING: "dispatched",  # handed to step workers, the run still running
}


def workflow_span(
    run_id: str, workflow_name: str, trace_context: str | None
) -> _Attempt | _Attached | _NoSpan:
    """The span of one execution of a run, current while it lasts (``with``); the parent
    is ``trace_context`` (the run's stored one), a new root without one. Call
    ``ended(status, error)`` with its outcome before leaving the block."""
    api = _otel()
    if api is None:
        return _NO_SPAN
    if not api.recording():
        return attached(trace_context)  # passed on to the runs and steps it starts
    parent = api.parent(trace_context)
    span = api.tracer.start_span(
        f"workflow {workflow_name}",
        context=parent,
        attributes={RUN_ID: run_id, WORKFLOW: workflow_name},
    )
    return _Attempt(api, span, run_id)


def step_span(step_id: str, step_name: str, attempt: int) -> _Active | _NoSpan:
    """The span of one live attempt of a step body, current while it runs (``with``): a
    child of the span current here. An exception leaving the block marks it failed."""
    api = _otel()
    if api is None or not api.recording():
        return _NO_SPAN  # the current context is the step's parent's: nothing to add
    attributes: dict[str, str | int] = {STEP: step_name, STEP_ID: step_id, ATTEMPT: attempt}
    ctx = current_context()
    if ctx is not None:
        attributes[RUN_ID] = ctx.run_id
        attributes[WORKFLOW] = ctx.workflow_name
    return _Active(api, api.tracer.start_span(f"step {step_name}", attributes=attributes))


def attached(trace_context: str | None) -> _Attached | _NoSpan:
    """Make ``trace_context`` (stored form, e.g. from a task message's headers) the current
    parent while the block runs (``with``): the spans started in it join that trace."""
    if trace_context is None:
        return _NO_SPAN
    api = _otel()
    if api is None:
        return _NO_SPAN
    return _Attached(api, api.parent(trace_context))


# -- run events on the attempt's span --------------------------------------------------------

# The recording ``workflow`` span of each run executing in this process.
_live: dict[str, Span] = {}


class _SpanEvents(lifecycle.Observer):
    """Adds what a run's committed events say to its attempt's span: why it suspended,
    that it resumed or was recovered, cancelled, continued as new."""

    def run_events(self, run: lifecycle.RunRef, events: Sequence[Event]) -> None:
        span = _live.get(run.run_id)
        if span is None:
            return
        for event in events:
            kind = event.type
            if kind in _EVENTS:
                data = event.data
                attributes = {
                    f"pyworkflow.{key}": data[key]
                    for key in _EVENTS[kind]
                    if isinstance(data.get(key), str | int | float | bool)
                }
                span.add_event(kind.value, attributes)
                if kind is EventType.WORKFLOW_SUSPENDED and isinstance(data.get("reason"), str):
                    span.set_attribute(SUSPEND_REASON, data["reason"])


_EVENTS: dict[EventType, tuple[str, ...]] = {
    EventType.WORKFLOW_RESUMED: (),
    EventType.WORKFLOW_INTERRUPTED: ("reason", "recovery_attempt"),
    EventType.WORKFLOW_SUSPENDED: ("reason", "wake_at"),
    EventType.WORKFLOW_CANCELLED: ("reason",),
    EventType.WORKFLOW_CONTINUED_AS_NEW: ("new_run_id",),
}

_observer: _SpanEvents | None = None


def _tell_me() -> None:
    global _observer
    if _observer is None:
        _observer = _SpanEvents()
        lifecycle.add_observer(_observer)


# -- the OpenTelemetry API, imported on first use --------------------------------------------


def _carrier(trace_context: str) -> dict[str, str] | None:
    """The headers a stored trace context holds (``None``: not a well-formed one)."""
    try:
        data = json.loads(trace_context)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return _checked(data.get(TRACEPARENT), data.get(TRACESTATE))


class _Api:
    """The parts of the OpenTelemetry API pyworkflow uses."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.context = context
        self.trace = trace
        # W3C trace context whatever propagators the application set: the stored form
        # stays the same everywhere a run may be read.
        self.propagator = TraceContextTextMapPropagator()
        self.tracer = trace.get_tracer(_SCOPE, _version())

        self.provider: TracerProvider | None = None
        self._recording = False
        self._next_look = 0.0

    def use(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self._recording, self._next_look = provider is not None, 0.0
        if provider is None:
            self.tracer = self.trace.get_tracer(_SCOPE, _version())
        else:
            self.tracer = provider.get_tracer(_SCOPE, _version())

    def recording(self) -> bool:
        """Whether a span could be recorded: a provider was given, or one was set globally.
        Until the application sets one the global provider is a proxy that records
        nothing; it is looked at again at most once a second (a look costs more than a
        step's span would), and once set it stays."""
        if self._recording:
            return True
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + 1.0
        provider = self.trace.get_tracer_provider()
        self._recording = not isinstance(provider, self.trace.ProxyTracerProvider)
        return self._recording

    def parent(self, trace_context: str | None) -> Context:
        """The context spans of ``trace_context`` start in (an empty one: a new trace)."""
        carrier = _carrier(trace_context) if trace_context is not None else None
        if carrier is None:
            return self.context.Context()
        return self.propagator.extract(carrier)

    def error(self, span: Span, exc: BaseException) -> None:
        span.record_exception(exc)
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, _describe(exc)))


_SCOPE = "pyworkflow"


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyworkflow-engine")
    except PackageNotFoundError:  # run from a source tree
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


_api: _Api | None = None
_resolved = False


def _otel() -> _Api | None:
    """The OpenTelemetry API, or ``None`` when it is not installed (looked up once)."""
    global _api, _resolved
    if not _resolved:
        _resolved = True
        try:
            _api = _Api()
        except ImportError:
            _api = None
    return _api
