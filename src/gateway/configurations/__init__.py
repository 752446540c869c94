"""Configurations: crud, cleared keys, conversations, provider and model catalogs, backup, usage reports. May
import crypto, the store, errors, validation and the URL policy; never legacy or templates (they build on it), never
aiohttp."""
