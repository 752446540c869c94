"""Checks: the provider probe (probe.py) and configuration test runs (runs.py). May import web, proxy, configurations,
accounts, crypto, the store and the URL policy; never admin."""
