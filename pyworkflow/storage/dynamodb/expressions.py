"""Condition, update and key expressions with attribute-name and value placeholders."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pyworkflow.storage.dynamodb.codec import Item, _micros, _n, _s


class _Expr:
    """Placeholders for one request's expressions (every name goes through ``#n``)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._by_name: dict[str, str] = {}

    def name(self, attr: str) -> str:
        key = self._by_name.get(attr)
        if key is None:
            key = self._by_name[attr] = f"#n{len(self._by_name)}"
            self.names[key] = attr
        return key

    def value(self, value: Any) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = value
        return key

    def params(self) -> Item:
        params: Item = {}
        if self.names:
            params["ExpressionAttributeNames"] = self.names
        if self.values:
            params["ExpressionAttributeValues"] = self.values
        return params


def _update_expression(expr: _Expr, sets: Item, removes: Iterable[str]) -> str:
    parts = []
    if sets:
        parts.append(
            "SET " + ", ".join(f"{expr.name(k)} = {expr.value(v)}" for k, v in sets.items())
        )
    removes = [r for r in dict.fromkeys(removes) if r not in sets]
    if removes:
        parts.append("REMOVE " + ", ".join(expr.name(r) for r in removes))
    return " ".join(parts)


def _lease_free_condition(
    expr: _Expr, owner: str, now: datetime, steal_from: str | None = None
) -> str:
    """:func:`pyworkflow.storage.base.lease_is_free` as a condition expression."""
    lease_owner, expires = expr.name("lease_owner"), expr.name("lease_expires_at")
    clauses = [
        f"attribute_not_exists({lease_owner})",
        f"{lease_owner} = {expr.value(_s(owner))}",
        f"attribute_not_exists({expires})",
        f"{expires} < {expr.value(_n(_micros(now)))}",
    ]
    if steal_from is not None:
        clauses.append(f"{lease_owner} = {expr.value(_s(steal_from))}")
    return "(" + " OR ".join(clauses) + ")"
