"""Clients of the model services: STT and TTS (``speech``), the LLM (``llm``).

Every failure is a typed :class:`shared.errors.UpstreamError` saying whether a retry makes sense.
"""
