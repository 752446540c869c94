"""litellm's model list as the gateway keeps it: the fields it reads, each repeated value held once."""

from __future__ import annotations

from gateway.configurations.model_catalog import ModelEntry, model_data


def test_entries_keep_the_read_fields_and_share_repeated_values() -> None:
    data = model_data()
    assert len(data) > 1000 and all(isinstance(entry, ModelEntry) for entry in data.values())
    mini = data["gpt-4o-mini"]
    assert (mini.litellm_provider, mini.mode) == ("openai", "chat")
    assert mini.input_cost_per_token and mini.output_cost_per_token and 0 < mini.input_cost_per_token < 1e-3
    # One object per distinct value (~140 providers, a few modes, ~300 prices over ~4,000 models), not one per model.
    for index in range(len(ModelEntry._fields)):
        values = [entry[index] for entry in data.values() if entry[index] is not None]
        assert len({id(value) for value in values}) == len({(type(value), value) for value in values})
