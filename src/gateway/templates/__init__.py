"""Templates: ready-made configuration setups (built-in TOML shipped here, plus the operator's TEMPLATES_FILE),
and applying one for a user. May import configurations, crypto, the store, errors and validation; never legacy,
never aiohttp."""
