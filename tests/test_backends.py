"""Each backend generates from the tiny model with an image and n>1; the HTTP backend talks to a
real vLLM OpenAI-compatible server and fails clearly (not hangs) when it cannot."""

import time

import pytest

from vlprm.backends import ChatRequest, SamplingConfig, make_generator


def _requests(image, continued=False):
    msgs = [{"role": "user", "content": [{"type": "image", "image": str(image)},
                                         {"type": "text", "text": "What shapes are in the image?"}]}]
    reqs = [ChatRequest(messages=msgs, seed=11, id="plain")]
    if continued:
        prefix = {"role": "assistant", "content": [{"type": "text", "text": "Step 1: There is a red circle.\n\n"}]}
        reqs.append(ChatRequest(messages=msgs + [prefix], continue_final_message=True, seed=11, id="cont"))
    return reqs


def _check(results, n, ids):
    assert [r.request_id for r in results] == ids
    for r in results:
        assert r.ok, r.error
        assert len(r.completions) == n
        assert r.prompt_tokens and r.prompt_tokens > 10  # the image tokens are in the prompt
        for c in r.completions:
            assert 0 < c.num_tokens <= 12
            assert c.finish_reason in ("length", "stop")


@pytest.mark.slow
def test_vllm_backend_n_samples_continuation_logprobs_and_seed(tiny_model_dir, sample_image, tmp_path):
    gen = make_generator("vllm", str(tiny_model_dir), max_model_len=2048)
    sampling = SamplingConfig(n=3, temperature=1.0, max_tokens=12, logprobs=1)
    res = gen.generate(_requests(sample_image, continued=True), sampling, progress=False)
    _check(res, 3, ["plain", "cont"])
    # The continued request's prompt contains the assistant prefix, so it is longer.
    assert res[1].prompt_tokens > res[0].prompt_tokens
    c = res[0].completions[0]
    assert len(c.logprobs) == c.num_tokens and all(lp <= 0 for lp in c.logprobs)
    assert len({x.text for x in res[0].completions}) > 1  # n samples differ
    again = gen.generate(_requests(sample_image), sampling, progress=False)
    assert again[0].texts == res[0].texts  # same per-request seed -> same samples
    # A corrupt image fails that request only, with the path in the error.
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    msgs = [{"role": "user", "content": [{"type": "image", "image": str(bad)}, {"type": "text", "text": "?"}]}]
    res = gen.generate([ChatRequest(messages=msgs, id="bad")] + _requests(sample_image), sampling, progress=False)
    assert res[0].error and "bad.png" in res[0].error
    assert res[1].ok


def test_hf_backend_n_samples_with_image_and_stop(tiny_model_dir, sample_image):
    gen = make_generator("hf", str(tiny_model_dir))
    sampling = SamplingConfig(n=2, temperature=1.0, max_tokens=12, logprobs=0, seed=5)
    res = gen.generate(_requests(sample_image, continued=True), sampling, progress=False)
    _check(res, 2, ["plain", "cont"])
    assert res[1].prompt_tokens > res[0].prompt_tokens
    assert len(res[0].completions[0].logprobs) == res[0].completions[0].num_tokens
    again = gen.generate(_requests(sample_image), sampling, progress=False)
    assert again[0].texts == res[0].texts
    # Stop strings are cut off like vLLM does: choose a frequent character of the samples.
    text = res[0].completions[0].text
    if len(text) > 2:
        stop = text[1]
        cut = gen.generate(_requests(sample_image), sampling.replace(stop=[stop]), progress=False)
        assert all(stop not in c.text for c in cut[0].completions)
    # Greedy with n > 1 gives n (identical) completions, as vLLM does, not an error.
    greedy = gen.generate(_requests(sample_image), sampling.replace(temperature=0.0, logprobs=None), progress=False)
    assert greedy[0].ok, greedy[0].error
    assert len(greedy[0].completions) == 2 and len(set(greedy[0].texts)) == 1


@pytest.mark.slow
def test_openai_backend_against_vllm_server(vllm_server, sample_image):
    gen = make_generator("openai", "tiny", base_url=vllm_server.base_url, max_concurrency=2)
    sampling = SamplingConfig(n=2, temperature=1.0, max_tokens=12, logprobs=2, top_k=20,
                              repetition_penalty=1.05)
    res = gen.generate(_requests(sample_image, continued=True), sampling, progress=False)
    _check(res, 2, ["plain", "cont"])
    assert res[1].prompt_tokens > res[0].prompt_tokens
    c = res[0].completions[0]
    assert len(c.logprobs) == c.num_tokens and all(len(t) >= 1 for t in c.top_logprobs)
    # n split over several requests (hosted APIs that cap n) still returns n samples.
    split = make_generator("openai", "tiny", base_url=vllm_server.base_url, max_n_per_request=1)
    res = split.generate(_requests(sample_image), sampling.replace(n=3), progress=False)
    assert res[0].ok and len(res[0].completions) == 3


