"""Shared pytest fixtures.

``pg_url``: a PostgreSQL URL whose ``search_path`` is a fresh schema on a throw-away
database ``labctl_test_<random>`` (created once per session on the server at
``$LABCTL_TEST_PG_URL``, default postgresql://postgres@127.0.0.1:5432/test, and
dropped at the end).  Each test gets its own schema.  If the server cannot be
reached the test is skipped, or fails when ``LABCTL_REQUIRE_PG=1`` (CI).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _libpq_url(url: str) -> str:
    """A URL psycopg.connect understands (no SQLAlchemy driver suffix)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.split("+")[0] in ("postgresql", "postgres") else url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _unavailable(message: str) -> None:
    if os.environ.get("LABCTL_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL required (LABCTL_REQUIRE_PG=1) but unavailable: {message}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {message}")


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str]:
    base = _libpq_url(os.environ.get("LABCTL_TEST_PG_URL", DEFAULT_PG_URL))
    try:
        import psycopg
    except ImportError as exc:  # the dev extra installs it
        _unavailable(f"psycopg is not installed ({exc})")
    name = f"labctl_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _unavailable(f"{base}: {exc}".strip())
    try:
        yield _with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(_pg_database: str) -> Iterator[str]:
    """URL of a fresh, empty schema (``search_path``) on the session's test database."""
    import psycopg

    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(_pg_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(_pg_database, schema)
    finally:
        with psycopg.connect(_pg_database, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
