"""Benchmark loaders on small fixtures written in each benchmark's released format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlprm.data.benchmarks.common import image_cache_for
from PIL import Image

from vlprm.data.benchmarks import (BENCHMARKS, BenchmarkFormatError, LoadReport, ProcessBenchSample,
                                   load_algopuzzlevqa, load_benchmark, load_mathvision, load_mathvista,
                                   load_mmmu, load_puzzlevqa, load_visualprocessbench)

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


def img_bytes(color, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format=fmt)
    return buf.getvalue()


def write_img(path: Path, color=GREY, fmt="PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(img_bytes(color, fmt))


def color_of(path: str):
    with Image.open(path) as im:
        return im.convert("RGB").getpixel((4, 4))


def write_jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


# ----------------------------------------------------------------------------- MMMU

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
MMMU_SCHEMA = pa.schema(
    [("id", pa.string()), ("question", pa.string()), ("options", pa.string()), ("explanation", pa.string())]
    + [(f"image_{k}", IMAGE_STRUCT) for k in range(1, 8)]
    + [("img_type", pa.string()), ("answer", pa.string()), ("topic_difficulty", pa.string()),
       ("question_type", pa.string()), ("subfield", pa.string())])


def mmmu_row(id, question, options, answer, qtype, images=(), **kw):
    row = {"id": id, "question": question, "options": options, "explanation": "", "img_type": "['Paintings']",
           "answer": answer, "topic_difficulty": "Medium", "question_type": qtype, "subfield": "Art History"}
    for k in range(1, 8):
        row[f"image_{k}"] = None
    for k, data in enumerate(images, 1):
        row[f"image_{k}"] = {"bytes": data, "path": f"{id}_{k}.png"}
    row.update(kw)
    return row


def write_mmmu(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=MMMU_SCHEMA), path)


@pytest.fixture
def mmmu_dir(tmp_path):
    root = tmp_path / "MMMU"
    write_mmmu(root / "Art" / "validation-00000-of-00001.parquet", [
        # <image 2> is mentioned first; images must still be ordered by k.
        mmmu_row("validation_Art_1", "Which one is by Monet: <image 2> or <image 1>?",
                 "['<image 1>', '<image 2>', 'Neither']", "B", "multiple-choice",
                 images=[img_bytes(RED), img_bytes(GREEN, "JPEG"), img_bytes(BLUE)]),
        mmmu_row("validation_Art_2", "<image 1> What style is this?", "['Cubism', 'Baroque', 'Gothic']", "C",
                 "multiple-choice", images=[img_bytes(GREY)]),
    ])
    write_mmmu(root / "Math" / "validation-00000-of-00001.parquet", [
        mmmu_row("validation_Math_1", "How many edges does the solid in <image 1> have?", "[]", "6", "open",
                 images=[img_bytes(GREY)], subfield="Geometry"),
        mmmu_row("validation_Math_2", "Compute the ratio in <image 1>.", "[]", "['24/7', '3.429']", "open",
                 images=[img_bytes(GREY)]),
    ])
    # A dev split file must not be picked up for validation.
    write_mmmu(root / "Math" / "dev-00000-of-00001.parquet", [
        mmmu_row("dev_Math_1", "q <image 1>", "[]", "1", "open", images=[img_bytes(GREY)])])
    return root


def test_mmmu_hub_layout(mmmu_dir):
    probs = {p.id: p for p in load_mmmu(mmmu_dir)}
    assert sorted(probs) == ["validation_Art_1", "validation_Art_2", "validation_Math_1", "validation_Math_2"]
    art = probs["validation_Art_1"]
    assert art.benchmark == "mmmu" and art.answer == "B" and art.answer_type == "multiple_choice"
    assert art.options == ["<image 1>", "<image 2>", "Neither"]
    assert art.question == "Which one is by Monet: <image 2> or <image 1>?"  # tokens kept
    assert len(art.images) == 3
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in art.images)
    # images[k-1] is <image k>: colours follow image_1, image_2, image_3.
    assert color_of(art.images[0]) == RED and color_of(art.images[2]) == BLUE
    assert Path(art.images[1]).suffix == ".jpg"  # embedded bytes kept as they are
    assert art.metadata["referenced_images"] == [1, 2]
    assert art.metadata["subject"] == "Art" and art.metadata["img_type"] == ["Paintings"]
    # Embedded images go to the image cache, never into the (possibly read-only) dataset.
    assert mmmu_dir not in Path(art.images[0]).parents
    assert Path(art.images[0]).parent == Path(image_cache_for(mmmu_dir))
    assert probs["validation_Art_2"].answer == "C"

    m1 = probs["validation_Math_1"]
    assert m1.options is None and m1.answer == "6" and m1.answer_type == "integer"
    assert m1.metadata["subfield"] == "Geometry"
    m2 = probs["validation_Math_2"]
    assert m2.answer == "24/7" and m2.metadata["accepted_answers"] == ["24/7", "3.429"]

    # Second load reuses the cached image files.
    again = load_mmmu(mmmu_dir, subjects=["Math"])
    assert [p.id for p in again] == ["validation_Math_1", "validation_Math_2"]
    assert again[0].images == m1.images


def test_mmmu_flat_dir_and_limit(tmp_path):
    flat = tmp_path / "flat"
    write_mmmu(flat / "Art.parquet", [
        mmmu_row(f"validation_Art_{i}", f"q{i} <image 1>", "['x', 'y']", "A", "multiple-choice",
                 images=[img_bytes(GREY)]) for i in range(1, 6)])
    assert len(load_mmmu(flat)) == 5
    assert [p.id for p in load_benchmark("mmmu", flat, limit=2)] == ["validation_Art_1", "validation_Art_2"]


def test_mmmu_bad_records(tmp_path):
    root = tmp_path / "MMMU"
    write_mmmu(root / "Art" / "validation-00000-of-00001.parquet", [
        mmmu_row("validation_Art_1", "ok <image 1>", "['a', 'b']", "A", "multiple-choice", images=[img_bytes(GREY)]),
        mmmu_row("validation_Art_2", "bad letter <image 1>", "['a', 'b']", "E", "multiple-choice",
                 images=[img_bytes(GREY)]),
        mmmu_row("validation_Art_3", "refs <image 2>", "['a', 'b']", "A", "multiple-choice",
                 images=[img_bytes(GREY)]),
        mmmu_row("validation_Art_4", "corrupt <image 1>", "['a', 'b']", "A", "multiple-choice",
                 images=[b"\x89PNG garbage"]),
        mmmu_row("validation_Art_5", "bad options <image 1>", "['a', 'b'", "A", "multiple-choice",
                 images=[img_bytes(GREY)]),
    ])
    with pytest.raises(BenchmarkFormatError) as e:
        load_mmmu(root)
    msg = str(e.value)
    assert "validation-00000-of-00001.parquet" in msg and "validation_Art_2" in msg and "row 1" in msg
    assert "on_error='skip'" in msg
    items, rep = load_benchmark("mmmu", root, on_error="skip", report=True)
    assert [p.id for p in items] == ["validation_Art_1"]
    assert rep.loaded == 1 and [rid for rid, _ in rep.skipped] == [
        "validation_Art_2", "validation_Art_3", "validation_Art_4", "validation_Art_5"]
    reasons = dict(rep.skipped)
    assert "not an option letter" in reasons["validation_Art_2"]
    assert "<image 2>" in reasons["validation_Art_3"]
    assert reasons["validation_Art_4"].startswith("corrupt image")
    assert "literal" in reasons["validation_Art_5"]
    assert "skipped 4" in rep.summary()


# ----------------------------------------------------------------------------- MathVista

MATHVISTA = {
    "1": {"question": "When a spring does work on an object, by what distance d is the spring compressed?",
          "image": "images/1.jpg", "choices": None, "unit": None, "precision": 1.0, "answer": "1.2",
          "question_type": "free_form", "answer_type": "float", "pid": "1",
          "metadata": {"split": "testmini", "source": "SciBench", "category": "math-targeted-vqa",
                       "task": "textbook question answering", "context": "scientific figure",
                       "grade": "college", "skills": ["scientific reasoning"], "language": "english",
                       "img_width": 8, "img_height": 8}},
    "2": {"question": "what is the total volume of the measuring cup?", "image": "images/2.png", "choices": None,
          "unit": "g", "precision": None, "answer": "1000", "question_type": "free_form",
          "answer_type": "integer", "pid": "2", "metadata": {"split": "testmini", "source": "TextVQA"}},
    "3": {"question": "Is the number of red cubes greater than 3?", "image": "images/3.png",
          "choices": ["Yes", "No"], "unit": None, "precision": None, "answer": "No",
          "question_type": "multi_choice", "answer_type": "text", "pid": "3", "metadata": {"split": "testmini"}},
    "4": {"question": "Which angle is largest?", "image": "images/4.png", "choices": ["30", "45", "60", "90"],
          "unit": None, "precision": None, "answer": "60", "question_type": "multi_choice",
          "answer_type": "integer", "pid": "4", "metadata": {}},
}


@pytest.fixture
def mathvista_dir(tmp_path):
    root = tmp_path / "MathVista" / "data"
    root.mkdir(parents=True)
    (root / "testmini.json").write_text(json.dumps(MATHVISTA, indent=4))
    (root / "query.json").write_text(json.dumps({pid: f"Hint: ...\nQuestion: {r['question']}"
                                                 for pid, r in MATHVISTA.items()}))
    write_img(root / "images" / "1.jpg", RED, "JPEG")
    for pid in ("2", "3", "4"):
        write_img(root / "images" / f"{pid}.png")
    return root


def test_mathvista_json(mathvista_dir):
    probs = {p.id: p for p in load_mathvista(mathvista_dir)}
    assert sorted(probs) == ["1", "2", "3", "4"]
    p1 = probs["1"]
    assert p1.answer == "1.2" and p1.answer_type == "float" and p1.options is None
    assert p1.metadata["precision"] == 1 and p1.metadata["unit"] is None
    assert "one decimal place" in p1.metadata["answer_hint"]
    assert p1.metadata["source"] == "SciBench" and p1.metadata["query"].startswith("Hint:")
    assert p1.images == [str(mathvista_dir / "images" / "1.jpg")]
    p2 = probs["2"]
    assert p2.answer_type == "integer" and p2.metadata["unit"] == "g" and p2.metadata["precision"] is None
    assert "integer" in p2.metadata["answer_hint"] and "g" in p2.metadata["answer_hint"]
    p3 = probs["3"]
    assert p3.options == ["Yes", "No"] and p3.answer == "B" and p3.answer_type == "multiple_choice"
    assert p3.metadata["answer_text"] == "No"
    assert probs["4"].answer == "C"
    # The file itself works too.
    assert len(load_mathvista(mathvista_dir / "testmini.json")) == 4


def test_mathvista_hub_parquet_layout(tmp_path):
    root = tmp_path / "MathVista"
    rows = []
    for pid, r in MATHVISTA.items():
        rows.append({**{k: v for k, v in r.items() if k != "metadata"},
                     "precision": r["precision"], "metadata": json.dumps(r["metadata"]),
                     "query": "q", "decoded_image": {"bytes": img_bytes(GREEN), "path": None}})
    table = pa.Table.from_pylist(rows)
    (root / "data").mkdir(parents=True)
    pq.write_table(table, root / "data" / "testmini-00000-of-00001.parquet")
    probs = {p.id: p for p in load_mathvista(root, split="testmini")}
    assert probs["3"].answer == "B" and probs["1"].metadata["precision"] == 1
    # images/ is not there, so the embedded decoded_image is written to the cache.
    assert all(Path(p.images[0]).is_file() and root not in Path(p.images[0]).parents for p in probs.values())
    assert color_of(probs["1"].images[0]) == GREEN


def test_mathvista_missing_split_and_answer_not_in_choices(mathvista_dir, tmp_path):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="testmini"):
        load_mathvista(empty)
    bad = dict(MATHVISTA)
    bad["5"] = {**MATHVISTA["3"], "pid": "5", "answer": "Maybe"}
    (mathvista_dir / "testmini.json").write_text(json.dumps(bad))
    with pytest.raises(BenchmarkFormatError, match=r"record 5 .*'Maybe' is not one of the options"):
        load_mathvista(mathvista_dir)


# ----------------------------------------------------------------------------- MathVision

MATHVISION = [
    {"id": "4", "question": "How many different digits can you find in this picture?\n<image1>", "options": [],
     "answer": "6", "solution": None, "level": 1, "subject": "counting", "image": "images/4.jpg"},
    {"id": "6", "question": "In which picture can we see the kittens of Misty?\n<image1>",
     "options": ["A", "B", "C", "D", "E"], "answer": "D", "solution": None, "level": 3, "subject": "logic",
     "image": "images/6.jpg"},
    {"id": "27", "question": "In which order will she go past the shapes?\n<image1>",
     "options": ["$\\Delta, \\square, \\bullet$", "$\\Delta, \\bullet, \\square$", "$\\bullet, \\Delta, \\square$"],
     "answer": "A", "solution": None, "level": 5, "subject": "topology", "image": "images/27.jpg"},
    {"id": "59", "question": "Which side is opposite to <image3>?\n<image4>", "options": [], "answer": "C",
     "solution": None, "level": 1, "subject": "solid geometry", "image": "images/59.jpg"},
    {"id": "100", "question": "Find the area.", "options": [], "answer": "\\frac{3}{2}", "solution": "...",
     "level": 4, "subject": "metric geometry - area", "image": "images/100.jpg"},
]


@pytest.fixture
def mathvision_dir(tmp_path):
    root = tmp_path / "MATH-V"
    write_jsonl(root / "data" / "test.jsonl", MATHVISION)
    for r in MATHVISION:
        write_img(root / r["image"], GREY, "JPEG")  # images/ at the repo root, beside data/
    return root


def test_mathvision_choice_and_free_form(mathvision_dir):
    probs = {p.id: p for p in load_mathvision(mathvision_dir)}
    assert list(probs) == ["4", "6", "27", "59", "100"]
    assert probs["4"].options is None and probs["4"].answer_type == "integer" and probs["4"].answer == "6"
    assert probs["6"].options == ["A", "B", "C", "D", "E"] and probs["6"].answer == "D"
    assert probs["6"].answer_type == "multiple_choice"
    assert probs["27"].options[0] == "$\\Delta, \\square, \\bullet$" and probs["27"].answer == "A"
    assert probs["59"].options is None and probs["59"].answer == "C" and probs["59"].answer_type == "text"
    assert probs["100"].answer_type == "expression"
    assert probs["6"].metadata["level"] == 3 and probs["6"].metadata["subject"] == "logic"
    assert "<image1>" in probs["4"].question
    assert probs["4"].images == [str(mathvision_dir / "images" / "4.jpg")]
    # The jsonl file directly, and testmini missing -> clear error.
    assert len(load_mathvision(mathvision_dir / "data" / "test.jsonl")) == 5
    with pytest.raises(FileNotFoundError, match="testmini"):
        load_mathvision(mathvision_dir, split="testmini")


def test_mathvision_parquet(tmp_path):
    root = tmp_path / "MathVision"
    rows = [{**r, "decoded_image": {"bytes": img_bytes(BLUE), "path": r["image"]}} for r in MATHVISION[:2]]
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "test-00000-of-00001.parquet")
    probs = load_mathvision(root)
    assert [p.answer for p in probs] == ["6", "D"]
    assert color_of(probs[0].images[0]) == BLUE


# ----------------------------------------------------------------------------- PuzzleVQA / AlgoPuzzleVQA


def puzzle_record(puzzle, i, **kw):
    opts = ["green", "red", "orange", "yellow"]
    rec = {"image": f"images/{puzzle}/{puzzle}_{i:04d}.png",
           "question": "What is the color of the missing part denoted with a question mark?",
           "answer": opts[i % 4], "options": opts,
           "caption": f"caption {i}", "explanation": "corners alternate", "deduction": "so it is that"}
    rec.update(kw)
    return rec


@pytest.fixture
def puzzle_dir(tmp_path):
    data = tmp_path / "PuzzleVQA" / "data"
    for puzzle in ("color_grid", "triangle"):
        recs = [puzzle_record(puzzle, i) for i in range(55)]
        write_jsonl(data / f"{puzzle}.json", recs)
        for i in range(55):
            write_img(data / recs[i]["image"])
    return data


def test_puzzlevqa(puzzle_dir):
    probs = load_puzzlevqa(puzzle_dir)
    assert len(probs) == 110
    p = probs[2]
    assert p.id == "color_grid_0002" and p.benchmark == "puzzlevqa"
    assert p.options == ["green", "red", "orange", "yellow"] and p.answer == "C"
    assert p.metadata["answer_text"] == "orange" and p.metadata["caption"] == "caption 2"
    assert p.metadata["explanation"] and p.metadata["deduction"] and p.metadata["puzzle"] == "color_grid"
    assert Path(p.images[0]).is_file()
    assert probs[55].id == "triangle_0000"
    subset = load_benchmark("puzzlevqa", puzzle_dir, first_n_per_type=50)
    assert len(subset) == 100
    assert {q.metadata["puzzle"] for q in subset} == {"color_grid", "triangle"}
    assert max(q.metadata["index"] for q in subset) == 49
    assert [q.id for q in load_puzzlevqa(puzzle_dir, puzzles=["triangle"], limit=3)] == [
        "triangle_0000", "triangle_0001", "triangle_0002"]


def test_generated_puzzles_keep_extra_fields(tmp_path):
    data = tmp_path / "puzzles"
    rec = puzzle_record("size_cycle", 0, id="size_cycle-s7-0000", family="size_cycle",
                        perception_facts=["three circles", "sizes 1, 2, ?"],
                        reasoning_steps=["sizes increase", "next is 3"], metadata={"seed": 7, "difficulty": "easy"})
    write_jsonl(data / "size_cycle.json", [rec])
    write_img(data / rec["image"])
    (data / "_manifest.json").write_text("{not puzzle records}")  # ignored by name
    (p,) = load_benchmark("puzzles", data)
    assert p.id == "size_cycle-s7-0000" and p.benchmark == "puzzles"
    assert p.metadata["perception_facts"] == ["three circles", "sizes 1, 2, ?"]
    assert p.metadata["reasoning_steps"][1] == "next is 3" and p.metadata["family"] == "size_cycle"
    assert p.metadata["seed"] == 7 and p.metadata["difficulty"] == "easy"


def test_algopuzzlevqa_with_and_without_options(tmp_path):
    data = tmp_path / "AlgoPuzzleVQA" / "data"
    write_jsonl(data / "colour_hue.json", [
        {"image": "images/colour_hue/colour_hue_0000.jpg", "question": "Minimum number of swaps?",
         "options": ["1", "2", "3", "5"], "answer": "2", "solution": {"swaps": 2, "shuffled_order": [1, 0, 3, 2]}}])
    write_jsonl(data / "clock.json", [
        {"image": "images/clock/clock_0000.jpg", "question": "What will be the time when the event starts?",
         "answer": "4:23", "solution": {"current_hour": 2}},
        {"image": "images/clock/clock_0001.jpg", "question": "How many swaps?", "answer": 3, "solution": {}}])
    for rel in ("colour_hue/colour_hue_0000.jpg", "clock/clock_0000.jpg", "clock/clock_0001.jpg"):
        write_img(data / "images" / rel, fmt="JPEG")
    probs = {p.id: p for p in load_algopuzzlevqa(data)}
    hue = probs["colour_hue_0000"]
    assert hue.answer == "B" and hue.metadata["solution"]["swaps"] == 2 and hue.benchmark == "algopuzzlevqa"
    clock = probs["clock_0000"]
    assert clock.options is None and clock.answer == "4:23" and clock.answer_type == "text"
    assert probs["clock_0001"].answer == "3" and probs["clock_0001"].answer_type == "integer"


def test_puzzle_errors_and_skip(puzzle_dir):
    recs = [puzzle_record("venn", i) for i in range(6)]
    del recs[1]["question"]                      # missing field
    recs[2]["image"] = "images/venn/missing.png"  # missing image file
    recs[3]["answer"] = "purple"                 # not an option
    lines = [json.dumps(r) for r in recs]
    lines[4] = '{"image": "images/venn/venn_0004.png", "question": '  # truncated JSON
    write_jsonl(puzzle_dir / "venn.json", lines)
    for i in range(6):
        write_img(puzzle_dir / "images" / "venn" / f"venn_{i:04d}.png")
    (puzzle_dir / "images" / "venn" / "venn_0005.png").write_bytes(b"this is not a png")  # corrupt

    with pytest.raises(BenchmarkFormatError) as e:
        load_puzzlevqa(puzzle_dir, puzzles=["venn"])
    msg = str(e.value)
    assert "venn.json" in msg and "venn_0001" in msg and "line 2" in msg and "'question'" in msg

    rep = LoadReport("puzzlevqa", str(puzzle_dir))
    probs = load_puzzlevqa(puzzle_dir, puzzles=["venn"], on_error="skip", report=rep)
    assert [p.id for p in probs] == ["venn_0000"]
    skipped = dict(rep.skipped)
    assert list(skipped) == ["venn_0001", "venn_0002", "venn_0003", "venn_0004", "venn_0005"]
    assert "missing required field" in skipped["venn_0001"]
    assert skipped["venn_0002"].startswith("image file not found")
    assert "not one of the options" in skipped["venn_0003"]
    assert "not valid JSON" in skipped["venn_0004"]
    assert skipped["venn_0005"].startswith("corrupt image")
    assert rep.loaded == 1 and rep.reasons["corrupt image"] == 1

    # check_images=False trusts the files (fast path for huge runs).
    recs5 = load_puzzlevqa(puzzle_dir, puzzles=["venn"], on_error="skip", check_images=False)
    assert [p.id for p in recs5] == ["venn_0000", "venn_0005"]


def test_corrupt_image_error_message(puzzle_dir):
    (puzzle_dir / "images" / "triangle" / "triangle_0003.png").write_bytes(b"\x00garbage")
    with pytest.raises(BenchmarkFormatError) as e:
        load_puzzlevqa(puzzle_dir, puzzles=["triangle"])
    msg = str(e.value)
    assert "triangle.json" in msg and "triangle_0003" in msg and "line 4" in msg
    assert "corrupt image" in msg and "triangle_0003.png" in msg and "on_error='skip'" in msg


def test_duplicate_ids_are_reported(tmp_path):
    data = tmp_path / "puzzles"
    recs = [puzzle_record("grid", i, id="same") for i in range(2)]
    write_jsonl(data / "grid.json", recs)
    for r in recs:
        write_img(data / r["image"])
    with pytest.raises(BenchmarkFormatError, match="duplicate id"):
        load_benchmark("puzzles", data)


# ----------------------------------------------------------------------------- VisualProcessBench


@pytest.fixture
def vpb_dir(tmp_path):
    root = tmp_path / "VisualProcessBench"
    recs = [
        {"image": ["images/MMMU/a_1.png", "images/MMMU/a_2.png"], "question": "Which is larger? <image 1> <image 2>",
         "answer": "B", "response": {"steps": ["The first bar is 3.", "The second is 5.", "So A."],
                                     "process_correctness": [1, 1, -1]},
         "policy_model": "InternVL2.5-8B", "data_source": "MMMU"},
        {"image": "images/MathVision/12.jpg", "question": "How many triangles?", "answer": "5",
         "response": {"steps": ["I count 5 triangles.", "Answer: 5"], "process_correctness": [1, 0]},
         "policy_model": "GPT-4o", "data_source": "MathVision"},
        {"image": ["images/DynaMath/7.png"], "question": "f(2)?", "answer": "4",
         "response": json.dumps({"steps": ["f(x)=x^2", "f(2)=4"], "process_correctness": [1, 1]}),
         "policy_model": "Qwen2.5-VL-72B", "data_source": "DynaMath"},
    ]
    write_jsonl(root / "test.jsonl", recs)
    write_img(root / "images/MMMU/a_1.png")
    write_img(root / "images/MMMU/a_2.png", RED)
    write_img(root / "images/MathVision/12.jpg", fmt="JPEG")
    write_img(root / "images/DynaMath/7.png")
    return root


def test_visualprocessbench(vpb_dir):
    samples = load_visualprocessbench(vpb_dir)
    assert all(isinstance(s, ProcessBenchSample) for s in samples)
    assert [s.id for s in samples] == ["vpb_00000", "vpb_00001", "vpb_00002"]
    assert [s.source for s in samples] == ["MMMU", "MathVision", "DynaMath"]
    s0 = samples[0]
    assert s0.steps == ["The first bar is 3.", "The second is 5.", "So A."] and s0.labels == [1, 1, -1]
    assert len(s0.problem.images) == 2 and color_of(s0.problem.images[1]) == RED
    assert s0.problem.benchmark == "visualprocessbench" and s0.problem.metadata["policy_model"] == "InternVL2.5-8B"
    assert samples[1].labels == [1, 0] and len(samples[1].problem.images) == 1
    assert samples[2].steps == ["f(x)=x^2", "f(2)=4"]
    assert [s.id for s in load_benchmark("visualprocessbench", vpb_dir / "test.jsonl", limit=1)] == ["vpb_00000"]


def test_visualprocessbench_bad_labels(vpb_dir):
    with open(vpb_dir / "test.jsonl", "a") as f:
        f.write(json.dumps({"image": ["images/DynaMath/7.png"], "question": "q", "answer": "1",
                            "response": {"steps": ["a", "b"], "process_correctness": [1]},
                            "data_source": "WeMath"}) + "\n")
        f.write(json.dumps({"image": ["images/DynaMath/7.png"], "question": "q", "answer": "1",
                            "response": {"steps": ["a"], "process_correctness": [2]}, "data_source": "WeMath"}) + "\n")
        f.write(json.dumps({"image": ["images/DynaMath/7.png"], "question": "q", "answer": "1",
                            "data_source": "WeMath"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match=r"test\.jsonl: record vpb_00003 \(line 4\): 2 steps but 1"):
        load_visualprocessbench(vpb_dir)
    samples, rep = load_benchmark("visualprocessbench", vpb_dir, on_error="skip", report=True)
    assert len(samples) == 3 and [r for r, _ in rep.skipped] == ["vpb_00003", "vpb_00004", "vpb_00005"]
    assert "1/0/-1" in rep.skipped[1][1] and "'response'" in rep.skipped[2][1]


# ----------------------------------------------------------------------------- registry / missing data


def test_registry_and_missing_paths(tmp_path):
    assert set(BENCHMARKS) == {"mmmu", "mathvista", "mathvision", "puzzlevqa", "algopuzzlevqa",
                               "visualprocessbench", "puzzles"}
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("nope", tmp_path)
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_benchmark("mathvision", missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no puzzle files"):
        load_benchmark("puzzlevqa", empty)
    with pytest.raises(FileNotFoundError, match="no MMMU parquet"):
        load_benchmark("mmmu", empty)
    with pytest.raises(ValueError, match="on_error"):
        load_benchmark("puzzlevqa", empty, on_error="ignore")
