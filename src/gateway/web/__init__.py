"""The aiohttp edge shared by the proxy, the checks and admin: typed AppKeys, token auth middleware, rendering
errors as responses, parsing requests, health and runtime metrics, the guarded resolver, and the cleanup
contexts that run the change-bus transports and the legacy read-through. Imports the rooms below; never admin."""
