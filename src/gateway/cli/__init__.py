"""The command line: `llm-gateway` and its subcommands (main.py), first-start bootstrap and serving with workers.
Imports every room below it and gateway.app; nothing imports it."""
