"""Command-line options shared by the whole test suite."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="store",
        default=None,
        metavar="NAME",
        help=(
            "run the storage tests against only this backend "
            "(memory, file, sqlite, postgres, mysql, redis, dynamodb)"
        ),
    )
