"""Every prompt template of the project, in one place.

Templates are module-level constants; small builder functions fill them. Other modules import
from here and never write prompt text of their own, so a prompt change is one edit and the
data a model was trained on can be reproduced at test time.

Sections: policy prompts (this part), then judge and EVPV prompts (appended by their owners).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlprm.data.schema import Problem

# =========================================================================== policy prompts
#
# The structured policy output format, exactly (`vlprm.steps` parses and rebuilds it):
#
#   ### Perception
#   Step 1: <one visual fact read from the image>
#
#   Step 2: <another visual fact>
#
#   ### Reasoning
#   Step 3: <a reasoning step that uses the facts>
#
#   Step 4: <...> Therefore, the final answer is \boxed{B}.
#
# Steps are numbered consecutively across both sections, separated by one blank line, and the
# final answer is boxed in the last step. The plain format is steps separated by blank lines,
# final answer boxed.

PERCEPTION_HEADER = "### Perception"
REASONING_HEADER = "### Reasoning"
STEP_SEPARATOR = "\n\n"
STEP_MARKER = "Step {index}: "

POLICY_SYSTEM_PROMPT = "You are a careful assistant who solves visual reasoning problems step by step."

STRUCTURED_INSTRUCTIONS = (
    "Solve the problem in two parts.\n"
    f'First, under the heading "{PERCEPTION_HEADER}", list the visual elements of the image that the question '
    "depends on (objects, shapes, colours, sizes, counts, numbers, text, positions and relations), "
    "one fact per step, stating only what is visible.\n"
    f'Then, under the heading "{REASONING_HEADER}", reason step by step from those facts to the answer.\n'
    'Number the steps consecutively across both parts as "Step 1:", "Step 2:", ..., '
    "leave a blank line between steps, and end the last step with the final answer in \\boxed{}.\n"
    "Use exactly this format:\n"
    f"{PERCEPTION_HEADER}\n"
    "Step 1: ...\n\n"
    "Step 2: ...\n\n"
    f"{REASONING_HEADER}\n"
    "Step 3: ...\n\n"
    "Step 4: ... Therefore, the final answer is \\boxed{...}."
)

PLAIN_INSTRUCTIONS = (
    "Solve the problem step by step. Write each step as one short paragraph and leave a blank line "
    "between steps. End the last step with the final answer in \\boxed{}."
)

CHOICE_ANSWER_INSTRUCTION = "Put only the letter of the correct option in \\boxed{}, e.g. \\boxed{A}."
OPEN_ANSWER_INSTRUCTION = "Put only the final answer in \\boxed{}, without units."

POLICY_INSTRUCTIONS = {"structured": STRUCTURED_INSTRUCTIONS, "plain": PLAIN_INSTRUCTIONS}


def format_options(options: list[str] | None) -> str:
    """Options as lettered lines: "(A) ...\\n(B) ..."; empty string when there are none."""
    if not options:
        return ""
    return "\n".join(f"({chr(ord('A') + i)}) {opt}" for i, opt in enumerate(options))


def question_with_options(problem: "Problem") -> str:
    """The question text followed by its options block (if any).

    `<image k>` tokens in the question are kept; the images themselves go first in the message.
    """
    text = problem.question.strip()
    opts = format_options(problem.options)
    if opts:
        text += "\n\nOptions:\n" + opts
    return text


def policy_user_text(problem: "Problem", style: str = "structured") -> str:
    """The text part of the policy's user turn: question, options, answer hint, instructions."""
    if style not in POLICY_INSTRUCTIONS:
        raise ValueError(f"style must be one of {sorted(POLICY_INSTRUCTIONS)}, got {style!r}")
    parts = [question_with_options(problem)]
    hint = (problem.metadata or {}).get("answer_hint")
    if hint:  # e.g. MathVista's precision/unit requirement
        parts.append(hint)
    parts.append(POLICY_INSTRUCTIONS[style])
    parts.append(CHOICE_ANSWER_INSTRUCTION if problem.options else OPEN_ANSWER_INSTRUCTION)
    return "\n\n".join(parts)


