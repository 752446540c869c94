"""The /v1 proxy: selection, cache, forwarding, relay, failover, translation, usage, metrics. May import web,
configurations, crypto, the store and the URL policy; never admin."""
