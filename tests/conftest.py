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


@pytest.fixture(autouse=True)
def _package_log_level():
    """Every test starts at pyworkflow's default log level (WARNING), whatever an earlier
    test set; a test that reads pyworkflow's DEBUG or INFO lines asks for them."""
    from pyworkflow.utils.log import DEFAULT_LEVEL, set_log_level

    set_log_level(DEFAULT_LEVEL)
    yield
    set_log_level(DEFAULT_LEVEL)


@pytest.fixture
def pyworkflow_debug_logs():
    """Let pyworkflow's own DEBUG lines through for this test."""
    from pyworkflow.utils.log import set_log_level

    set_log_level("DEBUG")
