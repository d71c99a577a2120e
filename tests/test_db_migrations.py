"""Schema creation by migrations, idempotent and safe under concurrent opens; where the default DB lives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from labctl.db import Database, default_url, normalize_url
from labctl.db.migrate import alembic_config, current_revision, head_revision, upgrade
from labctl.db.schema import metadata
from labctl.db.url import masked

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"protocols", "cells", "runs", "steps", "samples", "events", "results", "coatings"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/m.sqlite"
    return request.getfixturevalue("pg_url")


def test_migrations_create_the_schema_from_empty(url):
    with Database(url) as db:
        insp = sa.inspect(db.engine)
        assert TABLES <= set(insp.get_table_names())
        for name in TABLES:
            have = {c["name"] for c in insp.get_columns(name)}
            assert have == set(metadata.tables[name].columns.keys()), name
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        if db.dialect == "sqlite":
            with db.engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            assert mode == "wal" and sync == 1  # NORMAL


def test_opening_again_is_a_no_op(url):
    Database(url).close()
    with Database(url) as db:
        rec = db.open_run(protocol_name="p", protocol_text="x", channel="c", simulated=False)
        rec.close()
        upgrade(db.engine)
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
    with Database(url) as db:
        assert len(db.runs()) == 1


def test_downgrade_and_upgrade_again(url):
    db = Database(url)
    with db.engine.connect() as conn, conn.begin():
        command.downgrade(alembic_config(conn), "base")
    assert not TABLES & set(sa.inspect(db.engine).get_table_names())
    upgrade(db.engine)
    assert TABLES <= set(sa.inspect(db.engine).get_table_names())
    db.close()


def test_unknown_newer_revision_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/new.sqlite"
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'from_the_future'")
    db.close()
    with pytest.raises(RuntimeError, match="upgrade labctl"):
        Database(url)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_first_opens(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path}/race.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_url")
    code = textwrap.dedent("""
        import sys
        from labctl.db import Database
        with Database(sys.argv[1]) as db:
            rec = db.open_run(protocol_name="p", protocol_text="same", channel="c", simulated=True)
            rec.finish("completed", "complete", 0.0)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    with Database(url) as db:
        runs = db.runs()
        assert len(runs) == 4
        assert len({db.run(r["id"])["protocol_id"] for r in runs}) == 1


def test_default_url_honours_labctl_db(monkeypatch, tmp_path):
    monkeypatch.setenv("LABCTL_DB", "postgresql://u:secret@db.lab:5432/labctl")
    assert default_url() == "postgresql+psycopg://u:secret@db.lab:5432/labctl"
    monkeypatch.setenv("LABCTL_DB", f"sqlite:///{tmp_path}/x.sqlite")
    assert default_url() == f"sqlite:///{tmp_path}/x.sqlite"
    monkeypatch.setenv("LABCTL_DB", str(tmp_path / "plain.sqlite"))
    assert default_url() == f"sqlite:///{tmp_path}/plain.sqlite"


def test_default_url_uses_xdg_data_home_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("LABCTL_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_url() == f"sqlite:///{tmp_path}/xdg/labctl/labctl.sqlite"
    assert (tmp_path / "xdg" / "labctl").is_dir()
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path}/home/.local/share/labctl/labctl.sqlite"
    assert (tmp_path / "home" / ".local" / "share" / "labctl").is_dir()
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # invalid per the XDG spec: ignored
    assert default_url() == f"sqlite:///{tmp_path}/home/.local/share/labctl/labctl.sqlite"


def test_database_none_opens_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("LABCTL_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    with Database() as db:
        assert db.url == f"sqlite:///{tmp_path}/labctl/labctl.sqlite"
    assert (tmp_path / "labctl" / "labctl.sqlite").exists()


def test_url_normalisation_and_masking():
    assert normalize_url("postgres://a@h/d") == "postgresql+psycopg://a@h/d"
    assert normalize_url("postgresql+psycopg://a@h/d") == "postgresql+psycopg://a@h/d"
    assert normalize_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"
    shown = masked("postgresql+psycopg://u:secret@h:5432/d")
    assert "secret" not in shown and "***" in shown


def test_sqlite_file_in_a_new_directory(tmp_path):
    with Database(f"sqlite:///{tmp_path}/a/b/c.sqlite") as db:
        assert db.runs() == []
    assert (tmp_path / "a" / "b" / "c.sqlite").exists()
