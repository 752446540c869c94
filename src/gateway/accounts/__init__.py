"""Accounts: users, gateway tokens and the audit trail. May import the store and errors; never aiohttp."""
