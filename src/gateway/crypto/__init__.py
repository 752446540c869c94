"""Keys and crypto: the AES-256-GCM key ring, rotation, API-key masking. May import the store and errors;
never aiohttp."""
