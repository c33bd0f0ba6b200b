"""Step splitting/joining and the policy prompt builder."""

from __future__ import annotations

import pytest

from vlprm.data.schema import Problem, Step
from vlprm.prompts import (PERCEPTION_HEADER, REASONING_HEADER, build_policy_messages,
                           format_options, policy_user_text)
from vlprm.steps import detect_style, join_steps, merge_steps, split_steps, step_prefix

STRUCTURED = """### Perception
Step 1: The image shows four circles arranged in a row.

Step 2: From left to right their sizes are small, medium, large and a question mark.

Step 3: The options are (A) small, (B) medium, (C) large, (D) tiny.

### Reasoning
Step 4: The sizes grow from left to right, so the pattern is increasing size.
The next circle must be larger than the large one.

Step 5: None of the options is larger than large, so the question mark must continue the cycle and be small.

Step 6: Therefore, the final answer is \\boxed{A}."""

PLAIN = """First, I look at the chart: the bar for 2019 reaches 40 and the bar for 2020 reaches 55.

The increase is 55 - 40 = 15.

As a percentage of 40 this is 15 / 40 = 0.375, i.e. 37.5%.

So the answer is \\boxed{37.5}."""


def texts(steps):
    return [s.text for s in steps]


def kinds(steps):
    return [s.kind for s in steps]


# ----------------------------------------------------------------------------- structured


def test_structured_kinds_and_texts():
    steps = split_steps(STRUCTURED, "structured")
    assert kinds(steps) == ["perception"] * 3 + ["reasoning"] * 3
    assert steps[0].text == "The image shows four circles arranged in a row."
    # A step continues over line breaks until the next marker; markers are not in the text.
    assert steps[3].text.endswith("larger than the large one.")
    assert "\n" in steps[3].text
    assert not any(t.startswith("Step") for t in texts(steps))
    assert steps[-1].text.endswith("\\boxed{A}.")


def test_structured_round_trip_text_is_exact():
    steps = split_steps(STRUCTURED, "structured")
    assert join_steps(steps, "structured") == STRUCTURED


@pytest.mark.parametrize("style,text", [("structured", STRUCTURED), ("plain", PLAIN)])
def test_round_trip(style, text):
    steps = split_steps(text, style)
    again = split_steps(join_steps(steps, style), style)
    assert texts(again) == texts(steps)
    assert kinds(again) == kinds(steps)


def test_round_trip_with_only_reasoning_and_mixed_orders():
    steps = [Step("look", "perception"), Step("think", "reasoning"), Step("look again", "perception"),
             Step("conclude \\boxed{1}", "reasoning")]
    text = join_steps(steps, "structured")
    assert text.count(PERCEPTION_HEADER) == 2 and text.count(REASONING_HEADER) == 2
    again = split_steps(text)
    assert texts(again) == texts(steps) and kinds(again) == kinds(steps)
    only = [Step("a"), Step("b")]
    assert PERCEPTION_HEADER not in join_steps(only)
    assert kinds(split_steps(join_steps(only))) == ["reasoning", "reasoning"]


def test_step_prefix_is_what_the_policy_wrote():
    steps = split_steps(STRUCTURED)
    assert step_prefix(steps, 0) == ""
    p3 = step_prefix(steps, 3)
    assert STRUCTURED.startswith(p3)  # identical to the policy's own text
    assert p3.endswith("\n\n") and REASONING_HEADER not in p3
    p4 = step_prefix(steps, 4)
    assert STRUCTURED.startswith(p4) and REASONING_HEADER in p4
    # The prefix plus a continuation splits into the prefix steps followed by the new ones.
    cont = split_steps(p3 + "### Reasoning\nStep 4: Sizes increase.\n\nStep 5: So \\boxed{C}.")
    assert texts(cont[:3]) == texts(steps[:3])
    assert texts(cont[3:]) == ["Sizes increase.", "So \\boxed{C}."]
    assert kinds(cont[3:]) == ["reasoning", "reasoning"]
    plain = split_steps(PLAIN, "plain")
    assert PLAIN.startswith(step_prefix(plain, 2, "plain"))
    with pytest.raises(ValueError):
        step_prefix(steps, 7)


# ----------------------------------------------------------------------------- plain


