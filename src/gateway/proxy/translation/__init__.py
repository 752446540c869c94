"""Providers without OpenAI's wire format (Anthropic's Messages API, Gemini...) through litellm's translation,
both ways, streams included, in a worker process that owns litellm (worker.py), so the gateway's own process
never imports it; client.py is the gateway's side, protocol.py what the two say to each other."""

from gateway.proxy.translation.client import Translator, complete, stream

__all__ = ["Translator", "complete", "stream"]
