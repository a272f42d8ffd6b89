"""Code every Switchboard service uses: audio codecs, the Twilio Media Streams wire format,
settings helpers, OpenAI-shaped errors and HTTP clients for the STT/TTS services."""
