"""PRM training: label masking by position, the loss against a hand computation, batching,
skipping bad samples, metrics, overfitting a handful of samples, LoRA + merge (sweeps:
tests/test_cluster.py), and the real train/sft_qwen.sh with DeepSpeed ZeRO-2 on 2 CPU ranks (+ resume)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from helpers_prm_data import write_prm_export

REPO = Path(__file__).resolve().parents[1]
SMALL_PIXELS = ["--min_pixels", str(4 * 28 * 28), "--max_pixels", str(16 * 28 * 28)]


@pytest.fixture
def one_thread():
    """Single-threaded torch: on a shared 2-core machine two spinning threads are much slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from vlprm.prm.format import load_prm_processor

    return load_prm_processor(tiny_model_dir, 4 * 28 * 28, 16 * 28 * 28)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()


def _image(path: Path, size=(56, 56), color="red") -> str:
    from PIL import Image

    Image.new("RGB", size, color).save(path)
    return str(path)


def _record(sample, images):
    from vlprm.training.data import PRMRecord

    return PRMRecord(sample=sample, images=images, group=sample.id or "")


def _trainer(model, tmp_path, label_mode="hard", processor=None):
    from transformers import TrainingArguments

    from vlprm.prm.format import LabelTokens
    from vlprm.training.trainer import PRMTrainer

    tokens = LabelTokens.from_tokenizer(processor.tokenizer)
    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True,
                             label_names=["step_labels"], remove_unused_columns=False)
    return PRMTrainer(model=model, args=args, plus_id=tokens.plus_id, minus_id=tokens.minus_id,
                      label_mode=label_mode)


def _model_inputs(batch):
    return {k: v for k, v in batch.items()
            if k not in ("labels", "soft_targets", "label_positions", "step_labels")}


# --------------------------------------------------------------------------- masking and loss


def test_labels_only_at_label_positions_not_at_plus_minus_text(processor, tmp_path):
    from vlprm.prm.format import PRMSample, encode_prm
    from vlprm.training.data import IGNORE_INDEX, PRMCollator, PRMEncoder

    img = _image(tmp_path / "a.png")
    sample = PRMSample(question="Is 3+4-2 = 5? Options: +1 or -1.", images=[img],
                       steps=["3+4 = 7, and 7-2 = 5.", "So the sign is +, not -.", "Answer: +"],
                       labels=["+", None, "-"], id="pm")
    enc = PRMEncoder(processor, system_prompt="vlprm")
    feat = enc(_record(sample, [img]))
    reference = encode_prm(processor, sample, images=None)
    assert feat["label_positions"] == reference["label_positions"]
    batch = PRMCollator(pad_token_id=processor.tokenizer.pad_token_id, plus_id=enc.tokens.plus_id)([feat])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    plus, minus = enc.tokens.plus_id, enc.tokens.minus_id
    pos = feat["label_positions"]
    # The test means something only if "+"/"-" tokens also occur outside the label turns.
    text_pm = [i for i, t in enumerate(ids.tolist()) if t in (plus, minus) and i not in pos]
    assert len(text_pm) >= 4
    trained = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    assert trained == [pos[0], pos[2]]  # step 2 has no label: not trained
    assert labels[pos[0]] == plus and labels[pos[2]] == minus
    assert all(labels[i] == IGNORE_INDEX for i in text_pm)
    assert batch["step_labels"][0].tolist() == [1, IGNORE_INDEX, 0]
    assert batch["label_positions"][0].tolist() == pos


