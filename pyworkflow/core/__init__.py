"""Decorators, registry, configuration and the error tree."""
