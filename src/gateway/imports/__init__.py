"""Imports from other gateways: a LiteLLM proxy's config.yaml as configurations. May import configurations,
accounts, crypto, the store, errors and validation; configurations never imports it; never aiohttp."""
