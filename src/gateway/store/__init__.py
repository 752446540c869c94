"""Storage and change propagation: engine, models, Alembic runner and migrations/, the change bus with its PostgreSQL
and SQLite transports. May import libraries only; never aiohttp."""
