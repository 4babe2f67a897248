"""Imported by the worker processes of the tracing tests (through ``PYWORKFLOW_MODULES``,
in the main process before the pool forks): an OpenTelemetry SDK tracer provider that
writes each finished span as one JSON line to ``$TRACE_SPANS_DIR/spans-<pid>.jsonl``
(one file per process: no two processes write one file)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        path = Path(os.environ["TRACE_SPANS_DIR"]) / f"spans-{os.getpid()}.jsonl"
        with path.open("a") as out:
            out.write("".join(span.to_json(indent=None) + "\n" for span in spans))
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter()))
trace.set_tracer_provider(provider)
