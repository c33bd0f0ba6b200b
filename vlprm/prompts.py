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
