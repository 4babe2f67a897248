"""The storage conformance suite, run against every built-in backend."""

from pyworkflow.testing.conformance import StorageConformance


class TestStorageConformance(StorageConformance):
    pass
