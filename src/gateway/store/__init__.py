"""Storage and change propagation: engine, models, the Alembic runner and scripts, the change bus with its
PostgreSQL (LISTEN/NOTIFY) and SQLite (change_log) transports. Imports only settings, errors and libraries; never aiohttp."""
