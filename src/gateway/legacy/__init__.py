"""Legacy: the old settings source, migration onto configurations, settings compatibility. May import configurations,
accounts, crypto, the store and errors; never aiohttp."""
