"""The one rule for names users give to durable things: signals, queries, patches."""

from __future__ import annotations

import re

# Letters, digits and ``_ . : -``, starting with a letter or digit, at most 100 characters:
# safe in operation ids, URLs, command lines and storage keys.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid name.

    Raises:
        ValueError: it is not 1-100 letters, digits, ``_ . : -`` starting with a letter or
            digit; the message says ``what`` it names.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} must be 1-100 characters of letters, digits, '_', '.', ':' or '-' "
            f"(starting with a letter or digit), not {value!r}"
        )
    return value


__all__ = ["check_name"]
