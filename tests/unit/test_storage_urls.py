"""pyworkflow.storage.urls: redaction of every secret form, option parsing and errors, and
the error messages of the URL-reading backends never showing a password."""

from __future__ import annotations

import pytest

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage import storage_from_config, storage_from_url
from pyworkflow.storage.urls import (
    is_secret_option,
    parse_count,
    parse_flag,
    parse_seconds,
    parse_url,
    redact_url,
    split_url,
)

SECRET = "hunter2"

# -- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:hunter2@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:hun%40ter2@db:5432/x?a=1", "postgresql://app:***@db:5432/x?a=1"),
        ("redis://:hunter2@h/0", "redis://:***@h/0"),
        ("mysql://u:hunter2@[::1]:3306/db", "mysql://u:***@[::1]:3306/db"),
        ("postgresql://u:pw:hunter2@db/x", "postgresql://u:***@db/x"),
        # A password holding an unencoded delimiter is hidden whole.
        ("postgresql://app:hun@ter2@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:hun/ter2@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:hun?ter2@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:hun#ter2@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:12/34@db/x", "postgresql://app:***@db/x"),
        # A user:password that lost its '@' reads as host:port; a "port" that is not a
        # number is hidden with its host.
        ("postgresql://app:hunter2/x", "postgresql://***/x"),
        ("mysql://app:hunter2", "mysql://***"),
        # Not a proper URL at all.
        ("app:hunter2@db/x", "app:***@db/x"),
        ("postgresql:/app:hunter2@db", "postgresql:***@db"),
    ],
)
def test_redacts_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "PASSWORD",
        "sslpassword",
        "pass%77ord",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key",
        "secret",
        "client_secret",
        "token",
        "auth_token",
        "api_key",
        "pwd",
        "sig",
        "key",
        "private_key",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "authorization",
    ],
)
def test_redacts_secret_query_parameters(name: str) -> None:
    assert is_secret_option(name)
    for url in (
        f"x://h/db?{name}={SECRET}",
        f"x://h/db?region=eu&{name}={SECRET}&max_size=3",
        f"x://h/db?region=eu;{name}={SECRET}",
        f"x://h/db#{name}={SECRET}",
        f"x://u:{SECRET}@h/db?{name}={SECRET}",
    ):
        safe = redact_url(url)
        assert SECRET not in safe
        assert f"{name}=***" in safe


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/0",
        "redis://admin@h:6379/0?prefix=wf",
        "sqlite:///tmp/x.db",
        "file://relative/dir@2x",
        "mysql://h:3306/db?email=a@b",
        "postgresql://h/db?sslmode=require&application_name=app&schema=wf",
        "http://[::1",
        "http://[::1]:8000/x",
        "postgresql://db:5432/x",
        "file://C:/dir",
        "",
        "no url at all",
    ],
)
def test_keeps_what_is_not_secret(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # keep_user=False: the user name is a credential too (an AWS access key id).
        ("dynamodb://AKID:hunter2@flows", "dynamodb://***@flows"),
        ("dynamodb://AKID@flows", "dynamodb://***@flows"),
        ("dynamodb://AKID:@flows?region=eu", "dynamodb://***@flows?region=eu"),
        ("dynamodb://flows?region=eu", "dynamodb://flows?region=eu"),
    ],
)
def test_redaction_can_hide_the_user_name(url: str, expected: str) -> None:
    assert redact_url(url, keep_user=False) == expected


@pytest.mark.parametrize(
    ("url", "default", "strict"),
    [
        # A password holding an unencoded '?' then '=': by default the '@' may be part of
        # an option value; for URLs that take no such value it ends the user-info.
        (
            "redis://:12?client_name=34@db/0",
            "redis://:12?client_name=34@db/0",
            "redis://:***@db/0",
        ),
        # With no ':' before it, that '@' hides no password.
        ("mysql://h/db?email=a@b", "mysql://h/db?email=a@b", None),
        # An empty host part (a unix socket path) may hold an '@' either way.
        ("unix:///run/app@1/redis.sock?db=2", "unix:///run/app@1/redis.sock?db=2", None),
    ],
)
def test_redaction_can_take_the_last_at_sign_anywhere(
    url: str, default: str, strict: str | None
) -> None:
    assert redact_url(url) == default
    assert redact_url(url, query_at=False) == (strict or default)


