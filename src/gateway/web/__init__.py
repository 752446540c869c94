"""The aiohttp edge shared by proxy, checks and admin: AppKeys, auth, error responses, request parsing, health,
resolver, cleanup contexts. May import every room below it; never admin."""
