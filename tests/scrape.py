"""Reading a real ``/metrics`` endpoint the way Prometheus does (HTTP, text format)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape's samples; :meth:`value` adds up those matching a name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, metric: str, /, **labels: str) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == metric and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str, label: str) -> set[str]:
        return {labels[label] for n, labels, _ in self.samples if n == name and label in labels}


def scrape(url: str, headers: dict[str, str] | None = None) -> Scrape:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - a test's URL
        assert answer.headers["Content-Type"].startswith("text/plain")
        return Scrape(answer.read().decode())


def scrape_until(
    url: str, done: Callable[[Scrape], bool], *, limit: float = 30, what: str = "metrics"
) -> Scrape:
    """Scrape ``url`` until ``done`` says the scrape holds what the test waits for (the
    endpoint may not listen yet, counts may still be arriving)."""
    deadline = time.monotonic() + limit
    last: Scrape | None = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = scrape(url)
            error = None
            if done(last):
                return last
        except OSError as exc:
            error = exc
        time.sleep(0.2)
    shown = last.text if last is not None else f"no answer: {error}"
    raise AssertionError(f"{what} not reached within {limit}s at {url}:\n{shown[-4000:]}")
