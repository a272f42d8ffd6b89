"""Tool-call parsing from both wire forms."""

from gateway.conversation.llm_tools import HermesTextParser, ToolCall, ToolCallAccumulator, openai_tools


def feed(parser: HermesTextParser, deltas: list[str]) -> tuple[str, list[ToolCall]]:
    text, calls = "", []
    for d in deltas:
        t, c = parser.push(d)
        text, calls = text + t, calls + c
    t, c = parser.finish()
    return text + t, calls + c


def test_hermes_tags_are_split_out_even_across_deltas():
    deltas = [
        "Goodbye, thanks",
        " for calling! <tool",
        '_call>\n{"name": "end_call", ',
        '"arguments": {}}\n</tool_',
        "call>",
    ]
    text, calls = feed(HermesTextParser(), deltas)
    assert text.strip() == "Goodbye, thanks for calling!"
    assert calls == [ToolCall("end_call", {})]


def test_bare_json_reply_is_a_tool_call_not_speech():
    text, calls = feed(
        HermesTextParser(),
        ['{"name": "book_appointment", ', '"arguments": {"caller_name": "Jo", "address": "1 Oak St"}}'],
    )
    assert text == ""
    assert calls == [ToolCall("book_appointment", {"caller_name": "Jo", "address": "1 Oak St"})]


def test_plain_text_passes_through_and_a_lone_angle_bracket_is_not_lost():
    text, calls = feed(HermesTextParser(), ["It costs <", "100 dollars."])
    assert text == "It costs <100 dollars." and calls == []


def test_openai_tool_call_deltas_are_assembled():
    acc = ToolCallAccumulator()
    acc.add(0, "transfer_call", '{"rea')
    acc.add(0, None, 'son": "asked for a person"}')
    acc.add(1, "end_call", "")
    acc.add(2, "broken", "{not json")
    assert acc.calls() == [ToolCall("transfer_call", {"reason": "asked for a person"}), ToolCall("end_call", {})]


def test_openai_tools_schema():
    tools = openai_tools(["end_call", "nope"])
    assert [t["function"]["name"] for t in tools] == ["end_call"]
    assert tools[0]["type"] == "function" and "parameters" in tools[0]["function"]