def test_plain_split_on_blank_lines():
    steps = split_steps(PLAIN, "plain")
    assert len(steps) == 4
    assert kinds(steps) == ["reasoning"] * 4
    assert steps[0].text.startswith("First, I look at the chart")
    assert join_steps(steps, "plain") == PLAIN


def test_plain_drops_empty_paragraphs_and_extra_whitespace():
    steps = split_steps("\n\n  a  \n\n\n   \n\nb\r\n\r\nc\n\n", "plain")
    assert texts(steps) == ["a", "b", "c"]


def test_plain_with_perception_header_is_parsed_as_structured():
    steps = split_steps("Perception:\nThere is a red square.\n\nReasoning:\nRed means stop.", "plain")
    assert kinds(steps) == ["perception", "reasoning"]


# ----------------------------------------------------------------------------- messy outputs


def test_no_headers_falls_back_to_paragraphs():
    steps = split_steps(PLAIN, "structured")
    assert texts(steps) == texts(split_steps(PLAIN, "plain"))
    assert kinds(steps) == ["reasoning"] * 4


def test_bold_markers_and_markdown_headers():
    text = ("## Perception:\n**Step 1:** The graph has two lines.\n**Step 2**: The blue line is higher.\n\n"
            "**Reasoning**\n### Step 3\nBlue dominates.\n\nStep 4. **Hence** \\boxed{B}")
    steps = split_steps(text)
    assert texts(steps) == ["The graph has two lines.", "The blue line is higher.", "Blue dominates.",
                            "**Hence** \\boxed{B}"]
    assert kinds(steps) == ["perception", "perception", "reasoning", "reasoning"]


def test_numbered_list_and_bullets_without_step_markers():
    text = ("Perception\n- The left cup holds 3 balls.\n- The right cup holds 5 balls.\n\n"
            "Reasoning\n1. Together 3 + 5 = 8.\n2. So the answer is \\boxed{8}.")
    steps = split_steps(text)
    assert texts(steps) == ["The left cup holds 3 balls.", "The right cup holds 5 balls.",
                            "Together 3 + 5 = 8.", "So the answer is \\boxed{8}."]
    assert kinds(steps) == ["perception", "perception", "reasoning", "reasoning"]
    # Round trip still holds once written in the canonical format.
    assert texts(split_steps(join_steps(steps))) == texts(steps)


def test_trailing_answer_line_and_answer_section_join_last_step():
    text = "### Reasoning\nStep 1: 2 + 2 = 4.\n\nStep 2: Done.\n\nFinal answer: \\boxed{4}"
    steps = split_steps(text)
    assert len(steps) == 2 and steps[-1].text == "Done.\n\nFinal answer: \\boxed{4}"
    text2 = "### Perception\nStep 1: A dog.\n\n### Reasoning\nStep 2: Dogs bark.\n\n**Final Answer**\n\\boxed{B}"
    steps2 = split_steps(text2)
    assert texts(steps2) == ["A dog.", "Dogs bark.\n\n\\boxed{B}"]


def test_preamble_before_first_header_and_step_words_in_text():
    text = ("Let me study the picture.\n### Perception\nStep 1: Step 2 of the staircase is red.\n"
            "### Reasoning\nStep 2: In step 3 of the plan we add.\nStep 3 of 4 is trivial here.")
    steps = split_steps(text)
    assert kinds(steps) == ["perception", "perception", "reasoning"]
    assert steps[0].text == "Let me study the picture."
    assert steps[1].text == "Step 2 of the staircase is red."  # not a marker mid-line
    assert steps[2].text == "In step 3 of the plan we add.\nStep 3 of 4 is trivial here."


def test_auto_style():
    assert detect_style(STRUCTURED) == "structured"
    assert detect_style(PLAIN) == "plain"
    assert texts(split_steps(PLAIN, "auto")) == texts(split_steps(PLAIN, "plain"))
    assert kinds(split_steps(STRUCTURED, "auto")) == kinds(split_steps(STRUCTURED, "structured"))


def test_empty_and_bad_style():
    assert split_steps("") == [] and split_steps("   \n") == []
    with pytest.raises(ValueError):
        split_steps("x", "fancy")
    with pytest.raises(ValueError):
        join_steps([Step("x")], "auto")


# ----------------------------------------------------------------------------- cap merging


