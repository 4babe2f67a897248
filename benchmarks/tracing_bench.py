"""What tracing costs: S1 (ten-step workflows, one after another, SQLite) with
OpenTelemetry not installed (hidden from the process, as on a base install), with the
API installed and no SDK configured (no-op spans: what an application that never set up
tracing pays), and with an SDK tracer provider exporting every span to a no-op exporter
(a span processor in line: ``simple``; or the batching one production uses: ``batch``).
Each workflow makes 12 spans: a ``start`` root (no span is current in the benchmark),
its ``workflow`` execution and ten ``step`` attempts.

Each measurement runs in a fresh process; the modes alternate, the median of
``--repeats`` is reported.

    python benchmarks/tracing_bench.py [--workflows 2000] [--repeats 5]
"""

from __future__ import annotations

import importlib.abc
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from fresh_process import compare  # noqa: E402

MODES = ("absent", "api", "sdk-simple", "sdk-batch")


class _Hidden(importlib.abc.MetaPathFinder):
    """As if the ``otel`` extra were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:  # noqa: ARG002
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}")


def _provider(mode: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    exporter = Discard()
    provider = TracerProvider()
    processor = SimpleSpanProcessor if mode == "sdk-simple" else BatchSpanProcessor
    provider.add_span_processor(processor(exporter))
    trace.set_tracer_provider(provider)
    return provider, exporter


async def _measure(mode: str, workflows: int, tmp: Path) -> dict[str, float]:
    if mode == "absent":
        sys.meta_path.insert(0, _Hidden())
    provider = exporter = None
    if mode.startswith("sdk"):
        provider, exporter = _provider(mode)
    from workload import workflows_per_second

    import pyworkflow

    pyworkflow.configure(storage=f"sqlite:///{tmp}/bench.db")
    storage = pyworkflow.get_storage()
    rate = await workflows_per_second(storage, workflows)
    await storage.close()
    spans = 0
    if provider is not None:
        provider.force_flush()
        spans = exporter.spans
    otel = any(name.startswith("opentelemetry") for name in sys.modules)
    return {"wf_per_s": rate, "spans": spans, "otel_imported": otel}


def main() -> None:
    compared = compare(__file__, __doc__, MODES, _measure)
    if compared is None:
        return
    opts, results = compared
    for mode in MODES:
        for result in results[mode]:
            assert result["otel_imported"] == (mode != "absent"), (mode, result)
    rates = {mode: statistics.median(r["wf_per_s"] for r in results[mode]) for mode in MODES}
    print(f"S1, {opts.workflows} workflows x 10 steps, SQLite, median of {opts.repeats}")
    print(f"{'mode':<11} {'wf/s':>8} {'steps/s':>9} {'spans':>7} {'vs absent':>10}")
    for mode in MODES:
        rate, spans = rates[mode], results[mode][-1]["spans"]
        print(
            f"{mode:<11} {rate:>8.1f} {rate * 10:>9.0f} {spans:>7} {rate / rates['absent']:>9.2f}x"
        )


if __name__ == "__main__":
    main()
