"""EVPV training data (description SFT, step-judge SFT, DPO pairs), the chat-SFT collator's
mask, and one short SFT and one DPO run of the tiny model on CPU through the entry points."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from experiments.evpv.ablations import oracle_description, puzzle_candidates
from experiments.evpv.data_builders import (
    build_description_sft,
    build_dpo_pairs,
    build_step_judge_sft,
    flatten_messages,
    read_dataset,
)
from vlprm.data.schema import Solution
from vlprm.evpv.checklist import strip_visual_tags
from vlprm.evpv.description import ImageDescription
from vlprm.evpv.judge import parse_step_verdicts
from vlprm.jsonparse import parse_json_reply
from vlprm.prompts import build_evpv_describe_messages, build_policy_messages

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def puzzles(tmp_path_factory):
    from vlprm.data.benchmarks import load_puzzles
    from vlprm.puzzles.generate import generate_puzzles

    out = tmp_path_factory.mktemp("puzzles")
    generate_puzzles(out, n=3, seed=1, types=["color_grid", "triangle", "grid_number"])
    return load_puzzles(out)


def _solutions(puzzles, n_wrong=2):
    sols = []
    for p in puzzles:
        cs = puzzle_candidates(p, n_wrong)
        for s, ok in zip(cs.samples, cs.correct):
            sols.append(Solution(id=s.id, problem_id=p.id, policy="hand", correct=ok,
                                 text="\n\n".join(strip_visual_tags(s.steps))))
    return sols


def _entry(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / "evpv" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def test_description_sft_rows_match_the_describer_prompt(puzzles, tmp_path):
    info = build_description_sft(puzzles, tmp_path / "desc")
    assert info == {"kind": "chat_sft", "rows": 3, "skipped": {}, "task": "evpv_describe"}
    rows, meta = read_dataset(tmp_path / "desc")
    assert meta["kind"] == "chat_sft"
    for p, row in zip(puzzles, rows):
        assert Path(row["images"][0]).read_bytes() == Path(p.images[0]).read_bytes()
        prompt, _ = flatten_messages(build_evpv_describe_messages(p.images))
        assert row["messages"][:-1] == prompt  # trained on exactly the prompt used at test time
        target = ImageDescription.from_dict(parse_json_reply(row["messages"][-1]["content"]).value)
        assert target == oracle_description(p)
    with pytest.raises(ValueError):
        flatten_messages([{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image", "image": "a"}]}])


def test_step_judge_sft_truncates_at_the_first_error(puzzles, tmp_path):
    p = puzzles[0]
    items = [{"id": "a", "problem_id": p.id, "question": "Q?", "steps": ["s1 [visual: x]", "s2", "s3", "s4"],
              "images": p.images, "labels": ["+", "-", "-", "-"]},
             {"id": "b", "problem_id": "unknown", "question": "Q?", "steps": ["s1", "s2"], "images": p.images,
              "labels": ["+", "+"]},
             {"id": "c", "question": "Q?", "steps": ["s1"], "images": p.images, "labels": None}]
    info = build_step_judge_sft(items, tmp_path / "judge", descriptions={p.id: oracle_description(p)})
    assert info["rows"] == 3 and info["skipped"] == {"no steps or labels": 1}  # a: with + without description
    rows, _ = read_dataset(tmp_path / "judge")
    a_rows = [r for r in rows if r["id"].startswith("judge:a:")]
    assert {r["id"] for r in a_rows} == {"judge:a:nodesc", "judge:a:desc"}
    for r in a_rows:
        verdicts = parse_step_verdicts(parse_json_reply(r["messages"][-1]["content"]).value, 2)
        assert verdicts == [1.0, -1.0]  # steps after the first error are not judged
        user = r["messages"][1]["content"]
        assert "Step 2: s2" in user and "s3" not in user and "[visual" not in user
        assert ("### Image description" in user) == r["id"].endswith(":desc")
    info = build_step_judge_sft(items[:1], tmp_path / "judge2", after_first_error="keep", with_description="no")
    rows, _ = read_dataset(tmp_path / "judge2")
    assert info["rows"] == 1 and "Step 4: s4" in rows[0]["messages"][1]["content"]


def test_dpo_pairs_chosen_correct_rejected_incorrect(puzzles, tmp_path):
    sols = _solutions(puzzles)
    sols.append(Solution(id="lonely#0", problem_id="lonely", policy="hand", text="x", correct=True))
    info = build_dpo_pairs(puzzles, sols, tmp_path / "dpo", max_pairs_per_problem=2, seed=3)
    assert info["rows"] == 6 and info["kind"] == "dpo"
    rows, _ = read_dataset(tmp_path / "dpo")
    by_id = {s.id: s for s in sols}
    for r in rows:
        c, j = by_id[r["chosen_id"]], by_id[r["rejected_id"]]
        assert c.correct is True and j.correct is False and c.problem_id == j.problem_id == r["problem_id"]
        assert r["chosen"] == [{"role": "assistant", "content": c.text}]
        p = next(p for p in puzzles if p.id == r["problem_id"])
        assert r["prompt"] == flatten_messages(build_policy_messages(p))[0]
    # Two pairs per problem use both incorrect solutions; a rejected priority picks the lowest first.
    assert len({r["rejected_id"] for r in rows if r["problem_id"] == puzzles[0].id}) == 2
    pri = {f"{puzzles[0].id}#2": 0.1}
    build_dpo_pairs(puzzles[:1], sols, tmp_path / "dpo_pri", max_pairs_per_problem=1, rejected_priority=pri)
    assert read_dataset(tmp_path / "dpo_pri")[0][0]["rejected_id"] == f"{puzzles[0].id}#2"
    # Deterministic; problems without a correct or an incorrect solution are skipped and counted.
    build_dpo_pairs(puzzles, sols, tmp_path / "dpo2", max_pairs_per_problem=2, seed=3)
    assert (tmp_path / "dpo" / "data.jsonl").read_text() == (tmp_path / "dpo2" / "data.jsonl").read_text()
    only_good = [s for s in sols if s.correct]
    assert build_dpo_pairs(puzzles, only_good, tmp_path / "dpo3")["skipped"] == {"no incorrect solution": 3}


def test_chat_collator_masks_everything_but_assistant_turns(tiny_model_dir, puzzles, tmp_path):
    from experiments.evpv.train_utils import ChatSFTCollator, load_rows
    from vlprm.prm.format import load_prm_processor

    build_description_sft(puzzles[:2], tmp_path / "desc")
    rows = load_rows(tmp_path / "desc", "chat_sft")
    proc = load_prm_processor(str(tiny_model_dir))
    batch = ChatSFTCollator(proc)(rows)
    assert {"input_ids", "labels", "pixel_values", "image_grid_thw", "mm_token_type_ids"} <= set(batch)
    tok = proc.tokenizer
    for b, row in enumerate(rows):
        kept = batch["input_ids"][b][batch["labels"][b] != -100]
        assert tok.decode(kept) == row["messages"][-1]["content"] + "<|im_end|>"
    build_dpo_pairs(puzzles, _solutions(puzzles), tmp_path / "dpo")
    with pytest.raises(ValueError, match="'dpo' dataset"):
        load_rows(tmp_path / "dpo", "chat_sft")


@pytest.mark.slow
def test_sft_chat_and_dpo_short_runs_on_tiny_model(tiny_model_dir, puzzles, tmp_path):
    small = ["--min_pixels", "3136", "--max_pixels", "12544", "--report_to", "none", "--save_strategy", "no",
             "--logging_steps", "1", "--per_device_train_batch_size", "2", "--dataloader_num_workers", "0"]
    build_description_sft(puzzles, tmp_path / "desc")
    out = _entry("sft_chat").main(["--model_name_or_path", str(tiny_model_dir), "--dataset", str(tmp_path / "desc"),
                                   "--output_dir", str(tmp_path / "sft"), "--max_steps", "2", *small])
    summary = json.loads((tmp_path / "sft" / "sft_chat_summary.json").read_text())
    assert out == str(tmp_path / "sft") and summary["steps"] == 2 and math.isfinite(summary["train_loss"])
    assert (tmp_path / "sft" / "model.safetensors").exists() and (tmp_path / "sft" / "processor_config.json").exists()

    build_dpo_pairs(puzzles, _solutions(puzzles), tmp_path / "dpo", max_pairs_per_problem=1)
    out = _entry("dpo_evpv").main(["--model_name_or_path", str(tiny_model_dir), "--dataset", str(tmp_path / "dpo"),
                                   "--output_dir", str(tmp_path / "dpo_out"), "--max_steps", "1", "--use_lora", "true",
                                   "--lora_r", "4", "--lora_alpha", "8", "--max_length", "1536", *small])
    summary = json.loads((tmp_path / "dpo_out" / "dpo_evpv_summary.json").read_text())
    assert summary["steps"] == 1 and math.isfinite(summary["train_loss"]) and summary["lora"]
    assert (tmp_path / "dpo_out" / "adapter" / "adapter_config.json").exists()
    # The merged model loads as a plain VLM (no adapter left).
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_data_builders_cli_and_description_cache(puzzles, tmp_path):
    from experiments.evpv import data_builders
    from vlprm.cache import ReplyStore
    from vlprm.evpv.description import describe_images

    # A describer's cache feeds description SFT (distillation) instead of the oracle.
    class Describer:
        model = "big-vlm"

        def generate(self, requests, sampling, **_):
            from vlprm.backends.base import Completion, GenerationResult

            return [GenerationResult(completions=[Completion(text='{"summary": "from the describer"}')],
                                     request_id=r.id) for r in requests]

    store = ReplyStore(tmp_path / "cache" / "descriptions.jsonl")
    describe_images([p.images for p in puzzles], Describer(), store=store, progress=False)
    store.close()
    descs = data_builders.descriptions_from_cache(tmp_path / "cache", puzzles, "big-vlm")
    assert set(descs) == {p.id for p in puzzles} and descs[puzzles[0].id].summary == "from the describer"
    assert data_builders.descriptions_from_cache(tmp_path / "cache", puzzles, "other-model") == {}
    pdir = str(Path(puzzles[0].images[0]).parents[2])
    info = data_builders.build(["describe", "--problems", pdir, "--out", str(tmp_path / "d"),
                               "--descriptions-cache", str(tmp_path / "cache"), "--describer-model", "big-vlm"])
    rows, _ = read_dataset(tmp_path / "d")
    assert info["rows"] == 3 and all("from the describer" in r["messages"][-1]["content"] for r in rows)
    # judge: a PRM export (images relative to it) + oracle descriptions from the problems
    export = tmp_path / "export"
    (export / "images").mkdir(parents=True)
    lines = []
    for p in puzzles:
        img = export / "images" / Path(p.images[0]).name
        img.write_bytes(Path(p.images[0]).read_bytes())
        lines.append(json.dumps({"id": f"{p.id}#0", "problem_id": p.id, "question": p.question, "steps": ["a", "b"],
                                 "images": [f"images/{img.name}"], "labels": ["+", "-"]}))
    (export / "prm.jsonl").write_text("\n".join(lines) + "\n")
    info = data_builders.build(["judge", "--prm-export", str(export), "--problems", pdir, "--out", str(tmp_path / "j"),
                               "--with-description", "yes"])
    assert info["rows"] == 3 and info["skipped"] == {}
    # dpo: from a rollouts JSONL
    sols = tmp_path / "rollouts.jsonl"
    sols.write_text("".join(json.dumps({**s.to_dict(), "status": "ok"}) + "\n" for s in _solutions(puzzles)))
    info = data_builders.build(["dpo", "--problems", pdir, "--solutions", str(sols), "--out", str(tmp_path / "p"),
                               "--max-pairs-per-problem", "1", "--tagged"])
    rows, _ = read_dataset(tmp_path / "p")
    assert info["rows"] == 3 and "[visual: none]" in rows[0]["prompt"][-1]["content"]
