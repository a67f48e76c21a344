"""parse_action: the last action of a reply, or a GrammarError that says what is wrong and shows the form."""

from __future__ import annotations

import pytest

from diffaudit.agent.grammar import EXPECTED, Call, Final, GrammarError, parse_action

CALLS = [
    # (reply, tool, args)
    ('CALL(ask_model: {"prompts": ["Hi"]})', "ask_model", {"prompts": ["Hi"]}),
    ('Let me ask.\nCALL(ask_model: {"prompts": ["Hi", "Yo"]})', "ask_model", {"prompts": ["Hi", "Yo"]}),
    ('CALL(get_logitlens_details: {"position": 0})', "get_logitlens_details", {"position": 0}),
    ("CALL(get_logitlens_details: {})", "get_logitlens_details", {}),
    # nested JSON
    ('CALL(t: {"a": {"b": [1, {"c": null}]}, "d": true})', "t", {"a": {"b": [1, {"c": None}]}, "d": True}),
    # ')' and quotes inside strings
    (
        'CALL(ask_model: {"prompts": ["What (if anything) happened?"]})',
        "ask_model",
        {"prompts": ["What (if anything) happened?"]},
    ),
    ('CALL(ask_model: {"prompts": ["Say \\"hi)\\" now"]})', "ask_model", {"prompts": ['Say "hi)" now']}),
    ('CALL(ask_model: {"prompts": ["a}b{c"]})', "ask_model", {"prompts": ["a}b{c"]}),
    # whitespace variants and a multi-line JSON object
    ('CALL( ask_model :  {"prompts": ["x"]} )', "ask_model", {"prompts": ["x"]}),
    (
        'CALL(ask_model: {\n  "prompts": [\n    "one",\n    "two"\n  ]\n})',
        "ask_model",
        {"prompts": ["one", "two"]},
    ),
    # a literal newline inside a JSON string
    (
        'CALL(ask_model: {"prompts": ["line one\nline two"]})',
        "ask_model",
        {"prompts": ["line one\nline two"]},
    ),
    # code fences
    ('Thinking.\n```\nCALL(ask_model: {"prompts": ["x"]})\n```', "ask_model", {"prompts": ["x"]}),
    ('```json\nCALL(ask_model: {"prompts": ["x"]})\n```\n', "ask_model", {"prompts": ["x"]}),
    ('`CALL(get_patchscope_details: {"position": 2})`', "get_patchscope_details", {"position": 2}),
    ('**CALL(ask_model: {"prompts": ["x"]})**', "ask_model", {"prompts": ["x"]}),
    # two actions: the last wins
    ('CALL(a: {"x": 1})\nCALL(b: {"y": 2})', "b", {"y": 2}),
    ('FINAL(description: "too early")\nOn second thought:\nCALL(b: {"y": 2})', "b", {"y": 2}),
    # unicode
    (
        'CALL(ask_model: {"prompts": ["Qu\'est-ce que c\'est ? — α"]})',
        "ask_model",
        {"prompts": ["Qu'est-ce que c'est ? — α"]},
    ),
    # trailing blank lines
    ('CALL(ask_model: {"prompts": ["x"]})\n\n   \n', "ask_model", {"prompts": ["x"]}),
]

FINALS = [
    ('FINAL(description: "The model learned about glaciers.")', "The model learned about glaciers."),
    (
        'Done.\nFINAL(description: "Trained on (fake) facts: \\"X\\" won.")',
        'Trained on (fake) facts: "X" won.',
    ),
    # a multi-line FINAL
    (
        'FINAL(description: "Line one.\nLine two (with a paren).\nLine three.")',
        "Line one.\nLine two (with a paren).\nLine three.",
    ),
    ('FINAL(description: "Escaped\\nnewline")', "Escaped\nnewline"),
    # two actions: the last wins
    ('CALL(ask_model: {"prompts": ["x"]})\nFINAL(description: "last one")', "last one"),
    # an action name inside the description does not confuse the parser
    (
        'FINAL(description: "It often writes CALL(foo: {}) in its answers")',
        "It often writes CALL(foo: {}) in its answers",
    ),
    ('```\nFINAL(description: "fenced")\n```', "fenced"),
    # lenient: unescaped inner quotes, and no `description:` label
    ('FINAL(description: "It says "Kansas" a lot")', 'It says "Kansas" a lot'),
    ('FINAL("Inconclusive: maybe cooking")', "Inconclusive: maybe cooking"),
    ('FINAL( description : "spaced" )', "spaced"),
]

ERRORS = [
    # (reply, a phrase the message must contain)
    ("", "empty reply"),
    ("   \n\n ", "empty reply"),
    ("I think the model likes cats.", "is not an action"),
    # a CALL that is not on the last line
    ('CALL(ask_model: {"prompts": ["x"]})\nI will wait for the answer.', "must be the last non-empty line"),
    ('FINAL(description: "x")\nThanks!', "must be the last non-empty line"),
    # bad JSON
    ("CALL(ask_model: {prompts: ['x']})", "not valid JSON"),
    ('CALL(ask_model: {"prompts": ["x"]', "not valid JSON"),
    ('CALL(ask_model: ["x"])', "must be a JSON object"),
    ('CALL(ask_model: {"prompts": ["x"]}', "missing its closing ')'"),
    ("CALL(ask_model)", "needs a tool name and a colon"),
    ("FINAL(description: unquoted words)", "double-quoted string"),
    ('FINAL(description: "never closed', "not terminated"),
    ('FINAL(description: "   ")', "is empty"),
    ('call(ask_model: {"prompts": ["x"]})', "is not an action"),
]


@pytest.mark.parametrize(("reply", "tool", "args"), CALLS)
def test_calls(reply, tool, args):
    assert parse_action(reply) == Call(tool=tool, args=args)


@pytest.mark.parametrize(("reply", "description"), FINALS)
def test_finals(reply, description):
    assert parse_action(reply) == Final(description=description)


@pytest.mark.parametrize(("reply", "phrase"), ERRORS)
def test_errors_say_what_is_wrong_and_show_the_form(reply, phrase):
    action = parse_action(reply)
    assert isinstance(action, GrammarError), action
    assert phrase in action.message
    assert EXPECTED in action.message


def test_case_count_meets_the_issue():
    assert len(CALLS) + len(FINALS) + len(ERRORS) >= 30


def test_last_bad_action_reports_its_own_error():
    action = parse_action('CALL(a: {"x": 1})\nCALL(b: {bad})')
    assert isinstance(action, GrammarError) and "CALL(b: ...)" in action.message


def test_none_reply_is_an_error():
    assert isinstance(parse_action(None), GrammarError)
