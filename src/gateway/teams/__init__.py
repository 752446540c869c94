"""Teams (DESIGN §8): teams and their members with roles, team configurations (created, shared, edited under the
roles), members' team defaults, team key rotation, team backups. May import configurations, accounts, crypto,
store and errors; never aiohttp."""
