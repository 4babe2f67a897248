"""The DynamoDB storage backend class: the parts of the storage contract (runs, timers
and leases, hooks, signal inboxes, schedules, flow-control gates, the worker registry,
retention) over one shared table client, built from arguments or a ``dynamodb://`` URL."""

from __future__ import annotations

# aioboto3 ships no type information (see client.py).
import aioboto3  # type: ignore[import-untyped]

from pyworkflow.storage.dynamodb.gates import GateStore
from pyworkflow.storage.dynamodb.hooks import HookStore
from pyworkflow.storage.dynamodb.leases import LeaseStore
from pyworkflow.storage.dynamodb.retention import RetentionStore
from pyworkflow.storage.dynamodb.runs import RunStore
from pyworkflow.storage.dynamodb.schedules import ScheduleStore
from pyworkflow.storage.dynamodb.signals import SignalStore
from pyworkflow.storage.dynamodb.url import parse_url, redact_url
from pyworkflow.storage.dynamodb.workers import WorkerStore


class DynamoDBStorageBackend(
    RunStore,
    LeaseStore,
    HookStore,
    SignalStore,
    ScheduleStore,
    GateStore,
    WorkerStore,
    RetentionStore,
):
    """Runs and events in one DynamoDB table, shared safely between processes.

    Args:
        table_name: the table (created on first use unless ``create_table=False``).
        region: the AWS region.
        endpoint_url: a non-AWS endpoint (DynamoDB Local, moto), or ``None``.
        create_table: create the table (on-demand billing) when it is missing.
        session: an ``aioboto3.Session`` to take credentials and configuration from
            (default: a new session using the standard AWS credential chain).

    The backend connects on first use. One object may be used from successive event
    loops, but not from two loops at the same time; call :meth:`close` before a loop
    ends, or aiohttp reports the abandoned HTTP session as unclosed.
    """

    capabilities = frozenset({"persistent", "cross_process"})

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={redact_url(self.endpoint_url)!r}" if self.endpoint_url else ""
        return f"{type(self).__name__}({self.table_name!r}, region={self.region!r}{endpoint})"

    @classmethod
    def from_url(cls, url: str) -> DynamoDBStorageBackend:
        """Build from ``dynamodb://[KEY:SECRET@]TABLE?region=..&endpoint_url=..&create_table=..``.

        Raises:
            ConfigurationError: not a ``dynamodb://`` URL, a path after the table name,
                an unknown option, or an invalid table name or flag (the message shows
                the URL redacted: no access key, no secret).
        """
        options = parse_url(url)
        session = None
        if options.credentials is not None:
            key, secret = options.credentials
            session = aioboto3.Session(aws_access_key_id=key, aws_secret_access_key=secret)
        return cls(
            options.table_name,
            options.region,
            options.endpoint_url,
            create_table=options.create_table,
            session=session,
        )