def test_hard_loss_equals_hand_computation_from_shifted_logits(processor, tiny_model, tmp_path):
    from vlprm.prm.format import PRMSample
    from vlprm.training.data import PRMCollator, PRMEncoder

    a, b = _image(tmp_path / "a.png", (56, 56)), _image(tmp_path / "b.png", (84, 56), "blue")
    s1 = PRMSample(question="3+4?", steps=["3+4 = 7.", "So - nothing."], images=[a], labels=["+", "-"], id="1")
    s2 = PRMSample(question="Count the circles.", steps=["There are 2.", "2-1 = 1.", "Answer 1."], images=[b],
                   labels=["+", "+", "-"], id="2")
    enc = PRMEncoder(processor, system_prompt="none")
    feats = [enc(_record(s1, [a])), enc(_record(s2, [b]))]
    batch = PRMCollator(pad_token_id=processor.tokenizer.pad_token_id, plus_id=enc.tokens.plus_id)(feats)
    trainer = _trainer(tiny_model, tmp_path, processor=processor)
    with torch.no_grad():
        loss = trainer.compute_loss(tiny_model, dict(batch))
        logits = tiny_model(**_model_inputs(batch)).logits
        hf_loss = tiny_model(**_model_inputs(batch), labels=batch["labels"]).loss  # HF shifts labels itself
        n_items = int((batch["labels"] != -100).sum())
        loss_items = trainer.compute_loss(tiny_model, dict(batch), num_items_in_batch=n_items)
    terms = []
    for i, f in enumerate(feats):
        for p in f["label_positions"]:
            terms.append(F.cross_entropy(logits[i, p - 1][None].float(),
                                         torch.tensor([f["input_ids"][p]]), reduction="sum"))
    hand = torch.stack(terms).mean()
    assert len(terms) == 5
    assert torch.allclose(loss, hand, atol=1e-5), (loss, hand)
    assert torch.allclose(loss, hf_loss, atol=1e-5), (loss, hf_loss)
    assert torch.allclose(loss_items, hand, atol=1e-5)
    # Off by one would read the logits at the label itself: a different number.
    wrong = torch.stack([F.cross_entropy(logits[i, p][None].float(), torch.tensor([f["input_ids"][p]]))
                         for i, f in enumerate(feats) for p in f["label_positions"]]).mean()
    assert not torch.allclose(loss, wrong, atol=1e-3)


def test_soft_label_loss_with_hard_fallback(processor, tiny_model, tmp_path):
    from vlprm.prm.format import PRMSample
    from vlprm.training.data import PRMCollator, PRMEncoder

    a = _image(tmp_path / "a.png")
    s = PRMSample(question="q", steps=["one", "two", "three"], images=[a], labels=["+", "-", "-"],
                  soft_labels=[0.75, 0.25, None], id="soft")
    enc = PRMEncoder(processor, system_prompt="none", label_mode="soft")
    feat = enc(_record(s, [a]))
    batch = PRMCollator(pad_token_id=processor.tokenizer.pad_token_id, plus_id=enc.tokens.plus_id)([feat])
    trainer = _trainer(tiny_model, tmp_path, label_mode="soft", processor=processor)
    with torch.no_grad():
        loss = trainer.compute_loss(tiny_model, dict(batch))
        hard_loss = _trainer(tiny_model, tmp_path, processor=processor).compute_loss(tiny_model, dict(batch))
        logits = tiny_model(**_model_inputs(batch)).logits[0]
    plus, minus = enc.tokens.plus_id, enc.tokens.minus_id
    pos = feat["label_positions"]
    terms = []
    for p, q in zip(pos[:2], (0.75, 0.25)):
        logp = torch.log_softmax(logits[p - 1, [plus, minus]].float(), dim=-1)
        terms.append(-(q * logp[0] + (1 - q) * logp[1]))
    terms.append(F.cross_entropy(logits[pos[2] - 1][None].float(), torch.tensor([minus])))  # no soft label: hard
    hand = torch.stack(terms).mean()
    assert torch.allclose(loss, hand, atol=1e-5), (loss, hand)
    assert not torch.allclose(loss, hard_loss, atol=1e-3)


# --------------------------------------------------------------------------- batching, data


def test_collator_pads_right_and_concatenates_images_in_order(processor, tiny_model, tmp_path):
    from vlprm.prm.format import PRMSample
    from vlprm.training.data import PRMCollator, PRMEncoder

    a, b = _image(tmp_path / "a.png", (56, 56)), _image(tmp_path / "b.png", (112, 84), "green")
    s1 = PRMSample(question="short", steps=["a"], images=[a], labels=["+"], id="short")
    s2 = PRMSample(question="a longer question with more words", steps=["first step", "second step here"],
                   images=[b], labels=["+", "-"], id="long")
    enc = PRMEncoder(processor, system_prompt="none")
    f1, f2 = enc(_record(s1, [a])), enc(_record(s2, [b]))
    pad = processor.tokenizer.pad_token_id
    batch = PRMCollator(pad_token_id=pad, plus_id=enc.tokens.plus_id)([f1, f2])
    n1, n2 = len(f1["input_ids"]), len(f2["input_ids"])
    assert n1 != n2 and batch["input_ids"].shape == (2, max(n1, n2))
    short = 0 if n1 < n2 else 1
    n_short = min(n1, n2)
    assert batch["attention_mask"][short].tolist() == [1] * n_short + [0] * (max(n1, n2) - n_short)
    assert (batch["input_ids"][short, n_short:] == pad).all()  # right padding with the pad id
    assert torch.equal(batch["pixel_values"], torch.cat([f1["pixel_values"], f2["pixel_values"]]))
    assert batch["image_grid_thw"].tolist() == f1["image_grid_thw"].tolist() + f2["image_grid_thw"].tolist()
    assert f1["image_grid_thw"].tolist() != f2["image_grid_thw"].tolist()
    image_id = tiny_model.config.image_token_id
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_id)
    # The batch reads the same label logits as each sample alone (padding and mrope positions right).
    with torch.no_grad():
        batched = tiny_model(**_model_inputs(batch)).logits
        for i, f in enumerate((f1, f2)):
            single = PRMCollator(pad_token_id=pad, plus_id=enc.tokens.plus_id)([f])
            alone = tiny_model(**_model_inputs(single)).logits[0]
            for p in f["label_positions"]:
                assert torch.allclose(batched[i, p - 1], alone[p - 1], atol=1e-4)


