"""Legacy: reading the old settings tables (source.py), migrating users onto configurations (migration.py) and
the old single-settings API kept working on top of configurations (compat.py). Imports configurations,
accounts, crypto, the store and errors; never aiohttp."""
