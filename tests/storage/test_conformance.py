"""The storage conformance suite, run against every built-in backend."""

from pyworkflow.testing.conformance import StorageConformance
from pyworkflow.testing.conformance_queries import RunQueryConformance


class TestStorageConformance(StorageConformance, RunQueryConformance):
    pass
