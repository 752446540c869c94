"""Engine set-up: what every pooled SQLite connection is told when it opens."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from gateway.store.db import make_engine


async def test_sqlite_connections_enforce_foreign_keys_use_wal_and_keep_a_small_page_cache(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    try:
        async with engine.connect() as connection:
            pragmas = {name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                       for name in ("foreign_keys", "journal_mode", "busy_timeout", "cache_size")}
    finally:
        await engine.dispose()
    # cache_size < 0 is KiB: 256 KiB per connection instead of SQLite's 2 MiB, which the web page's usage
    # queries would fill and every pooled connection keep.
    assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 10000, "cache_size": -256}