def test_bad_samples_are_skipped_counted_and_listed(processor, tmp_path, caplog):
    from vlprm.training.data import PRMEncoder, build_prm_dataset, load_prm_records

    export = write_prm_export(tmp_path / "prm", n_samples=6, unreadable=("s0002",))
    with open(export / "prm.jsonl", "a") as f:
        f.write(json.dumps({"id": "nosteps", "question": "q", "steps": [], "labels": []}) + "\n")
        f.write(json.dumps({"id": "long", "question": "word " * 400, "steps": ["a"], "labels": ["+"],
                            "images": []}) + "\n")
        f.write("{not json\n")
    records, bad = load_prm_records(str(export))
    enc = PRMEncoder(processor, system_prompt="none", max_length=300)
    with caplog.at_level(logging.WARNING, logger="vlprm.training.data"):
        ds = build_prm_dataset(records, enc, pre_skipped=bad, cache_dir=tmp_path / "idx")
    counts = ds.skip_counts()
    assert counts == {"unreadable_image": 1, "too_long": 1, "bad_row": 2}
    assert len(ds) == 5 and all(r.sample.id not in ("s0002", "long") for r in ds.records)
    assert "s0002" in caplog.text and "long" in caplog.text and "skipped 4 of 9" in caplog.text
    listed = [json.loads(x)["id"] for x in (tmp_path / "idx" / "train-skipped.jsonl").read_text().splitlines()]
    assert set(listed) >= {"s0002", "long", "nosteps"}
    # A second build reuses the cached check (same result, no re-encoding needed).
    again = build_prm_dataset(records, enc, pre_skipped=bad, cache_dir=tmp_path / "idx", log=False)
    assert [r.sample.id for r in again.records] == [r.sample.id for r in ds.records]
    assert again.lengths == ds.lengths
    # Every item encodes; an image deleted mid-run is replaced by the next sample, not a crash.
    os.remove(export / "images" / f"{ds.records[0].sample.id}.png")
    item = ds[0]
    assert item["input_ids"] and ds.late_failures[ds.records[0].sample.id] == 1
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_hf_export_dir_loads_like_jsonl(tmp_path):
    from vlprm.training.data import load_prm_records, split_by_group

    export = write_prm_export(tmp_path / "prm", n_samples=8, with_hf=True)
    from_jsonl, _ = load_prm_records(str(export))
    (export / "prm.jsonl").rename(export / "prm.jsonl.bak")
    from_hf, _ = load_prm_records(str(export))
    assert [r.sample.to_dict() for r in from_hf] == [r.sample.to_dict() for r in from_jsonl]
    assert all(Path(r.images[0]).is_file() for r in from_hf)
    train, held = split_by_group(from_hf, 0.25, seed=0)
    assert held and train and not ({r.group for r in train} & {r.group for r in held})


