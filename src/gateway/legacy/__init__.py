"""Legacy: the old settings source, migration onto configurations, settings compatibility. May import configurations,
accounts, crypto, the store, settings, errors and validation; configurations never imports it; never aiohttp."""
