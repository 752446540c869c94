"""Configurations: saving and reading them (crud.py), conversation bindings, the provider and model catalogs,
export/import (backup.py) and usage reports. Imports the store, crypto, legacy.compat and errors; never aiohttp."""