def test_step_metrics_and_label_pair_reduction():
    import numpy as np

    from vlprm.training.trainer import LabelPairLogits, compute_step_metrics

    logits = torch.zeros(2, 3, 10)
    logits[..., 4] = 1.0
    pair = LabelPairLogits(4, 7)(logits, None)
    assert pair.shape == (2, 3, 2) and torch.all(pair[..., 0] == 1.0)
    preds = np.array([[[2., 0.], [0., 2.], [-100, -100]], [[3., 0.], [0., 3.], [0., 1.]]])
    labels = np.array([[1, 0, -100], [1, 1, 0]])  # the (+) step predicted "-" is the one error
    m = compute_step_metrics(SimpleNamespace(predictions=preds, label_ids=labels))
    assert m["n_steps"] == 5 and m["step_accuracy"] == pytest.approx(0.8)
    assert m["f1_plus"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert m["f1_minus"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert m["macro_f1"] == pytest.approx((m["f1_plus"] + m["f1_minus"]) / 2)


def test_freeze_vision_and_merger_options(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    from vlprm.training.run import freeze_vision_parts, vision_tower

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    freeze_vision_parts(model, vision=True, merger=False)
    vis = dict(vision_tower(model).named_parameters())
    assert not any(p.requires_grad for n, p in vis.items() if not n.startswith("merger."))
    assert all(p.requires_grad for n, p in vis.items() if n.startswith("merger."))
    assert all(p.requires_grad for n, p in model.named_parameters() if ".visual." not in f".{n}")
    freeze_vision_parts(model, vision=False, merger=True)
    assert not any(p.requires_grad for p in vision_tower(model).parameters())


# --------------------------------------------------------------------------- training in process


def _p_plus_from_saved(model_dir: Path, export: Path):
    """Score with only the saved files (a scorer's view): encode_prm + P(+) at label_pos - 1."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlprm.prm.format import LabelTokens, PRMSample, encode_prm

    meta = json.loads((model_dir / "vlprm_prm.json").read_text())
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    proc = AutoProcessor.from_pretrained(model_dir)
    tokens = LabelTokens.from_tokenizer(proc.tokenizer)
    correct = total = 0
    for line in (export / "prm.jsonl").read_text().splitlines():
        row = json.loads(line)
        s = PRMSample.from_dict(row)
        s.images = [str(export / p) for p in s.images]
        enc = encode_prm(proc, PRMSample(question=s.question, steps=s.steps, images=s.images), tokens=tokens,
                         system_prompt=meta["system_prompt"])  # "+" placeholders, as a scorer does
        kw = {k: enc[k] for k in ("pixel_values", "image_grid_thw")}
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([enc["input_ids"]]),
                           mm_token_type_ids=torch.tensor([enc["mm_token_type_ids"]]), **kw).logits[0]
        for p, lab in zip(enc["label_positions"], s.labels):
            pair = logits[p - 1, [tokens.plus_id, tokens.minus_id]]
            p_plus = torch.softmax(pair, -1)[0].item()
            correct += (p_plus >= 0.5) == (lab == "+")
            total += 1
    return correct / total, total, meta


def test_overfit_eight_samples_and_checkpoint_loads_in_a_scorer(tiny_model_dir, tmp_path, one_thread):
    from vlprm.training.main import parse_args
    from vlprm.training.run import train_prm

    export = write_prm_export(tmp_path / "prm", n_samples=8, seed=3)
    out = tmp_path / "out"
    cfg, args = parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(export), "--eval_dataset", str(export),
        "--output_dir", str(out), *SMALL_PIXELS, "--num_train_epochs", "25", "--learning_rate", "3e-3",
        "--lr_scheduler_type", "constant", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        "--logging_steps", "5", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
        "--use_cpu", "true", "--seed", "0", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
    ])
    summary = train_prm(cfg, args)
    assert summary["train_samples"] == 8 and summary["global_step"] == 50
    assert summary["eval_metrics"]["eval_step_accuracy"] > 0.9
    assert summary["loss_curve"][-1][1] < summary["loss_curve"][0][1] / 10
    acc, n_steps, meta = _p_plus_from_saved(out, export)
    assert acc > 0.9, f"label accuracy {acc:.2f} over {n_steps} steps"
    from vlprm.prm.format import SYSTEM_PROMPTS

    # The settings record holds the prompt text and the step suffix ours keeps ("").
    assert meta["system_prompt"] == SYSTEM_PROMPTS["vlprm"] and meta["step_suffix"] == ""
    assert meta["label_tokens"]["plus"] == "+"
    assert meta["min_pixels"] == 4 * 28 * 28
    assert json.loads((out / "train_summary.json").read_text())["global_step"] == 50


def test_lora_train_then_merge_gives_a_full_model_that_differs_from_base(tiny_model_dir, tmp_path, one_thread):
    from transformers import AutoModelForImageTextToText

    from vlprm.training.main import parse_args
    from vlprm.training.run import train_prm

    export = write_prm_export(tmp_path / "prm", n_samples=4)
    out = tmp_path / "lora"
    cfg, args = parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(export), "--output_dir", str(out),
        *SMALL_PIXELS, "--use_lora", "true", "--lora_r", "8", "--lora_alpha", "16", "--max_steps", "3",
        "--learning_rate", "1e-2", "--per_device_train_batch_size", "2", "--save_strategy", "no",
        "--report_to", "none", "--use_cpu", "true", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
        "--gradient_checkpointing", "true",
    ])
    summary = train_prm(cfg, args)
    assert summary["trainable_params"] < summary["total_params"] / 4  # only the adapter trained
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "adapter_config.json").exists()  # output_dir holds the merged full model

    merged = tmp_path / "merged"
    spec = importlib.util.spec_from_file_location("merge_lora", REPO / "scripts" / "merge_lora.py")
    merge_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge_script)
    merge_script.main(["--base", str(tiny_model_dir), "--adapter", str(out / "adapter"), "--out", str(merged)])
    assert (merged / "vlprm_prm.json").is_file()

    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    with torch.no_grad():
        base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()(input_ids=ids).logits
        m1 = AutoModelForImageTextToText.from_pretrained(merged).eval()
        m2 = AutoModelForImageTextToText.from_pretrained(out).eval()
        l1, l2 = m1(input_ids=ids).logits, m2(input_ids=ids).logits
    assert not any("lora" in n for n, _ in m1.named_parameters())
    assert (l1 - base).abs().max() > 1e-3
    assert torch.allclose(l1, l2, atol=1e-5)


# --------------------------------------------------------------------------- launchers


def _run(cmd, env, cwd=REPO, timeout=300):
    full_env = {**os.environ, **env}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- DeepSpeed


@pytest.mark.slow
def test_sft_qwen_sh_deepspeed_zero2_two_cpu_ranks_then_resume(tiny_model_dir, tmp_path):
    export = write_prm_export(tmp_path / "prm", n_samples=16, seed=1)
    out = tmp_path / "run"
    env = {"MODEL": str(tiny_model_dir), "DATA": str(export), "OUTPUT_DIR": str(out), "NUM_GPUS": "2",
           "ZERO_STAGE": "2", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_PROJECT": "vlprm-test",
           "EXTRA_ARGS": f"--num_train_epochs 2 --learning_rate 2e-3 --per_device_train_batch_size 2 "
                         f"--gradient_accumulation_steps 1 --min_pixels {4 * 28 * 28} --max_pixels {16 * 28 * 28} "
                         "--system_prompt none --report_to wandb --logging_steps 1 --save_steps 3 "
                         "--eval_fraction 0.25 --eval_strategy epoch --disable_tqdm true --warmup_steps 0"}
    first = _run(["bash", "train/sft_qwen.sh"], env, timeout=600)
    assert first.returncode == 0, (first.stdout[-3000:], first.stderr[-3000:])
    assert "2 process(es)" in first.stdout and "gloo" in first.stdout
    state = json.loads((out / "trainer_state.json").read_text())
    # 12 training samples (4 held out), 2 per rank, 2 ranks: 3 steps per epoch.
    assert state["global_step"] == 6
    assert json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 6 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    evals = [h for h in state["log_history"] if "eval_step_accuracy" in h]
    assert len(evals) >= 2 and all(0 <= h["eval_macro_f1"] <= 1 for h in evals)
    assert (out / "checkpoint-3").is_dir() and (out / "checkpoint-6" / "global_step6").is_dir()
    assert (out / "model.safetensors").is_file() and (out / "vlprm_prm.json").is_file()
    assert list(tmp_path.glob("wandb/offline-run-*")), "no offline wandb run written"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["train_samples"] == 12 and summary["eval_samples"] == 4

    second = _run(["bash", "train/sft_qwen.sh", "--num_train_epochs", "3", "--report_to", "none"],
                  {**env, "RESUME": "last"}, timeout=600)
    assert second.returncode == 0, (second.stdout[-3000:], second.stderr[-3000:])
    resumed = json.loads((out / "train_summary.json").read_text())
    assert resumed["resumed_from"].endswith("checkpoint-6")
    assert resumed["global_step"] == 9
    steps = [s for s, _ in resumed["loss_curve"]]
    assert steps[-3:] == [7, 8, 9] and steps[:6] == [1, 2, 3, 4, 5, 6]
