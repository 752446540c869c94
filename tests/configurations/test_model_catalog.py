"""litellm's model list as the gateway keeps it: the fields it reads, each repeated value held once."""

from __future__ import annotations

from gateway.configurations.model_catalog import KEPT_FIELDS, model_data


def test_entries_keep_the_read_fields_and_share_repeated_values() -> None:
    data = model_data()
    entries = [entry for entry in data.values() if isinstance(entry, dict)]
    assert len(entries) > 1000
    assert all(set(entry) <= set(KEPT_FIELDS) for entry in entries)
    assert data["gpt-4o-mini"]["litellm_provider"] == "openai" and data["gpt-4o-mini"]["mode"] == "chat"
    assert data["gpt-4o-mini"]["input_cost_per_token"] > 0
    # One object per distinct value (~140 providers and a few modes over ~4,000 entries), not one per entry.
    for field in ("litellm_provider", "mode"):
        values = [entry[field] for entry in entries if field in entry]
        assert len({id(value) for value in values}) == len(set(values))
    prices = [entry["input_cost_per_token"] for entry in entries if "input_cost_per_token" in entry]
    assert len({id(value) for value in prices}) == len({(type(value), value) for value in prices})