@pytest.mark.parametrize("name", ["schema", "max_size", "prefix", "sslmode", "region", "fsync"])
def test_ordinary_options_are_not_secret(name: str) -> None:
    assert not is_secret_option(name)


# -- option values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("TRUE", True), ("on", True), ("no", False), ("0", False)]
)
def test_parse_flag(value: str, expected: bool) -> None:
    assert parse_flag("fsync", value) is expected


def test_bad_values_name_the_option() -> None:
    with pytest.raises(ConfigurationError, match=r"fsync='maybe' in x must be true or false"):
        parse_flag("fsync", "maybe", " in x")
    with pytest.raises(ConfigurationError, match=r"max_size='-1' must be a non-negative integer"):
        parse_count("max_size", "-1")
    with pytest.raises(ConfigurationError, match="must be a non-negative integer"):
        parse_count("max_size", "²")
    with pytest.raises(ConfigurationError, match=r"connect_timeout='soon' must be a number"):
        parse_seconds("connect_timeout", "soon")
    assert (parse_count("n", "12"), parse_seconds("t", "2.5")) == (12, 2.5)


def test_bad_value_of_a_secret_option_is_hidden() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_flag("token", SECRET)
    assert SECRET not in str(info.value) and "token" in str(info.value)


# -- parsing --------------------------------------------------------------------------------


def test_parse_url_sorts_options() -> None:
    url = parse_url(
        f"postgres://app:{SECRET}@db:6543/x?schema=wf&sslmode=require&max_size=5&schema=b#f",
        options=("schema", "max_size", "min_size"),
        passthrough=None,
    )
    assert url.options == {"schema": "b", "max_size": "5"}  # the last value wins
    assert url.rest == (("sslmode", "require"),)
    assert (url.count("max_size", 1), url.count("min_size", 1)) == (5, 1)
    assert url.driver_url("postgresql") == f"postgresql://app:{SECRET}@db:6543/x?sslmode=require"
    assert (url.username, url.password, url.parts.port) == ("app", SECRET, 6543)
    assert SECRET not in url.safe and SECRET not in url.where


def test_parse_url_flag_and_seconds() -> None:
    url = parse_url("x://h/?fsync=yes&t=1.5", options=("fsync", "t", "other"))
    assert url.flag("fsync", False) is True
    assert url.flag("other", True) is True
    assert url.seconds("t", 10.0) == 1.5


def test_unknown_option_lists_the_supported_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_url(f"x://u:{SECRET}@h/?colour=red&b=2", options=("max_size",), passthrough=("b",))
    message = str(info.value)
    assert "unsupported option(s) colour" in message
    assert "supported: b, max_size" in message
    assert SECRET not in message
    with pytest.raises(ConfigurationError, match="supported: none"):
        parse_url("x://h/?colour=red")


def test_bad_option_value_names_the_flag_and_hides_the_password() -> None:
    url = parse_url(f"x://u:{SECRET}@h/?max_size=lots", options=("max_size",))
    with pytest.raises(ConfigurationError, match="max_size='lots'") as info:
        url.count("max_size", 10)
    assert SECRET not in str(info.value)


def test_split_url_checks_scheme_and_port() -> None:
    with pytest.raises(ConfigurationError, match=r"not a MySQL URL: .*expected mysql://") as info:
        split_url(f"postgresql://u:{SECRET}@h/db", name="MySQL", schemes=("mysql",))
    assert SECRET not in str(info.value)
    # urlsplit's own error would quote "hun" (taken for the port): never shown.
    with pytest.raises(ConfigurationError, match="host or port is malformed") as info:
        split_url("mysql://u:hun/ter2@h/db")
    assert "hun" not in str(info.value) and "ter2" not in str(info.value)
    assert split_url("file://dir:x/y", server=False).netloc == "dir:x"
    # A password whose '@' was forgotten is read as the port: hidden with its host.
    with pytest.raises(ConfigurationError, match="host or port is malformed") as info:
        split_url(f"mysql://u:{SECRET}/db")
    assert SECRET not in str(info.value) and "'mysql://***/db'" in str(info.value)
    with pytest.raises(ConfigurationError, match="unsupported scheme"):
        split_url("http://h/db", name="Redis", schemes=("redis", "unix"))