@pytest.mark.slow
def test_openai_backend_invalid_request_fails_fast_without_retry(vllm_server, sample_image):
    gen = make_generator("openai", "no-such-model", base_url=vllm_server.base_url, max_retries=3,
                         backoff_base=5.0)
    t0 = time.time()
    res = gen.generate(_requests(sample_image), SamplingConfig(max_tokens=4), progress=False)
    assert time.time() - t0 < 5  # a 404 is not retried (would take >= 5 s of backoff)
    assert res[0].error and "404" in res[0].error and "not retried" in res[0].error


def test_openai_backend_unreachable_server_is_a_clear_error_not_a_hang(sample_image, monkeypatch):
    from vlprm.backends.server import free_port

    monkeypatch.setenv("VLPRM_TEST_KEY", "sk-secret-value")
    url = f"http://127.0.0.1:{free_port()}/v1"
    gen = make_generator("openai", "tiny", base_url=url, max_retries=2, backoff_base=0.05,
                         timeout=2.0, api_key_env="VLPRM_TEST_KEY")
    t0 = time.time()
    res = gen.generate(_requests(sample_image), SamplingConfig(max_tokens=4), progress=False)
    assert time.time() - t0 < 10
    err = res[0].error
    assert err and "APIConnectionError" in err and "after 3 attempts" in err and url in err
    assert "sk-secret-value" not in err and "sk-secret-value" not in repr(gen)


def test_openai_backend_retries_on_429_then_succeeds(sample_image):
    """A hosted API that rate-limits: a local HTTP stand-in returns 429 twice, then a reply.
    (Hosted APIs cannot run here; the stand-in records what it was sent.)"""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers.get("Authorization"), body))
            if len(seen) <= 2:
                self.send_response(429)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "slow down"}}')
                return
            reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": i, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": f"ok {i}"}}
                                 for i in range(body["n"])],
                     "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        gen = make_generator("openai", "gpt-x", base_url=f"http://127.0.0.1:{srv.server_port}/v1",
                             max_retries=3, backoff_base=0.01, vllm_extensions=False)
        res = gen.generate(_requests(sample_image), SamplingConfig(n=2, max_tokens=4, seed=3), progress=False)
    finally:
        srv.shutdown()
    assert res[0].ok, res[0].error
    assert res[0].texts == ["ok 0", "ok 1"]
    assert len(seen) == 3
    body = seen[-1][1]
    assert body["n"] == 2 and body["seed"] == 11 and "top_k" not in body
    img = body["messages"][0]["content"][0]
    assert img["type"] == "image_url" and img["image_url"]["url"].startswith("data:image/png;base64,")


def test_vllm_backend_one_bad_prompt_fails_alone(sample_image, monkeypatch):
    """vLLM rejects a whole generate() call for one prompt it cannot take (longer than
    max_model_len): that request fails, the others are generated. (A stand-in engine that
    behaves so; the real engine is exercised by the slow test above.)"""
    from types import SimpleNamespace

    from vlprm.backends.vllm_backend import VLLMGenerator

    class Engine:
        def generate(self, prompts, params, use_tqdm=False):
            if any("TOO LONG" in p["prompt"] for p in prompts):
                raise ValueError("The decoder prompt (length 99999) is longer than the maximum model length")
            return [SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[SimpleNamespace(
                text=f"seed {prm}", finish_reason="stop", token_ids=[5], logprobs=None, stop_reason=None)])
                for p, prm in zip(prompts, params)]

    class Tok:
        def apply_chat_template(self, msgs, **kw):
            return " ".join(part.get("text", "<img>") for m in msgs for part in m["content"])

    gen = VLLMGenerator.__new__(VLLMGenerator)
    gen.model, gen.llm, gen.tokenizer = "stand-in", Engine(), Tok()
    monkeypatch.setattr(gen, "_params", lambda sampling, seed: seed)
    long = [{"role": "user", "content": [{"type": "text", "text": "TOO LONG"}]}]
    reqs = _requests(sample_image) + [ChatRequest(messages=long, seed=2, id="long"),
                                      ChatRequest(messages=_requests(sample_image)[0].messages, seed=3, id="b")]
    res = gen.generate(reqs, SamplingConfig(max_tokens=4), progress=False)
    assert [r.request_id for r in res] == ["plain", "long", "b"]
    assert res[0].ok and res[0].texts == ["seed 11"] and res[2].texts == ["seed 3"]
    assert not res[1].ok and "longer than the maximum model length" in res[1].error


def test_openai_backend_malformed_request_is_an_error_not_an_exception(sample_image):
    """An image part without an image (or any other per-request failure) fails that request only."""
    gen = make_generator("openai", "tiny", base_url="http://127.0.0.1:9/v1", max_retries=0)
    bad = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}]
    res = gen.generate([ChatRequest(messages=bad, id="bad")], SamplingConfig(max_tokens=4), progress=False)
    assert res[0].request_id == "bad" and res[0].error
