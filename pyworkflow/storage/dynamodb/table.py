"""The DynamoDB table itself: its name rules, its global secondary indexes and the
``CreateTable``/``UpdateTable`` requests that make them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pyworkflow.storage.dynamodb.codec import Item
from pyworkflow.storage.dynamodb.keys import (
    INDEX_CANCEL,
    INDEX_CREATED,
    INDEX_DUE,
    INDEX_HOOKS,
    INDEX_PARENT,
    INDEX_STATUS,
    INDEX_TAG,
    INDEX_WORKFLOW,
)

DEFAULT_TABLE = "pyworkflow"
DEFAULT_REGION = "us-east-1"

# How long connect() waits for a new table (and its indexes) to become ACTIVE.
TABLE_WAIT_SECONDS = 600.0

# Indexes a later release added: connect() adds them to an existing table (create_table).
_ADDED_INDEXES = frozenset({INDEX_HOOKS, INDEX_CANCEL})

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
TABLE_NAME_RULE = "3-255 characters of A-Z, a-z, 0-9, '_', '-' and '.'"


def _index_names(description: Item) -> set[str]:
    return {i["IndexName"] for i in description.get("GlobalSecondaryIndexes", [])}


def _missing_indexes(description: Item) -> list[str]:
    return sorted({g["IndexName"] for g in _GSIS} - _index_names(description))


def _is_active(description: Item) -> bool:
    return description.get("TableStatus") == "ACTIVE" and all(
        i.get("IndexStatus", "ACTIVE") == "ACTIVE"
        for i in description.get("GlobalSecondaryIndexes", [])
    )


def _gsi(name: str, hash_key: str, range_key: str, include: Sequence[str]) -> Item:
    projection: Item = (
        {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(include)}
        if include
        else {"ProjectionType": "KEYS_ONLY"}
    )
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": projection,
    }


_LISTED = ("run_id", "status", "workflow_name", "parent_run_id", "tags")
_GSIS: list[Item] = [
    _gsi(INDEX_CREATED, "gsi_all", "created_sk", _LISTED),
    _gsi(INDEX_STATUS, "status", "created_sk", [a for a in _LISTED if a != "status"]),
    _gsi(INDEX_WORKFLOW, "gsi_wf", "created_sk", _LISTED),
    _gsi(INDEX_PARENT, "gsi_parent", "created_sk", _LISTED),
    _gsi(INDEX_TAG, "gsi_tag", "created_sk", ("run_id", "workflow_name", "parent_run_id")),
    _gsi(INDEX_DUE, "gsi_due", "due_sk", ("run_id", "lease_owner", "lease_expires_at")),
    _gsi(INDEX_HOOKS, "gsi_hook", "hook_sk", ()),
    _gsi(INDEX_CANCEL, "gsi_cancel", "created_sk", _LISTED),
]


def table_definition(table_name: str) -> Item:
    """The ``CreateTable`` request this backend issues (on-demand billing).

    To provision capacity instead, pass it with ``BillingMode="PROVISIONED"`` and a
    ``ProvisionedThroughput`` on the table and on each index, then use
    ``create_table=False``.
    """
    return {
        "TableName": table_name,
        "AttributeDefinitions": _attribute_definitions(_GSIS),
        "KeySchema": [
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [dict(g) for g in _GSIS],
        "BillingMode": "PAY_PER_REQUEST",
    }


def add_index_request(table_name: str, index_name: str) -> Item:
    """The ``UpdateTable`` request that adds one of this backend's indexes to an existing
    table (e.g. ``hooks_by_status``, which tables created before hooks lack).

    ``connect()`` issues it itself when ``create_table`` is on. For a table with
    provisioned capacity add a ``ProvisionedThroughput`` to the ``Create`` entry.
    """
    (gsi,) = [g for g in _GSIS if g["IndexName"] == index_name]
    return {
        "TableName": table_name,
        "AttributeDefinitions": _attribute_definitions([gsi]),
        "GlobalSecondaryIndexUpdates": [{"Create": dict(gsi)}],
    }


def _attribute_definitions(indexes: Sequence[Item]) -> list[Item]:
    names = ["PK", "SK"]
    for gsi in indexes:
        names.extend(k["AttributeName"] for k in gsi["KeySchema"])
    return [{"AttributeName": a, "AttributeType": "S"} for a in dict.fromkeys(names)]
