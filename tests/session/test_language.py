"""The call's language: a Spanish agent hears and answers in Spanish; ``auto`` follows the caller's first words."""

from __future__ import annotations

from gateway.conversation.language import INSTRUCTIONS, LINES
from tests.fakes import FakeLLM, FakeSTT, FakeTTS, HangUp, Say, run_call
from tests.session.support import finished, greeted

HOLA = "Hola, tengo una fuga debajo del fregadero."


async def test_auto_detects_spanish_on_the_first_words_and_answers_in_it() -> None:
    stt, tts = FakeSTT(language="es"), FakeTTS()
    llm = FakeLLM(["Lo siento. ¿Cuál es su dirección?"])
    script = [greeted(), Say(HOLA, 1800), finished("reply"), HangUp()]
    call = await run_call(script, llm=llm, stt=stt, tts=tts, profile={"language": "auto"})
    assert stt.languages[0] == "auto"  # detect on the first utterance
    assert INSTRUCTIONS["es"] in llm.requests[0].messages[0]["content"]  # the LLM is told to answer in Spanish
    assert [s.voice for s in tts.streams] == ["af_heart", "ef_dora"]  # greeted in English, then a Spanish voice
    assert call.agent_turns("greeting")[0]["text"] == call.settings.agent.greeting


async def test_a_spanish_agent_decodes_spanish_and_says_its_lines_in_spanish() -> None:
    stt = FakeSTT(down=True, language="es")  # every transcription fails: the apology is said
    script = [greeted(), Say(HOLA, 1800), finished("apology"), HangUp()]
    call = await run_call(
        script, stt=stt, tts=FakeTTS(), profile={"language": "es", "greeting": LINES["es"]["greeting"]}
    )
    assert set(stt.languages) == {"es"}
    (apology,) = call.agent_turns("apology")
    assert apology["text"] == LINES["es"]["apology"]
    assert call.tts.streams[0].voice == "ef_dora"


async def test_an_english_agent_asks_for_english() -> None:
    stt = FakeSTT()
    llm = FakeLLM(["Sure."])
    call = await run_call([greeted(), Say("My sink is leaking.", 1500), finished("reply"), HangUp()], llm=llm, stt=stt)
    assert set(stt.languages) == {"en"}
    assert llm.requests[0].messages[0]["content"] == "You are the test receptionist."
    assert call.tts.streams[0].voice == "af_heart"
