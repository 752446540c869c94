"""llm-gateway: many named LLM configurations, encrypted keys, one OpenAI-compatible gateway."""

__version__ = "0.1.0"
