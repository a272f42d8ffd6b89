"""The language of a call: English, Spanish, or detected from the caller's first words.

An agent answers in ``en``, ``es`` or ``auto`` (``GATEWAY_AGENT__LANGUAGE``, alias ``GATEWAY_LANGUAGE``).
:class:`CallLanguage` tells the STT which language to decode (``auto``: the multilingual model
detects it, on the caller's first utterance), then holds the one it found; the replies follow it:
the LLM is told to answer in it, the voice is a Kokoro voice of it, and the fixed lines (apology,
re-prompt, goodbye) are said in it. English needs the English-only STT model only; Spanish and
``auto`` need the STT service's multilingual model (``STT_MULTILINGUAL_MODEL``, Whisper base).
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED = ("en", "es")
VOICES = {"en": "af_heart", "es": "ef_dora"}
"""Kokoro's default voice per language (``ef_dora``/``em_alex`` are its Spanish voices)."""
LINES: dict[str, dict[str, str]] = {
    "es": {
        "greeting": "Gracias por llamar a Fontanería Acme, soy la recepcionista virtual. ¿En qué puedo ayudarle?",
        "apology": "Perdone, ahora mismo me cuesta oírle. ¿Puede repetirlo?",
        "reprompt": "¿Sigue ahí?",
        "goodbye": "No le oigo, así que voy a colgar. Llámenos cuando quiera. ¡Adiós!",
        "trouble_reprompt": "Perdone, tenemos un problema técnico. ¿Puede repetirlo?",
        "trouble_goodbye": "Perdone, tenemos problemas técnicos. Vuelva a llamar en unos minutos. ¡Adiós!",
        "end_call_goodbye": "Gracias por llamar a Fontanería Acme. ¡Adiós!",
        "transfer": "Espere un momento, le paso la llamada.",
        "no_transfer": "Perdone, ahora no puedo pasarle la llamada, pero puedo tomar un mensaje.",
    },
}
INSTRUCTIONS = {
    "es": "El cliente habla español: responde siempre en español, con frases cortas y naturales para una llamada.",
}
"""Appended to the system prompt once the call's language is known (English needs none)."""


@dataclass
class CallLanguage:
    """One call's language.

    Attributes:
        setting: the agent's ``en``, ``es`` or ``auto``.
        current: the language in use: the setting, or for ``auto`` ``None`` until the caller's first
            words are heard (English is spoken until then: the greeting).
    """

    setting: str = "en"
    current: str | None = None

    def __post_init__(self) -> None:
        if self.setting not in (*SUPPORTED, "auto"):
            raise ValueError(f"unknown language {self.setting!r}: use en, es or auto")
        if self.setting != "auto":
            self.current = self.setting

    @property
    def spoken(self) -> str:
        """The language the agent speaks now (English until ``auto`` has detected one)."""
        return self.current or "en"

    def for_stt(self) -> str:
        """What the STT is asked to decode: the known language, or ``auto`` (detect)."""
        return self.current or "auto"

    def heard(self, language: str | None) -> bool:
        """The STT decoded ``language``: with ``auto``, the first one decides. True if it changed now."""
        if self.current is not None or not language:
            return False
        self.current = language if language in SUPPORTED else "en"
        return True

    def line(self, key: str, english: str) -> str:
        """A fixed line in the spoken language (``english``, the configured one, for English)."""
        return LINES.get(self.spoken, {}).get(key, english)

    def instruction(self) -> str:
        """What to add to the system prompt so the LLM answers in the spoken language ("" for English)."""
        return INSTRUCTIONS.get(self.spoken, "")

    def voice(self, configured: str) -> str:
        """The agent's voice for the spoken language: ``configured`` when it speaks it (Kokoro's first
        letter: a/b English, e Spanish), else the language's default voice."""
        first = {"en": "ab", "es": "e"}.get(self.spoken, "")
        return configured if configured[:1] in first else VOICES.get(self.spoken, configured)
