"""Alembic environment for poolstride's own tables (``ps_*``) only.

``poolstride db upgrade`` passes an engine in ``config.attributes["engine"]``. The ``alembic``
command (run from the repository root with ``alembic.ini``) takes the URL from ``-x db=URL``,
else ``sqlalchemy.url``, else ``$POOLSTRIDE_DB``, else ``sqlite:///poolstride.db``.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.config import Config
from sqlalchemy import Engine

from search.store._engine import make_engine, resolve_db_url, write_engine
from search.store._models import Base
from search.store._schema import VERSION_TABLE, include_name

_OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "version_table": VERSION_TABLE,
    "include_name": include_name,
    # SQLite can only ALTER tables by copying them; batch mode does that.
    "render_as_batch": True,
    "compare_type": True,
    # SQLite has transactional DDL; SQLAlchemy (not sqlite3) emits BEGIN here, so use it.
    "transactional_ddl": True,
}


def _url(config: Config) -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("db")
        or config.get_main_option("sqlalchemy.url")
        or resolve_db_url(None)
    )


def run_offline(config: Config) -> None:
    context.configure(url=_url(config), literal_binds=True, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online(config: Config) -> None:
    given: Engine | None = config.attributes.get("engine")
    engine = given or write_engine(make_engine(_url(config)))
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **_OPTIONS)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if given is None:
            engine.dispose()


def run(config: Config) -> None:
    if config.config_file_name is not None and config.attributes.get("engine") is None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        run_offline(config)
    else:
        run_online(config)


# Alembic sets context.config before it runs this file. The file ships in the package, so
# other importers (pytest's doctest collection walks the package) meet it too: for them,
# there is nothing to run.
if hasattr(context, "config"):
    run(context.config)
