"""Hook tokens, derived from the hook's identity under the deployment's secret key.

A token is ``whk_`` + the first 192 bits of HMAC-SHA256(secret key, run id + hook
operation id), base64url-encoded (32 characters). Deriving it, rather than drawing it at
random, lets a run replayed after a crash hand ``on_created`` the same token without
storing it: storage keeps only ``sha256(token)``, the lookup key, so reading the
database is not enough to deliver a payload.

The key is the ``secret_key`` setting (``PYWORKFLOW_SECRET_KEY``). Without one, a key
file is created beside the embedded storage (``./.pyworkflow/secret.key``, mode 0600),
with a warning: every process creating hooks must share the key, so production sets one.
The key never appears in a log line or an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pyworkflow.core.config import MIN_SECRET_KEY_LENGTH, get_config
from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage.schemas import HookRecord
from pyworkflow.utils.log import logger

TOKEN_PREFIX = "whk_"
KEY_FILE = ".pyworkflow/secret.key"
"""Where the embedded default keeps its generated key (relative to the working directory,
like the default database)."""

_TOKEN_BYTES = 24  # 192 bits: 32 base64url characters, the length of earlier random tokens
_file_keys: dict[Path, bytes] = {}
_warned = False


def hash_token(token: str) -> str:
    """The lookup key of a hook token (tokens themselves are never indexed or logged)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def derive_token(run_id: str, hook_id: str, *, create_key: bool = True) -> str:
    """The token of hook ``hook_id`` (its operation id) of run ``run_id``.

    ``create_key=False`` is for processes that only deliver (an operator's shell): a key
    generated there could not match the one the hook was created under.

    Raises:
        ConfigurationError: the key file exists but holds no usable key, or (with
            ``create_key=False``) no key is configured and there is no key file.
    """
    message = f"pyworkflow-hook\0{run_id}\0{hook_id}".encode()
    key = secret_key(create=create_key)
    digest = hmac.new(key, message, hashlib.sha256).digest()[:_TOKEN_BYTES]
    return TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def token_to_hand_out(stored: HookRecord, derived: str) -> str:
    """The token ``on_created`` gets for ``stored``, the hook record storage returned.

    A hook an earlier version created (before a crash) kept its random token in the
    record: that one is what its hash finds, so it is handed out again.
    """
    if stored.token:
        return stored.token
    if stored.token_hash != hash_token(derived):
        logger.warning(
            "hook {} of run {} was created under another secret key: the token handed to "
            "on_created now cannot deliver to it (keep secret_key the same on every process)",
            stored.hook_id,
            stored.run_id,
        )
    return derived


def secret_key(*, create: bool = True) -> bytes:
    """The deployment's secret key: the ``secret_key`` setting, else the key file (made on
    first use unless ``create`` is false).

    Raises:
        ConfigurationError: the key file holds no usable key, or it is missing and
            ``create`` is false.
    """
    configured = get_config().secret_key
    if configured:
        return configured.encode("utf-8")
    path = Path.cwd() / KEY_FILE
    if not create and path not in _file_keys and not path.exists():
        raise ConfigurationError(
            "no secret key here: set PYWORKFLOW_SECRET_KEY to the deployment's key (or run "
            f"where its key file {KEY_FILE} is), or use the hook's token"
        )
    return _file_key(path)


def _file_key(path: Path) -> bytes:
    global _warned
    key = _file_keys.get(path)
    if key is None:
        key = _file_keys[path] = _read_or_create(path)
    if not _warned:
        _warned = True
        logger.warning(
            "hook tokens are derived from the generated key file {}: in production, set "
            "PYWORKFLOW_SECRET_KEY (or configure(secret_key=...)), the same on every process",
            path,
        )
    return key


def _read_or_create(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            # A hard link appears whole and fails if the file exists: concurrent first
            # uses agree on one key instead of overwriting each other's.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigurationError(
            f"the secret key file {str(path)!r} holds no usable key (at least "
            f"{MIN_SECRET_KEY_LENGTH} characters): delete it to have a new one made, or set "
            "PYWORKFLOW_SECRET_KEY"
        )
    return key.encode("utf-8")
