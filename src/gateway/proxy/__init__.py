"""The OpenAI-compatible proxy: selection, forwarding, failover, usage, change propagation."""
