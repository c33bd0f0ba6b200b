"""THE PRM conversation format, used by training and scoring alike.

A PRM sample is a conversation:

    system:    a PRM system prompt (a named variant, see SYSTEM_PROMPTS)
    user:      image(s) + "### Question:\\n{question}\\n\\n### Solution Process:\\n{step 1}"
    assistant: "+" or "-"
    user:      {step 2}
    assistant: "+" or "-"
    ...

This is the shape the released VL-PRM checkpoints were trained on, so they score here unchanged.
The label of step k is the first token of the k-th assistant turn. Its position is found from
the rendered structure (the k-th "<|im_start|>assistant\\n" header), never by searching for the
"+"/"-" token id, so a "+" inside a question or a step is never mistaken for a label. P(+) of a
step is softmax over the ("+", "-") logits at the position just before its label token.

`encode_prm` is the only function that turns a sample into model inputs; the trainer's collator
and the scorer both call it, with the PRM's `PRMSettings` (`vlprm.prm.settings`: system prompt,
step suffix, label tokens), so training and scoring build the same conversation by construction.
The step suffix (VL-PRM's data keeps "\\n\\n" at the end of every step; ours keeps nothing) is
appended to each step's text after it is stripped, in the first user turn and in later ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlprm.prm.settings import PRMSettings

PLUS = "+"
MINUS = "-"

# Our default system prompt (our wording). Checkpoints trained with another prompt are scored
# with that prompt: pick a named variant or pass "file:PATH" / the literal text.
SYSTEM_PROMPTS: dict[str, str | None] = {
    "vlprm": (
        "You are a process reward model for visual reasoning. You are shown an image-based "
        "problem and a solution, one step per turn. After each step, judge whether the solution "
        "so far is correct: every visual observation must match the image and every reasoning "
        "step must follow from the problem, the image and the earlier steps. An error in any "
        "earlier step makes every later step incorrect. Answer with a single character: \"+\" "
        "if the solution is correct up to and including this step, \"-\" otherwise."
    ),
    # The chat template's default system turn ("You are a helpful assistant." for Qwen).
    "none": None,
}
DEFAULT_SYSTEM_PROMPT = "vlprm"

# Turn markers of ChatML (Qwen). Any special token inside user text is neutralised so it cannot
# fake a turn boundary.
IM_START = "<|im_start|>"
ASSISTANT_HEADER = "<|im_start|>assistant\n"
_SPECIAL_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>",
                    "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>")


def resolve_system_prompt(spec: str | None) -> str | None:
    """A variant name, "file:PATH", or literal prompt text -> prompt text (None = template default)."""
    if spec is None:
        return None
    if spec in SYSTEM_PROMPTS:
        return SYSTEM_PROMPTS[spec]
    if spec.startswith("file:"):
        return Path(spec[5:]).read_text(encoding="utf-8").strip()
    if len(spec) < 40 and " " not in spec:
        raise ValueError(f"unknown system prompt variant {spec!r}; known: {', '.join(SYSTEM_PROMPTS)}, "
                         "or give 'file:PATH' or the prompt text itself")
    return spec


def _clean(text: str) -> str:
    for tok in _SPECIAL_MARKERS:
        text = text.replace(tok, tok.replace("|", "｜"))
    return text.strip()


def first_user_text(question: str, first_step: str) -> str:
    return f"### Question:\n{_clean(question)}\n\n### Solution Process:\n{_clean(first_step)}"


@dataclass
class PRMSample:
    """One PRM training/scoring sample. labels[i] is "+"/"-" (None when scoring).

    soft_labels[i] (optional) is the target P(+) for soft-label training (e.g. an MC ratio).
    """

    question: str
    steps: list[str]
    images: list[str] = field(default_factory=list)
    labels: list[str | None] | None = None
    soft_labels: list[float | None] | None = None
    id: str | None = None

    def __post_init__(self):
        if not self.steps:
            raise ValueError(f"PRM sample {self.id!r} has no steps")
        for name in ("labels", "soft_labels"):
            v = getattr(self, name)
            if v is not None and len(v) != len(self.steps):
                raise ValueError(f"PRM sample {self.id!r}: {len(v)} {name} for {len(self.steps)} steps")

    def to_dict(self) -> dict:
        return {"id": self.id, "question": self.question, "steps": self.steps, "images": self.images,
                "labels": self.labels, "soft_labels": self.soft_labels}

    @classmethod
    def from_dict(cls, d: dict) -> "PRMSample":
        return cls(question=d["question"], steps=list(d["steps"]), images=list(d.get("images") or []),
                   labels=d.get("labels"), soft_labels=d.get("soft_labels"), id=d.get("id"))


def format_settings(settings: PRMSettings | None, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> PRMSettings:
    """`settings` when given, else our format with the system prompt spec `system_prompt`."""
    return settings if settings is not None else PRMSettings.from_spec(system_prompt)


def build_conversation(sample: PRMSample, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                       placeholder: str = PLUS, *, settings: PRMSettings | None = None) -> list[dict]:
    """The chat messages of a PRM sample (in `settings`' format; without settings: ours with the
    system prompt spec `system_prompt`). Unlabelled steps get `placeholder` as their label
    (with causal attention the label of step k cannot influence the score of steps <= k)."""
    fmt = format_settings(settings, system_prompt)
    label_text = {PLUS: fmt.plus, MINUS: fmt.minus}
    msgs: list[dict] = []
    if fmt.system_prompt is not None:
        msgs.append({"role": "system", "content": [{"type": "text", "text": fmt.system_prompt}]})
    labels = sample.labels or [None] * len(sample.steps)
    for k, (step, label) in enumerate(zip(sample.steps, labels)):
        label = label if label is not None else placeholder
        if label not in (PLUS, MINUS):
            raise ValueError(f"PRM sample {sample.id!r}, step {k + 1}: label must be '+' or '-', got {label!r}")
        if k == 0:
            content = [{"type": "image", "image": img} for img in sample.images]
            content.append({"type": "text", "text": first_user_text(sample.question, step) + fmt.step_suffix})
        else:
            content = [{"type": "text", "text": _clean(step) + fmt.step_suffix}]
        msgs.append({"role": "user", "content": content})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": label_text[label]}]})
    return msgs


def render_text(processor_or_tokenizer, sample: PRMSample, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                placeholder: str = PLUS, *, settings: PRMSettings | None = None) -> str:
    """The conversation rendered by the model's chat template (images as pad placeholders)."""
    from vlprm.backends.base import text_only_messages

    msgs = text_only_messages(build_conversation(sample, system_prompt, placeholder, settings=settings))
    return processor_or_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)


