"""Templates: ready-made configuration setups (built-in TOML shipped here, plus the operator's TEMPLATES_FILE),
and applying one for a user. Imports the provider catalog and the configurations service; never aiohttp."""
