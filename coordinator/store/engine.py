"""The database engine: SQLite (WAL) or PostgreSQL, its pragmas, integrity check and migrations, and the small
session helpers every aggregate uses."""

from __future__ import annotations

import json
import logging
import time

from sqlalchemy import inspect, literal
from sqlmodel import SQLModel, Session

from edgeatlas.protos.errors import InvalidInput

MAX_ROW_ID = 2**31 - 1  # ids are PostgreSQL INTEGERs: a larger one is no row (and must not reach a query)


log = logging.getLogger("edgeatlas.coordinator")


def now_ms() -> int:
    return int(time.time() * 1000)


def sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a report is acknowledged only once it is on disk
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def json_or_empty(value: dict) -> str:
    return json.dumps(value) if value else "{}"


def insert_new(conn, table):
    """INSERT that skips a row whose key is there already (another replica may have just added it): one
    racing replica does not fail the other's transaction."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def by_id(s: Session, model, row_id: int):
    """s.get by an id a caller named: one outside the ids' range (MAX_ROW_ID) is no row, not a database error."""
    return s.get(model, row_id) if 0 < row_id <= MAX_ROW_ID else None


def check_sqlite(engine, path: str) -> None:
    """A corrupt database file is one line at start-up, naming it and SQLite's own verdict, before any
    request can meet the damage (a file corrupt only in its report pages started, then answered INTERNAL)."""
    from sqlalchemy.exc import DatabaseError

    try:
        with engine.connect() as conn:
            verdict = [line.strip() for row in conn.exec_driver_sql("PRAGMA quick_check(3)")
                       for line in str(row[0]).splitlines() if line.strip()]
    except DatabaseError as exc:
        raise InvalidInput(f"database {path} cannot be opened: {str(exc.orig)[:200]}") from None
    if verdict != ["ok"]:
        raise InvalidInput(f"database {path} is corrupt (integrity check: {'; '.join(verdict)[:300]}); "
                           f"restore it from a backup or move it away") from None


def kept(s: Session, model, key):
    """s.get, holding on to the row for the session (the identity map alone forgets unchanged rows)."""
    kept = s.info.setdefault("kept", {})
    row = kept.get((model, key))
    if row is None:
        row = kept[(model, key)] = s.get(model, key)
    return row


def add_missing_columns(engine) -> None:
    """Columns and indexes this version's tables have and an older database lacks are added (columns with
    their defaults)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in have]
            for column in missing:
                default = column.default.arg if column.default is not None else None
                clause = "" if default is None or callable(default) else " DEFAULT " + str(
                    literal(default).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" '
                                     f'{column.type.compile(engine.dialect)}{clause}')
            for index in table.indexes:  # an index added since the database was made, too
                index.create(conn, checkfirst=True)