@dataclass
class LabelTokens:
    """Token ids the format depends on, looked up once per tokenizer."""

    plus_id: int
    minus_id: int
    header_ids: list[int]

    @classmethod
    def from_tokenizer(cls, tokenizer, plus: str = PLUS, minus: str = MINUS) -> "LabelTokens":
        ids = []
        for lab in (plus, minus):
            t = tokenizer.encode(lab, add_special_tokens=False)
            if len(t) != 1:
                raise ValueError(f"tokenizer encodes PRM label {lab!r} as {len(t)} tokens; it must be one")
            ids.append(t[0])
        header = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)
        return cls(plus_id=ids[0], minus_id=ids[1], header_ids=header)

    @classmethod
    def for_settings(cls, tokenizer, settings: PRMSettings) -> "LabelTokens":
        return cls.from_tokenizer(tokenizer, settings.plus, settings.minus)


def find_label_positions(input_ids: Sequence[int], tokens: LabelTokens) -> list[int]:
    """Indices of the label tokens: the token right after each assistant header, in order."""
    ids = list(input_ids)
    h = tokens.header_ids
    n = len(h)
    out = []
    i = 0
    first = h[0]
    while i <= len(ids) - n:
        if ids[i] == first and ids[i:i + n] == h:
            out.append(i + n)
            i += n
        else:
            i += 1
    return out


def load_images(paths: Sequence[Any]):
    from vlprm.backends.base import load_image

    return [load_image(p) for p in paths]


def encode_prm(processor, sample: PRMSample, *, settings: PRMSettings | None = None,
               system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, tokens: LabelTokens | None = None,
               images: list | None = None, max_length: int | None = None) -> dict:
    """Tokenize a PRM sample (with its images) for the model, in the format of `settings` (the
    PRM's recorded settings; without them: ours, with the system prompt spec `system_prompt`).

    Returns a dict with input_ids (1-D list), attention_mask, the processor's image tensors
    (pixel_values, image_grid_thw) when there are images, `mm_token_type_ids` (1-D list, 1 at image
    tokens) when the processor returns it, `label_positions` (index of each step's
    label token), `label_ids` (the token id at each label position: the "+"/"-" target) and
    `step_count`. Raises ValueError if the rendered sequence does not have one label per step,
    or if truncation to max_length would cut a label (steps are never silently dropped).
    """
    fmt = format_settings(settings, system_prompt)
    tokens = tokens or LabelTokens.for_settings(processor.tokenizer, fmt)
    text = render_text(processor, sample, settings=fmt)
    imgs = images if images is not None else load_images(sample.images)
    enc = processor(text=[text], images=imgs or None, return_tensors="pt")
    input_ids = enc["input_ids"][0].tolist()
    positions = find_label_positions(input_ids, tokens)
    if len(positions) != len(sample.steps):
        raise ValueError(f"PRM sample {sample.id!r}: found {len(positions)} label positions for "
                         f"{len(sample.steps)} steps; the chat template does not render ChatML turns")
    for p in positions:
        if input_ids[p] not in (tokens.plus_id, tokens.minus_id):
            raise ValueError(f"PRM sample {sample.id!r}: token at label position {p} is not '+'/'-'")
    if max_length is not None and len(input_ids) > max_length:
        raise ValueError(f"PRM sample {sample.id!r} has {len(input_ids)} tokens > max_length {max_length}; "
                         "raise max_length, lower max_pixels or cap the steps")
    out = {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "label_positions": positions,
        "label_ids": [input_ids[p] for p in positions],
        "step_count": len(positions),
    }
    for k in ("pixel_values", "image_grid_thw"):
        if k in enc:
            out[k] = enc[k]
    if "mm_token_type_ids" in enc:
        # Qwen2.5-VL (transformers >= 5) builds the 3-D mrope positions of image tokens only when
        # given this; without it every token gets a 1-D position. Pass it to the model (pad 0).
        out["mm_token_type_ids"] = enc["mm_token_type_ids"][0].tolist()
    return out


def load_prm_processor(model: str | os.PathLike, min_pixels: int | None = None, max_pixels: int | None = None):
    """AutoProcessor with image pixel bounds applied (Qwen2.5-VL's min/max pixels)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(os.fspath(model))
    ip = getattr(processor, "image_processor", None)
    if ip is not None and (min_pixels or max_pixels):
        if min_pixels:
            ip.min_pixels = min_pixels
        if max_pixels:
            ip.max_pixels = max_pixels
        ip.size = {"shortest_edge": ip.min_pixels, "longest_edge": ip.max_pixels}
    return processor
