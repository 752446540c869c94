"""Storage and change propagation: engine, models, the Alembic runner and its scripts, the change bus with its
PostgreSQL (LISTEN/NOTIFY) and SQLite (change_log) transports. Imports settings, errors and libraries only;
never aiohttp."""
