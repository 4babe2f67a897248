"""Durable operations workflow code awaits: sleep (hooks, cancellation and children later)."""

from pyworkflow.primitives.sleep import sleep

__all__ = ["sleep"]
