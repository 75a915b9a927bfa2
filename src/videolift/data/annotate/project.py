"""A project directory: its settings (project.json), its database and the bearer tokens of its users.

SQLite (the default, ``DIR/annotate.db``) runs in WAL mode with a busy timeout, and every writing
transaction starts with ``BEGIN IMMEDIATE``: writers queue for the lock instead of failing with
"database is locked" when a read turns into a write. Any other SQLAlchemy URL works too (PostgreSQL:
``postgresql+psycopg://...``); there the row locks taken by ``tasks`` do the same job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from pydantic import Field, ValidationError
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session

from videolift.core.errors import DataError, UsageError, VideoliftError
from videolift.core.jsonl import atomic_write, read_json, validation_field
from videolift.core.schema import valid_unicode
from videolift.core.settings import StrictModel
from videolift.data.annotate.models import Base, User

CONFIG_FILE = "project.json"
DB_FILE = "annotate.db"
BUSY_TIMEOUT_MS = 30_000


# Ratings a video (judgements a pair) can ask for: far more than any study has raters, and a number the
# database can compare with (beyond 2**63, every rater's request was a 500).
MAX_RATINGS = 1_000_000


class Settings(StrictModel):
    db: str = Field(description="SQLAlchemy URL of the database")
    videos_root: str = Field(description="absolute path every video path is relative to")
    ratings_per_video: int = Field(3, ge=1, le=MAX_RATINGS, description="independent ratings each video gets")
    ratings_per_pair: int = Field(
        6, ge=1, le=MAX_RATINGS, description="independent judgements each pair gets"
    )
    lease_minutes: float = Field(
        120, gt=0, description="an unsubmitted task older than this may be handed to someone else"
    )

    def sqlite_file(self) -> Path | None:
        """The SQLite database's file, None for a database server (or a URL that does not parse)."""
        try:
            url = sqlalchemy.engine.make_url(self.db)
        except sqlalchemy.exc.ArgumentError:
            return None
        return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None

    def database_name(self) -> str:
        """How errors name the database: its file, or its URL without the password."""
        if (file := self.sqlite_file()) is not None:
            return str(file)
        try:
            return sqlalchemy.engine.make_url(self.db).render_as_string(hide_password=True)
        except sqlalchemy.exc.ArgumentError:
            return "the database URL in project.json"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # the driver must not BEGIN on its own: _begin does
            for pragma in ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            # Readers take no lock in WAL mode; writers take the write lock up front (see module doc).
            conn.exec_driver_sql(
                "BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE"
            )

    return engine


