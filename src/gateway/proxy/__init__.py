"""The /v1 proxy: selection, cache, forwarding, relay, failover, translation, usage, metrics. May import web,
configurations, crypto and the store; never admin."""
