"""The dependencies routes and pages declare: the connected storage, and the caller
checked for the read or the admin role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from pyworkflow.server.app import storage_of
from pyworkflow.server.auth import Principal, require_admin, require_read
from pyworkflow.storage.base import StorageBackend

Storage = Annotated[StorageBackend, Depends(storage_of)]
Reader = Annotated[Principal, Depends(require_read)]
Admin = Annotated[Principal, Depends(require_admin)]
