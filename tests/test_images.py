"""The same pixels on every path: a transparent image (every PIL mode that can carry
transparency) reaches the policy backends, the OpenAI data URL, the PRM scorer, the trainer, the
judge and EVPV composited onto white exactly as qwen-vl-utils' `fetch_image` composites it; and a
truncated PNG or JPEG is skipped when the benchmark is loaded, with a named reason."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlprm.backends.base import load_image
from vlprm.backends.openai_backend import image_to_data_url

SIZE = (84, 56)  # multiples of 28 inside qwen-vl-utils' pixel bounds: fetch_image keeps the size
HIDDEN = (20, 40, 60)  # the colour under alpha 0: what a bare convert("RGB") shows


def _rgba() -> Image.Image:
    """Transparent background with a hidden colour, an opaque red box, a half-transparent blue box."""
    img = Image.new("RGBA", SIZE, HIDDEN + (0,))
    d = ImageDraw.Draw(img)
    d.rectangle((8, 8, 36, 40), fill=(220, 30, 30, 255))
    d.rectangle((44, 10, 76, 46), fill=(30, 60, 200, 128))
    return img


def _palette_with_key() -> Image.Image:
    img = Image.new("P", SIZE, 0)
    img.putpalette([*HIDDEN, 220, 30, 30, 30, 60, 200] + [0] * (256 - 3) * 3)
    ImageDraw.Draw(img).rectangle((8, 8, 36, 40), fill=1)
    ImageDraw.Draw(img).rectangle((44, 10, 76, 46), fill=2)
    img.info["transparency"] = 0
    return img


def _palette_with_alpha_table() -> Image.Image:
    img = _palette_with_key()
    img.info["transparency"] = bytes([0, 255, 128])  # per-index alpha (PNG tRNS)
    return img


def _grey_with_key() -> Image.Image:
    img = Image.new("L", SIZE, 50)
    ImageDraw.Draw(img).rectangle((8, 8, 36, 40), fill=200)
    img.info["transparency"] = 50
    return img


def _rgb_with_key() -> Image.Image:
    img = Image.new("RGB", SIZE, HIDDEN)
    ImageDraw.Draw(img).rectangle((8, 8, 36, 40), fill=(220, 30, 30))
    img.info["transparency"] = HIDDEN
    return img


# Every way a PNG carries transparency (PA exists only in memory: PNG cannot store it).
FILE_MODES = {
    "RGBA": _rgba,
    "LA": lambda: _rgba().convert("LA"),
    "P+key": _palette_with_key,
    "P+alpha": _palette_with_alpha_table,
    "L+key": _grey_with_key,
    "RGB+key": _rgb_with_key,
}


@pytest.fixture(scope="module", params=sorted(FILE_MODES))
def transparent_png(request, tmp_path_factory):
    img = FILE_MODES[request.param]()
    path = tmp_path_factory.mktemp("transparent") / f"{request.param.replace('+', '_')}.png"
    img.save(path, **({"transparency": img.info["transparency"]} if "transparency" in img.info else {}))
    reread = Image.open(path)
    assert reread.mode == img.mode and (reread.mode in ("RGBA", "LA") or "transparency" in reread.info)
    return path


def _reference(path) -> np.ndarray:
    """qwen-vl-utils' pixels: fetch_image composites RGBA onto white; the file's transparency
    is handed to it as PIL reads it (its RGBA form)."""
    from qwen_vl_utils import fetch_image

    img = Image.open(path)
    ref = fetch_image({"image": str(path) if img.mode == "RGBA" else img.convert("RGBA")})
    assert ref.size == SIZE
    return np.asarray(ref)


def _pixels(img) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img)


def test_every_transparent_mode_is_composited_on_white_like_qwen_vl_utils(transparent_png):
    ref = _reference(transparent_png)
    assert (ref[1, 1] == 255).all()  # the transparent corner is white, not the hidden colour
    got = _pixels(load_image(transparent_png))
    np.testing.assert_array_equal(got, ref)
    # Same from a PIL image, bytes, a file:// path and a data URL.
    np.testing.assert_array_equal(_pixels(load_image(Image.open(transparent_png))), ref)
    np.testing.assert_array_equal(_pixels(load_image(transparent_png.read_bytes())), ref)
    np.testing.assert_array_equal(_pixels(load_image(f"file://{transparent_png}")), ref)
    # A bare convert("RGB") would have shown something else: the comparison means something.
    assert not np.array_equal(np.asarray(Image.open(transparent_png).convert("RGB")), ref)


def test_pa_image_in_memory_is_composited_too():
    pa = _palette_with_key().convert("PA")
    assert pa.mode == "PA"
    from qwen_vl_utils import fetch_image

    ref = np.asarray(fetch_image({"image": pa.convert("RGBA")}))
    np.testing.assert_array_equal(_pixels(load_image(pa)), ref)


def test_openai_data_url_carries_the_same_pixels(transparent_png):
    url = image_to_data_url(str(transparent_png))
    data = base64.b64decode(url.split(",", 1)[1])
    sent = Image.open(io.BytesIO(data))
    assert sent.mode == "RGB" and "transparency" not in sent.info  # nothing left for a server to composite
    np.testing.assert_array_equal(np.asarray(sent), _reference(transparent_png))


def test_opaque_files_travel_as_their_own_bytes(tmp_path):
    img = Image.new("RGB", SIZE, (200, 10, 10))
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
        path = tmp_path / f"opaque.{ext}"
        img.save(path, format=fmt)
        url = image_to_data_url(str(path))
        assert base64.b64decode(url.split(",", 1)[1]) == path.read_bytes()
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(load_image(path)))


def test_every_image_path_uses_the_one_loader():
    """The policy backends, the PRM format (scorer and trainer), the tiny policy and the EVPV
    trainer all call `vlprm.backends.base.load_image`; the judge and EVPV describer send their
    images through the backends."""
    import vlprm.backends.hf_backend as hf
    import vlprm.backends.vllm_backend as vl
    import vlprm.prm.format as fmt
    import vlprm.training.data as train_data

    assert hf.load_image is load_image and vl.load_image is load_image
    assert train_data.load_images is fmt.load_images
    probe = _rgba()
    np.testing.assert_array_equal(np.asarray(fmt.load_images([probe])[0]), np.asarray(load_image(probe)))


def test_prm_scorer_and_trainer_encode_the_composited_pixels(tiny_model_dir, transparent_png, tmp_path):
    """Through the processor, as the PRM scorer and the trainer's encoder call it: the pixel
    tensor of the transparent file equals the white-composited file's, not the black-filled one's."""
    from vlprm.prm.format import PRMSample, encode_prm, load_prm_processor

    white, black = tmp_path / "white.png", tmp_path / "black.png"
    Image.fromarray(_reference(transparent_png)).save(white)
    Image.fromarray(np.asarray(Image.open(transparent_png).convert("RGB"))).save(black)  # no key kept
    processor = load_prm_processor(tiny_model_dir)
    steps = ["The red box is on the left.", "So the answer is \\boxed{A}."]
    got, want, other = (encode_prm(processor, PRMSample(question="Where is the red box?", steps=steps,
                                                        images=[str(p)], id=p.stem))["pixel_values"]
                        for p in (transparent_png, white, black))
    assert got.shape == want.shape and bool((got == want).all())
    assert not bool((other == want).all())


# ----------------------------------------------------------------------------- load-time decode


def _puzzle_dir(tmp_path):
    """A PuzzleVQA-layout benchmark with a good PNG, a truncated PNG, a truncated JPEG and a
    PNG cut just before its end chunk."""
    data = tmp_path / "PuzzleVQA" / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    files = {}
    for name, fmt in (("good", "PNG"), ("cut_png", "PNG"), ("cut_jpg", "JPEG"), ("no_end_png", "PNG")):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        raw = buf.getvalue()
        raw = {"cut_png": raw[: len(raw) // 2], "cut_jpg": raw[: int(len(raw) * 0.8)],
               "no_end_png": raw[:-12]}.get(name, raw)
        files[name] = f"images/{name}.{'jpg' if fmt == 'JPEG' else 'png'}"
        (data / files[name]).write_bytes(raw)
    recs = [{"id": name, "image": rel, "question": "Which colour?", "answer": "red",
             "options": ["red", "blue"]} for name, rel in files.items()]
    (data / "shapes.json").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return data


def test_truncated_png_and_jpeg_are_skipped_at_load_with_a_named_reason(tmp_path):
    from vlprm.data.benchmarks import BenchmarkFormatError, LoadReport, load_puzzlevqa

    data = _puzzle_dir(tmp_path)
    rep = LoadReport("puzzlevqa", str(data))
    probs = load_puzzlevqa(data, on_error="skip", report=rep)
    assert [p.metadata.get("puzzle") for p in probs] == ["shapes"] and len(probs) == 1
    assert load_image(probs[0].images[0]).size == (64, 64)
    skipped = dict(rep.skipped)
    assert len(skipped) == 3, skipped
    assert all(reason.startswith("truncated image") for reason in skipped.values()), skipped
    assert any("cut_jpg.jpg" in r for r in skipped.values()) and any("cut_png.png" in r for r in skipped.values())
    assert rep.reasons["truncated image"] == 3
    with pytest.raises(BenchmarkFormatError, match="truncated image"):
        load_puzzlevqa(data)


def test_truncated_embedded_bytes_are_skipped_at_load(tmp_path):
    """Hub layouts embed image bytes (MMMU parquet): a cut JPEG among them is caught the same way."""
    import pandas as pd

    from vlprm.data.benchmarks import LoadReport, load_mmmu

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, format="JPEG")
    good, cut = buf.getvalue(), buf.getvalue()[:600]
    rows = []
    for rid, data in (("validation_Art_1", good), ("validation_Art_2", cut)):
        row = {"id": rid, "question": "What is in <image 1>?", "options": "['a', 'b']", "explanation": "",
               "img_type": "['Paintings']", "answer": "A", "topic_difficulty": "Easy",
               "question_type": "multiple-choice", "subfield": "Art"}
        for k in range(1, 8):
            row[f"image_{k}"] = {"bytes": data, "path": f"{rid}.jpg"} if k == 1 else None
        rows.append(row)
    path = tmp_path / "MMMU" / "Art" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(path)
    rep = LoadReport("mmmu", str(path))
    probs = load_mmmu(tmp_path / "MMMU", on_error="skip", report=rep)
    assert [p.id for p in probs] == ["validation_Art_1"]
    assert [rid for rid, _ in rep.skipped] == ["validation_Art_2"]
    assert rep.skipped[0][1].startswith("truncated image")