class Project:
    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self.videos_root = Path(settings.videos_root).resolve()
        self.engine = make_engine(settings.db)
        # Reads get connections of their own: requests waiting out the busy timeout for the write lock
        # (held long by, say, a sqlite3 shell left in a transaction) must not take every pooled one from
        # the pages, progress and videos. An in-memory database is one connection's: shared then.
        url = self.engine.url
        own = url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")
        self._reads = make_engine(settings.db) if own else self.engine
        self._reader = self._reads.execution_options(readonly=True)

    @classmethod
    def create(
        cls,
        directory: str | Path,
        videos_root: str | Path,
        *,
        db: str | None = None,
        ratings_per_video: int = 3,
        lease_minutes: float = 120,
    ) -> Project:
        directory = Path(directory)
        for name in (CONFIG_FILE, *([DB_FILE] if db is None else [])):
            if (directory / name).exists():  # a database without its project.json still holds ratings
                raise VideoliftError(
                    f"{directory} already holds a project ({name}); choose another --project"
                )
        root = Path(videos_root)
        if not root.is_dir():
            raise VideoliftError(f"videos root {root} is not a directory")
        try:  # settings and the database URL are checked before the directory is made
            settings = Settings(
                db=db or f"sqlite:///{(directory / DB_FILE).resolve()}",
                videos_root=str(root.resolve()),
                ratings_per_video=ratings_per_video,
                lease_minutes=lease_minutes,
            )
            if db is not None:
                sqlalchemy.engine.make_url(db).get_dialect()
        except ValidationError as exc:
            field, msg = validation_field(exc)
            raise UsageError(f"--{field.replace('_', '-')}: {msg}") from None
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as exc:
            raise UsageError(f"--db {db}: {exc}") from None  # not a URL, or no dialect of that name
        made = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            project = cls._connect(directory, settings)
        except VideoliftError:
            if made:  # nothing half-created: create can simply be rerun
                shutil.rmtree(directory, ignore_errors=True)
            raise
        project.save_settings()
        return project

    @classmethod
    def open(cls, directory: str | Path) -> Project:
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.exists():
            raise VideoliftError(
                f"no annotation project in {directory} (missing {CONFIG_FILE}); run `create` first"
            )
        try:
            settings = Settings.model_validate(read_json(path))
        except ValidationError as exc:
            field, msg = validation_field(exc)
            raise DataError(msg, file=path, field=field) from None
        return cls._connect(directory, settings)

    @classmethod
    def _connect(cls, directory: Path, settings: Settings) -> Project:
        """The project on its database, with the schema made (a no-op on an existing one); a database
        that cannot be reached or is not one is named, not a traceback."""
        project = None
        try:
            project = cls(directory, settings)
            Base.metadata.create_all(project.engine)
        except (sqlalchemy.exc.SQLAlchemyError, ModuleNotFoundError) as exc:  # a driver not installed here
            if project is not None:
                project.close()
            problem = getattr(exc, "orig", None) or exc
            raise VideoliftError(
                f"{settings.database_name()}: cannot open the project's database ({problem})"
            ) from None
        return project

    def save_settings(self) -> None:
        path = self.directory / CONFIG_FILE
        with atomic_write(path) as handle:
            handle.write(json.dumps(self.settings.model_dump(), indent=2) + "\n")
        os.chmod(path, 0o600)  # may hold a database password

    @contextlib.contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        with (
            Session(self._reader if readonly else self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def close(self) -> None:
        """Close the database connections: SQLite folds its write-ahead log into annotate.db now, not
        whenever the garbage collector happens to drop the engine (a copy taken in between is stale)."""
        self.engine.dispose()
        self._reads.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clean_name(name: str, what: str, limit: int) -> str:
    """A name as it is stored (a user's, a critic's, a model's): stripped, so " c " is no other name than
    "c"; UsageError unless it has 1 to ``limit`` characters (its column's size) of valid Unicode (a lone
    surrogate, an undecodable byte on the command line, would break every page and export showing it)."""
    clean = name.strip()
    if not clean or len(clean) > limit:
        raise UsageError(f"{what} must have 1 to {limit} characters")
    if not valid_unicode(clean):
        raise UsageError(f"{what} must be valid Unicode text (it holds a lone surrogate)")
    if "\x00" in clean:  # SQLite stores it, PostgreSQL refuses it
        raise UsageError(f"{what} must not hold a NUL character")
    return clean


def add_user(session: Session, name: str, role: str = "annotator", *, reissue: bool = False) -> str:
    """Create a user (or give an existing one a new token with ``reissue``); returns the bearer token.

    Only the token's SHA-256 is stored, so a lost token cannot be recovered, only reissued.
    """
    name = clean_name(name, "a user name", 100)
    token = secrets.token_urlsafe(24)
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        session.add(User(name=name, role=role, token_hash=hash_token(token)))
    elif not reissue:
        raise VideoliftError(f"user {name!r} already exists; pass --reissue to give them a new token")
    elif user.role != role:
        raise VideoliftError(f"user {name!r} is an {user.role}, not an {role}")
    else:
        user.token_hash = hash_token(token)
    return token


def user_for_token(session: Session, token: str) -> User | None:
    return session.scalar(select(User).where(User.token_hash == hash_token(token))) if token else None
