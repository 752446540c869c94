"""Accounts: users, gateway tokens (hashing, display prefix) and the audit trail. Imports only the store and
errors; never aiohttp."""
