"""Importing the released PRM training sets: both shapes (VL-PRM300K messages + images, parquet
and JSONL; VisualPRM400K conversations with <image> tags), bad rows skipped and named, the
dataset's own settings recorded and carried into a checkpoint, and the imported rows render
exactly the released conversations."""

from __future__ import annotations

import json

import pytest

from helpers_prm_import import GOOD, SUFFIX, SYSTEM, vlprm_messages, write_visualprm_jsonl, write_vlprm_jsonl, \
    write_vlprm_parquet
from vlprm.prm.format import PRMSample, render_text
from vlprm.prm.importer import import_prm_data, main as import_main
from vlprm.prm.settings import main as prm_config_main, read_settings, resolve_prm_settings


def _rows(out):
    return [json.loads(line) for line in (out / "prm.jsonl").read_text().splitlines()]


def test_vlprm_parquet_import_counts_skips_and_settings(tmp_path):
    res = import_prm_data(write_vlprm_parquet(tmp_path), tmp_path / "out", "vl-prm")
    s = res.summary
    assert (s["rows"], s["imported"], s["skipped"]) == (6, 3, 3)
    assert s["skip_reasons"] == {"no_image": 1, "bad_label": 1, "turns_out_of_order": 1}
    skipped = [json.loads(line) for line in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert {(x["id"], x["reason"], x["row"]) for x in skipped} == {
        ("vl-noimage", "no_image", 4), ("vl-badlabel", "bad_label", 5), ("vl-order", "turns_out_of_order", 6)}
    assert all(x["file"].endswith("vlprm.parquet") for x in skipped)
    rows = _rows(tmp_path / "out")
    assert [r["id"] for r in rows] == ["vl0", "vl1", "vl2"]
    # Steps are stored without the "\n\n" the data ends them with; the record says so.
    assert rows[0]["steps"] == [st.strip() for st in GOOD[0][1]]
    assert rows[1]["labels"] == ["+", "-"] and rows[1]["first_error_step"] == 2
    assert len(rows[1]["images"]) == 2 and all((tmp_path / "out" / p).is_file() for r in rows for p in r["images"])
    settings = read_settings(tmp_path / "out")
    assert settings.step_suffix == SUFFIX and settings.system_prompt == SYSTEM
    assert settings.min_pixels is None  # the data does not say: not guessed
    assert s["labels"] == {"+": 4, "-": 2} and s["steps"] == 6


def test_visualprm_jsonl_import_with_image_tags_and_bad_rows(tmp_path, capsys):
    src = write_visualprm_jsonl(tmp_path)
    rc = import_main([str(src), "--format", "visualprm", "--out", str(tmp_path / "vp-out"),
                      "--image-root", str(tmp_path / "vp"), "--no-hf"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "imported 2 of 5 rows" in printed and "skipped.jsonl" in printed
    summary = json.loads((tmp_path / "vp-out" / "import_summary.json").read_text())
    assert summary["skip_reasons"] == {"turns_out_of_order": 1, "missing_image": 1, "bad_row": 1}
    rows = _rows(tmp_path / "vp-out")
    assert [len(r["images"]) for r in rows] == [1, 2]
    assert not any("<image>" in r["question"] or "<image>" in r["steps"][0] for r in rows)
    assert read_settings(tmp_path / "vp-out").step_suffix == SUFFIX


def test_imported_rows_render_the_released_conversation_exactly(tmp_path, tiny_model_dir):
    """Our format with the dataset's settings = the released conversation, byte for byte."""
    from transformers import AutoProcessor

    from vlprm.backends.base import text_only_messages

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    out = import_prm_data(write_vlprm_parquet(tmp_path), tmp_path / "out", "vl-prm").out
    settings = read_settings(out)
    for row, (q, steps, labels) in zip(_rows(out), GOOD):
        n_img = len(row["images"])
        released = proc.apply_chat_template(text_only_messages(vlprm_messages(q, steps, labels, n_img)),
                                            tokenize=False)
        assert render_text(proc, PRMSample.from_dict(row), settings=settings) == released
        # Scoring (every label a "+" placeholder) renders the released steps the same way.
        placeholders = proc.apply_chat_template(
            text_only_messages(vlprm_messages(q, steps, ["+"] * len(labels), n_img)), tokenize=False)
        unlabelled = PRMSample(question=row["question"], steps=row["steps"], images=row["images"])
        assert render_text(proc, unlabelled, settings=settings) == placeholders


def test_jsonl_with_image_paths_and_training_reads_the_dir(tmp_path, tiny_model_dir):
    from transformers import AutoProcessor

    from vlprm.prm.settings import training_settings
    from vlprm.training.data import PRMEncoder, load_prm_records

    out = import_prm_data(write_vlprm_jsonl(tmp_path), tmp_path / "j-out", "vl-prm").out
    records, bad = load_prm_records(str(out))
    assert len(records) == 1 and not bad
    fmt = training_settings(out, "auto", None, min_pixels=3136, max_pixels=12544)
    assert fmt.step_suffix == SUFFIX and fmt.system_prompt == SYSTEM and fmt.max_pixels == 12544
    # An explicit choice still wins over the data's own settings.
    assert training_settings(out, "vlprm", "").step_suffix == ""
    enc = PRMEncoder(AutoProcessor.from_pretrained(tiny_model_dir), settings=fmt)(records[0])
    assert len(enc["label_positions"]) == 2 and enc["step_targets"][1] == enc["input_ids"][enc["label_positions"][1]]


def test_prm_config_writes_the_dataset_settings_into_a_checkpoint(tmp_path, capsys):
    out = import_prm_data(write_vlprm_jsonl(tmp_path), tmp_path / "j-out", "vl-prm", hf=False).out
    ckpt = tmp_path / "released-ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")  # a released checkpoint dir: a model config, no settings record
    with pytest.raises(ValueError, match="--prm.settings"):
        resolve_prm_settings(ckpt)  # before: refused, nothing guessed
    assert prm_config_main(["--from-dataset", str(out), "--out", str(ckpt), "--max-pixels", "1003520"]) == 0
    got = resolve_prm_settings(ckpt)
    assert (got.system_prompt, got.step_suffix, got.max_pixels) == (SYSTEM, SUFFIX, 1003520)
    # A different record is not silently replaced.
    assert prm_config_main(["--out", str(ckpt), "--step-suffix", ""]) == 2
    assert "--force" in capsys.readouterr().err
    assert prm_config_main(["--out", str(ckpt), "--step-suffix", "", "--force"]) == 0
    assert resolve_prm_settings(ckpt).step_suffix == "" and resolve_prm_settings(ckpt).system_prompt == SYSTEM
    assert prm_config_main(["--from-dataset", str(tmp_path), "--out", str(ckpt)]) == 2  # not an imported dir


@pytest.mark.slow
def test_training_on_an_imported_set_records_its_settings_and_scores_with_them(tmp_path, tiny_model_dir):
    """The trainer takes the data's own format (prompt, "\\n\\n" suffix) and records it: the
    checkpoint scores with it, and prm-config from the dataset would write the same."""
    from vlprm.prm.scorer import HFScorer
    from vlprm.training.main import parse_args
    from vlprm.training.run import train_prm

    data = import_prm_data(write_vlprm_parquet(tmp_path), tmp_path / "data", "vl-prm").out
    out = tmp_path / "ckpt"
    cfg, args = parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(data), "--output_dir", str(out),
        "--min_pixels", str(4 * 28 * 28), "--max_pixels", str(16 * 28 * 28), "--num_train_epochs", "1",
        "--per_device_train_batch_size", "2", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
        "--use_cpu", "true", "--dataloader_num_workers", "0", "--disable_tqdm", "true"])
    assert train_prm(cfg, args)["train_samples"] == 3
    got = read_settings(out)
    assert (got.system_prompt, got.step_suffix, got.max_pixels) == (SYSTEM, SUFFIX, 16 * 28 * 28)
    from_data = read_settings(data)
    assert (from_data.system_prompt, from_data.step_suffix) == (got.system_prompt, got.step_suffix)
    scorer = HFScorer(out)
    assert scorer.settings == got
    row = PRMSample.from_dict(_rows(data)[0])
    row.images = [str(data / p) for p in row.images]
    assert scorer.score([row])[0].ok