def test_merge_sizes_are_even_and_order_kept():
    steps = [Step(f"s{i}", "perception" if i < 5 else "reasoning") for i in range(20)]
    merged = merge_steps(steps, 8)
    assert len(merged) == 8
    sizes = [len(m.text.split("\n\n")) for m in merged]
    assert sizes == [3, 3, 3, 3, 2, 2, 2, 2]
    assert "\n\n".join(m.text for m in merged) == "\n\n".join(s.text for s in steps)
    # s0-s2 all perception; s3-s5 mixes perception and reasoning -> reasoning.
    assert kinds(merged) == ["perception"] + ["reasoning"] * 7
    assert merged[1].text == "s3\n\ns4\n\ns5"


def test_merge_noop_and_invalid():
    steps = [Step("a"), Step("b")]
    assert texts(merge_steps(steps, 5)) == ["a", "b"]
    assert texts(merge_steps(steps, None)) == ["a", "b"]
    with pytest.raises(ValueError):
        merge_steps(steps, 0)


def test_split_with_cap_and_round_trip_of_merged_steps():
    body = "\n\n".join(f"Step {i + 1}: fact {i}" for i in range(6))
    text = f"### Perception\n{body}\n\n### Reasoning\n" + "\n\n".join(
        f"Step {i + 7}: infer {i}" for i in range(14)) + " \\boxed{C}"
    steps = split_steps(text, max_steps=8)
    assert len(steps) == 8
    assert [len(s.text.split("\n\n")) for s in steps] == [3, 3, 3, 3, 2, 2, 2, 2]
    assert kinds(steps) == ["perception", "perception"] + ["reasoning"] * 6
    # Structured: merged steps survive a join/split round trip (markers delimit steps).
    again = split_steps(join_steps(steps))
    assert texts(again) == texts(steps) and kinds(again) == kinds(steps)
    # Plain: re-splitting with the same cap gives the same groups.
    plain = "\n\n".join(f"para {i}" for i in range(11))
    capped = split_steps(plain, "plain", max_steps=4)
    assert [len(s.text.split("\n\n")) for s in capped] == [3, 3, 3, 2]
    assert texts(split_steps(join_steps(capped, "plain"), "plain", max_steps=4)) == texts(capped)


# ----------------------------------------------------------------------------- prompts


def _problem(**kw):
    base = dict(id="validation_Art_1", benchmark="mmmu",
                question="Compare <image 1> and <image 2>. Which is older?",
                images=["/data/a.png", "/data/b.png"], options=["<image 1>", "<image 2>"], answer="A",
                answer_type="multiple_choice")
    base.update(kw)
    return Problem(**base)


def test_format_options():
    assert format_options(["red", "blue"]) == "(A) red\n(B) blue"
    assert format_options(None) == "" and format_options([]) == ""


def test_build_policy_messages_structured():
    msgs = build_policy_messages(_problem(), "structured")
    assert [m["role"] for m in msgs] == ["system", "user"]
    content = msgs[1]["content"]
    assert content[0] == {"type": "image", "image": "/data/a.png"}
    assert content[1] == {"type": "image", "image": "/data/b.png"}
    assert content[2]["type"] == "text" and len(content) == 3
    text = content[2]["text"]
    assert text.startswith("Compare <image 1> and <image 2>.")
    assert "Options:\n(A) <image 1>\n(B) <image 2>" in text
    assert PERCEPTION_HEADER in text and REASONING_HEADER in text and "\\boxed{" in text
    assert "letter" in text


def test_build_policy_messages_plain_open_no_system():
    p = _problem(options=None, answer="3", answer_type="integer", images=["/x.png"],
                 metadata={"answer_hint": "Answer with an integer."})
    msgs = build_policy_messages(p, "plain", system_prompt=None)
    assert [m["role"] for m in msgs] == ["user"]
    text = msgs[0]["content"][-1]["text"]
    assert "Options:" not in text and PERCEPTION_HEADER not in text
    assert "Answer with an integer." in text and "blank line" in text
    with pytest.raises(ValueError):
        policy_user_text(p, "fancy")


def test_prompt_format_example_parses_as_intended():
    # The example in the instructions must itself split into 2 perception + 2 reasoning steps.
    text = policy_user_text(_problem(), "structured")
    start = text.index("Use exactly this format:\n") + len("Use exactly this format:\n")
    example = text[start:text.index("\\boxed{...}.") + len("\\boxed{...}.")]
    assert example.startswith(PERCEPTION_HEADER)
    assert kinds(split_steps(example)) == ["perception", "perception", "reasoning", "reasoning"]
