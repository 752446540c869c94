"""Configurations: crud, conversations, provider and model catalogs, backup, usage reports. May import crypto, the
store, legacy.compat (backup) and errors; never aiohttp."""
