"""The command line (main.py), first-start bootstrap and serve. May import gateway.app and every room;
nothing imports it."""