def test_parse_url_redacts_with_the_backends_flavour() -> None:
    def strict(url: str) -> str:
        return redact_url(url, keep_user=False, query_at=False)

    url = parse_url(f"x://AKID:{SECRET}@h/?region=eu", options=("region",), redact=strict)
    assert url.safe == "x://***@h/?region=eu"
    with pytest.raises(ConfigurationError, match="not a Y URL") as info:
        parse_url(f"x://AKID:{SECRET}@h/", name="Y", schemes=("y",), redact=strict)
    assert "AKID" not in str(info.value) and SECRET not in str(info.value)


def test_errors_hide_option_names_and_values_the_redacted_url_hides() -> None:
    # An unencoded '?' in the password: the rest of it reads as the URL's options.
    def strict(url: str) -> str:
        return redact_url(url, query_at=False)

    with pytest.raises(ConfigurationError) as info:
        parse_url("x://u:1234?ter2=1@h/", options=("a",), redact=strict)
    message = str(info.value)
    assert "unsupported option(s) in storage URL 'x://u:***@h/'; supported: a" in message
    assert "1234" not in message and "ter2" not in message
    url = parse_url("x://u:1234?a=ter2@h/", options=("a",), redact=strict)
    with pytest.raises(ConfigurationError, match=r"a='\*\*\*'") as info:
        url.count("a", 1)
    assert "ter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match=r"a='lots'"):  # a visible value shows
        parse_url("x://u:1234@h/?a=lots", options=("a",), redact=strict).count("a", 1)


def test_driver_url_keeps_an_empty_host() -> None:
    url = parse_url("unix:///run/app.sock?db=2&prefix=p", options=("prefix",), passthrough=None)
    assert url.driver_url() == "unix:///run/app.sock?db=2"
    assert parse_url("x://h:1/db#frag").driver_url("y") == "y://h:1/db"


# -- backends: no password in any URL error --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"memory://u:{SECRET}@host",
        f"memory://?password={SECRET}",
        f"sqlite://u:{SECRET}@host/x.db",
        f"sqlite:///x.db?password={SECRET}",
        f"file:///tmp/x?fsync=maybe&token={SECRET}",
        f"postgresql:/u:{SECRET}@host/db",
        f"nosuch://u:{SECRET}@host/db",
        f"u:{SECRET}@host/db",
    ],
)
def test_builtin_url_errors_hide_secrets(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        storage_from_url(url)
    assert SECRET not in str(info.value)


def test_config_with_url_and_extra_keys_hides_their_values() -> None:
    with pytest.raises(ConfigurationError, match="takes no other keys: password") as info:
        storage_from_config({"url": "memory://", "password": SECRET})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:hun/{SECRET}@db/orders",
        f"postgresql://app:{SECRET}@db:port/orders",
        f"postgresql://app:{SECRET}@db/orders?max_size=x",
        f"postgresql://app:{SECRET}@db/orders?min_size=3&max_size=1",
    ],
)
def test_postgres_url_errors_hide_the_password(url: str) -> None:
    pytest.importorskip("asyncpg")
    from pyworkflow.storage.postgres import PostgresStorageBackend

    # The constructor takes a DSN whose query goes to asyncpg: only its host is checked.
    builders = [storage_from_url] + ([PostgresStorageBackend] if "?" not in url else [])
    for build in builders:
        with pytest.raises(ConfigurationError) as info:
            build(url)
        assert SECRET not in str(info.value) and "hun" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://app:hun/{SECRET}@db/orders",
        f"mysql://app:{SECRET}@db:port/orders",
        f"mysql://app:{SECRET}@db/orders?charset=x&password={SECRET}",
        f"postgresql://app:{SECRET}@db/orders",
    ],
)
def test_mysql_url_errors_hide_the_password(url: str) -> None:
    pytest.importorskip("aiomysql")
    from pyworkflow.storage.mysql import MySQLStorageBackend

    # The constructor ignores the query: only from_url reads options.
    builders = [MySQLStorageBackend.from_url] + ([MySQLStorageBackend] if "?" not in url else [])
    for build in builders:
        with pytest.raises(ConfigurationError) as info:
            build(url)
        assert SECRET not in str(info.value) and "hun" not in str(info.value)
