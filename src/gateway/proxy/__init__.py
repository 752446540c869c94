"""The /v1 proxy: selection, cache, exchange, dispatch, forwarding, relay, failover, translation, usage, metrics.
exchange -> dispatch -> translation -> forward, never back (import-linter). May import web,
configurations, crypto, the store and the URL policy; never admin."""