def build_policy_messages(problem: "Problem", style: str = "structured",
                          system_prompt: str | None = POLICY_SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """Chat messages (HF multimodal chat format) asking the policy to solve `problem`.

    [{"role": "system", "content": [{"type": "text", "text": ...}]},   # omitted if system_prompt is None
     {"role": "user", "content": [{"type": "image", "image": "/abs/img1.png"}, ...,
                                  {"type": "text", "text": question + options + instructions}]}]

    All images come first, in order (images[k-1] is `<image k>` for MMMU), then the text.
    """
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content: list[dict[str, Any]] = [{"type": "image", "image": path} for path in problem.images]
    content.append({"type": "text", "text": policy_user_text(problem, style)})
    messages.append({"role": "user", "content": content})
    return messages


# =========================================================================== judge prompts
#
# A strong VLM reviews a whole policy solution with the image (`vlprm.synthesis.judge`). It
# analyses every step in order, perception steps against the image and reasoning steps against
# the question and the earlier steps, then names the first incorrect step. The reply format
# below is what `vlprm.synthesis.judge.parse_judge_reply` reads (it also accepts a JSON object
# with "steps", "first_error_step" and "verdict").

JUDGE_SYSTEM_PROMPT = (
    "You are a meticulous grader of step-by-step solutions to visual reasoning problems. "
    "You look at the image yourself and check every step against it and against the question."
)

JUDGE_INSTRUCTIONS = (
    "Review the solution above one step at a time, in order.\n"
    "- A perception step describes the image. It is correct only if everything it states is "
    "actually visible in the image (objects, shapes, colours, sizes, counts, numbers, text, positions).\n"
    "- A reasoning step is correct only if it follows from the question, the image and the earlier "
    "steps, without calculation or logic errors.\n"
    "A step that relies on an earlier incorrect step is incorrect too. Find the FIRST incorrect step.\n"
    "Reply in exactly this format, one line per step, and write nothing after the VERDICT line:\n"
    "Step 1 (perception): correct|incorrect - <one-sentence reason>\n"
    "Step 2 (...): correct|incorrect - <one-sentence reason>\n"
    "...\n"
    "FIRST_ERROR_STEP: <number of the first incorrect step, or none>\n"
    "VERDICT: correct|incorrect"
)


def _reference_answer_text(problem: "Problem") -> str:
    """The reference answer as the judge sees it: "(B) red" for multiple choice, else the answer."""
    ans = str(problem.answer).strip()
    if problem.options and len(ans) == 1 and ans.isalpha():
        i = ord(ans.upper()) - ord("A")
        if 0 <= i < len(problem.options):
            return f"({ans.upper()}) {problem.options[i]}"
    return ans


def judge_user_text(problem: "Problem", steps: list, show_reference: bool = True) -> str:
    """The text part of the judge's user turn: question, reference answer, numbered steps
    labelled (perception) / (reasoning), and the reply instructions. steps are `Step`s (or any
    objects with .text and .kind)."""
    parts = ["### Question:\n" + question_with_options(problem)]
    if show_reference and str(problem.answer).strip():
        parts.append("### Reference answer:\n" + _reference_answer_text(problem))
    lines = [f"Step {i} ({'perception' if getattr(s, 'kind', 'reasoning') == 'perception' else 'reasoning'}): "
             f"{s.text.strip()}" for i, s in enumerate(steps, 1)]
    parts.append(f"### Solution ({len(steps)} steps):\n" + STEP_SEPARATOR.join(lines))
    parts.append(JUDGE_INSTRUCTIONS)
    return "\n\n".join(parts)


def build_judge_messages(problem: "Problem", steps: list, show_reference: bool = True,
                         system_prompt: str | None = JUDGE_SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """Chat messages (HF multimodal format) asking a judge VLM to review a solution: system
    prompt, then one user turn with all images first and `judge_user_text` after them."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content: list[dict[str, Any]] = [{"type": "image", "image": path} for path in problem.images]
    content.append({"type": "text", "text": judge_user_text(problem, steps, show_reference)})
    messages.append({"role": "user", "content": content})
    return messages


# =========================================================================== EVPV prompts
#
# Explicit visual premise verification (`vlprm.evpv`): a describer writes a structured JSON
# description of the image (question-independent, so it is cached per image); the visual
# premises of each step come from the policy's own "[visual: ...]" tags or from an extractor
# that reads the steps; a verifier checks the premises against the description and lists
# contradictions with a severity. Our code, not the model, turns severities into a reliability.
# Bump a *_VERSION when its prompt changes: cached replies are keyed by it.

EVPV_DESCRIBE_VERSION = "evpv-describe-v1"
EVPV_EXTRACT_VERSION = "evpv-extract-v1"
EVPV_VERIFY_VERSION = "evpv-verify-v1"
EVPV_STEP_JUDGE_VERSION = "evpv-step-judge-v1"

EVPV_DESCRIBE_SYSTEM_PROMPT = "You describe images precisely and completely, for a reader who cannot see them."

EVPV_DESCRIBE_INSTRUCTIONS = (
    "Describe the image as one JSON object with exactly these keys:\n"
    '- "summary": one sentence saying what the image is (a chart, a diagram, a puzzle, a photo, ...).\n'
    '- "objects": every distinct object or shape, each a short phrase with its colour, size, shape and '
    'position, e.g. "large red circle at the top-left".\n'
    '- "numbers": every number visible in the image with where it is, e.g. "17 at the bottom-left of the '
    'first triangle".\n'
    '- "labels": every piece of text, letter or symbol visible (axis labels, legends, a question mark), '
    "with where it is.\n"
    '- "relations": the key spatial, geometric or structural relations, e.g. "the grid has 3 rows and 3 '
    'columns", "the blue square is right of the red circle".\n'
    "State only what is visible; do not solve any question. Use [] for a key with nothing to list. "
    "Reply with the JSON object only."
)

EVPV_VISUAL_TAG_INSTRUCTIONS = (
    "End every step with a tag that lists the facts about the image the step relies on, separated by "
    '";", e.g. "[visual: the top row is red, blue, red; the bottom-left circle is missing]". Write '
    '"[visual: none]" for a step that uses no fact about the image directly (pure calculation or '
    "reasoning from earlier steps). The tag is the last thing in the step, after the final answer in "
    "the last step."
)

EVPV_EXTRACT_SYSTEM_PROMPT = "You analyse step-by-step solutions to questions about images."

EVPV_EXTRACT_INSTRUCTIONS = (
    "For every step above, list its visual premises: the facts about the image (objects, colours, sizes, "
    "counts, numbers, text, positions, relations) that the step states or relies on, each as a short "
    "self-contained statement. A step that only calculates or reasons from earlier steps, without a new "
    "fact about the image, has no visual premises.\n"
    "Reply with JSON only, one entry per step, in order:\n"
    '{"steps": [{"step": 1, "visual_premises": ["..."]}, {"step": 2, "visual_premises": []}]}'
)

EVPV_VERIFY_SYSTEM_PROMPT = "You check claims about an image against a trusted description of that image."

EVPV_VERIFY_INSTRUCTIONS = (
    "Check every visual premise above against the image description. For each premise decide:\n"
    '- "supported": the description states it, or it follows directly from the description;\n'
    '- "contradicted": the description states something incompatible (another number, colour, count, '
    "label, position or relation);\n"
    '- "unverifiable": the description neither confirms nor refutes it.\n'
    'Give every contradicted premise a severity: "minor" (a detail that cannot change the answer), '
    '"major" (a wrong fact the solution uses) or "critical" (a wrong fact the final answer depends on).\n'
    "Reply with JSON only, one entry per premise:\n"
    '{"premises": [{"step": 1, "premise": "...", "status": "supported|contradicted|unverifiable", '
    '"severity": "none|minor|major|critical", "reason": "..."}]}'
)

EVPV_STEP_JUDGE_SYSTEM_PROMPT = (
    "You are a meticulous grader of step-by-step solutions to visual reasoning problems."
)

EVPV_STEP_JUDGE_INSTRUCTIONS = (
    "Judge every step of the solution above on its own, in order. A step is correct if every fact about "
    "the image it states is true{description_clause} and its reasoning follows from the question and the "
    "earlier steps without calculation or logic errors; otherwise it is incorrect.\n"
    "Reply with JSON only, one entry per step:\n"
    '{{"steps": [{{"step": 1, "verdict": "correct|incorrect", "reason": "..."}}]}}'
)


def _numbered_steps(steps: list[str]) -> str:
    return STEP_SEPARATOR.join(f"Step {i}: {str(s).strip()}" for i, s in enumerate(steps, 1))


def _evpv_messages(system_prompt: str | None, images: list | None, text: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content: list[dict[str, Any]] = [{"type": "image", "image": img} for img in (images or [])]
    content.append({"type": "text", "text": text})
    messages.append({"role": "user", "content": content})
    return messages


def build_evpv_describe_messages(images: list) -> list[dict[str, Any]]:
    """Ask a VLM for the structured JSON description of `images` (question-independent)."""
    return _evpv_messages(EVPV_DESCRIBE_SYSTEM_PROMPT, images, EVPV_DESCRIBE_INSTRUCTIONS)


def build_evpv_extract_messages(question: str, steps: list[str]) -> list[dict[str, Any]]:
    """Ask a model (text only) for the visual premises of every step."""
    text = (f"### Question:\n{question.strip()}\n\n### Solution ({len(steps)} steps):\n"
            f"{_numbered_steps(steps)}\n\n{EVPV_EXTRACT_INSTRUCTIONS}")
    return _evpv_messages(EVPV_EXTRACT_SYSTEM_PROMPT, None, text)


def build_evpv_verify_messages(question: str, description_text: str, checklist: list[tuple[int, list[str]]],
                               images: list | None = None) -> list[dict[str, Any]]:
    """Ask a verifier to check the visual premises against the description.

    checklist: (1-based step number, premises) for each visually dependent step. images are
    attached only when the verifier should also look at the image itself.
    """
    lines = [f"Step {k}: {p}" for k, premises in checklist for p in premises]
    text = (f"### Question:\n{question.strip()}\n\n### Image description:\n{description_text.strip()}\n\n"
            f"### Visual premises ({len(lines)}):\n" + "\n".join(lines) + f"\n\n{EVPV_VERIFY_INSTRUCTIONS}")
    return _evpv_messages(EVPV_VERIFY_SYSTEM_PROMPT, images, text)


def evpv_step_judge_user_text(question: str, steps: list[str], description_text: str | None = None) -> str:
    """Text of the per-step judge turn (VisualProcessBench describe-then-judge, step-judge SFT)."""
    parts = [f"### Question:\n{question.strip()}"]
    if description_text:
        parts.append(f"### Image description:\n{description_text.strip()}")
    parts.append(f"### Solution ({len(steps)} steps):\n{_numbered_steps(steps)}")
    clause = " (use the image description as the reference)" if description_text else ""
    parts.append(EVPV_STEP_JUDGE_INSTRUCTIONS.format(description_clause=clause))
    return "\n\n".join(parts)


def build_evpv_step_judge_messages(question: str, steps: list[str], images: list | None,
                                   description_text: str | None = None) -> list[dict[str, Any]]:
    """Ask a judge for a verdict on every step, with or without the image description."""
    return _evpv_messages(EVPV_STEP_JUDGE_SYSTEM_PROMPT, images,
                          evpv_step_judge_user_text(question, steps, description_text))


def build_policy_messages_tagged(problem: "Problem", style: str = "structured",
                                 system_prompt: str | None = POLICY_SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """The policy prompt with the EVPV variant: every step ends with a "[visual: ...]" tag."""
    messages = build_policy_messages(problem, style, system_prompt)
    parts = messages[-1]["content"]
    parts[-1] = {"type": "text", "text": parts[-1]["text"] + "\n\n" + EVPV_VISUAL_TAG_INSTRUCTIONS}
    return messages


def build_policy_messages_with_description(problem: "Problem", description_text: str | None,
                                           include_image: bool = True, style: str = "structured",
                                           system_prompt: str | None = POLICY_SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """The policy prompt for perception interventions: with or without the image, with or
    without a description of the image placed before the question."""
    messages = build_policy_messages(problem, style, system_prompt)
    parts = messages[-1]["content"]
    text = parts[-1]["text"]
    if description_text:
        text = f"### Image description:\n{description_text.strip()}\n\n### Question:\n{text}"
    kept = [p for p in parts[:-1] if include_image]
    messages[-1] = {**messages[-1], "content": kept + [{"type": "text", "text": text}]}
    return messages
