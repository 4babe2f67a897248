"""The chaos run (``make chaos``): Celery workers SIGKILLed and PostgreSQL restarted
under many runs; see :mod:`tests.chaos.run` and ``docs/fault-tolerance.md``. Not part
of ``make test`` (no ``test_`` modules here)."""
