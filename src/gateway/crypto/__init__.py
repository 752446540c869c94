"""Keys and crypto: the AES-256-GCM key ring for provider keys at rest, key rotation, and how API keys are masked
and recognised as placeholders. Imports only the store and errors; never aiohttp."""
