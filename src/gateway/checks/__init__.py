"""Checks: probing a provider with one small request (probe.py) and test runs of saved or unsaved
configurations with their verdicts stored (runs.py). Imports configurations, crypto, the store, the proxy's
send_once and aiohttp's client; never admin."""
