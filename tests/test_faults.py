"""Faults a user or a hostile environment brings, each met by one clear line, counted, resumable,
and no API key on a disk: leaked secrets, config mistakes, bad records, a full disk, a server
that hangs or echoes the key. Hosted APIs cannot run here: `tests/fake_openai_server.py` stands
in for a misbehaving OpenAI-compatible server and records what it was sent."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer
from vlprm.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-fake-" + "7Hq2xW9pLm4RtZ8vNc3BkD5s"  # what the stand-in server echoes back


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def puzzles(tmp_path_factory):
    from vlprm.puzzles import generate_puzzles

    root = tmp_path_factory.mktemp("puzzles")
    generate_puzzles(root, 2, 0)
    return root


def _cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vlprm.cli", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The last stderr line, after checking the run failed without a traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


# --------------------------------------------------------------------------- secrets


def test_redaction_masks_registered_keys_bearer_tokens_and_log_lines():
    from vlprm.config import to_yaml
    from vlprm.secrets import RedactingFilter, redact, redact_obj, register_secret

    register_secret("plain-value-no-prefix-123")
    assert redact("echo: plain-value-no-prefix-123!") == "echo: ***!"
    assert redact("Authorization: Bearer abcdefgh12345678") == "Authorization: Bearer ***"
    assert KEY not in redact(f"bad key {KEY} given")  # key-shaped, even never registered
    assert redact_obj({"a": ["x plain-value-no-prefix-123"]}) == {"a": ["x ***"]}
    assert "plain-value-no-prefix-123" not in to_yaml({"note": "plain-value-no-prefix-123"})
    assert redact("EMPTY") == "EMPTY" and redact("Step 1: the sky is blue") == "Step 1: the sky is blue"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("vlprm.test_faults")
    logger.addHandler(handler)
    try:
        logger.warning("request failed: %s", "server said plain-value-no-prefix-123")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().strip() == "request failed: server said ***"


def test_echoed_bearer_token_reaches_no_file_and_no_log(server, puzzles, tmp_path):
    """A judge endpoint that repeats the Authorization header in its 401 and 500 error bodies:
    the run records the failures (with the key masked) and finishes; the key is in no file of
    the run directory and in no line it printed."""
    out = tmp_path / "run"
    proc = _cli("synthesize", "--out", str(out), "--data.benchmark", "puzzles", "--data.path", str(puzzles),
                "--stages", "rollouts,judge,combine,export", "--policy.backend", "openai",
                "--policy.model", "policy", "--policy.n", "2", "--policy.max_tokens", "64",
                "--policy.backend_kwargs", f"{{base_url: {server.base_url}, api_key_env: VLPRM_FAKE_KEY}}",
                "--judge.backend", "openai", "--judge.model", "echo-auth", "--judge.base_url", server.base_url,
                "--judge.api_key_env", "VLPRM_FAKE_KEY", "--judge.cache", "null", "--export.hf", "false",
                "--progress", "false", env={"VLPRM_FAKE_KEY": KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(r["authorization"] == f"Bearer {KEY}" for r in server.seen)  # the key was sent
    assert "echo-auth" in server.models()  # ... to the judge that echoes it
    judge = [json.loads(line) for line in (out / "judge.jsonl").read_text().splitlines()]
    assert judge and all(r["status"] != "ok" for r in judge)
    assert all("401" in (r.get("detail") or "") and "Bearer ***" in r["detail"] for r in judge), judge[0]
    assert _files_containing(out, KEY) == []
    assert KEY not in proc.stdout and KEY not in proc.stderr


def test_inline_api_key_in_a_config_is_refused_and_never_saved(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'run'}\njudge:\n  backend_kwargs:\n    api_key: {KEY}\n")
    proc = _cli("synthesize", "--config", str(cfg))
    line = _one_line_error(proc)
    assert proc.returncode == 2
    assert "judge.backend_kwargs.api_key" in line and "api_key_env" in line and KEY not in line
    assert not (tmp_path / "run").exists()
    # The key given where the variable's name belongs is refused the same way.
    from vlprm.config import load_config
    from vlprm.synthesis.config import SynthesisConfig

    with pytest.raises(ConfigError) as e:
        load_config(SynthesisConfig, None, ["--judge.api_key_env", KEY])
    assert str(e.value) == ("judge.api_key_env: give the name of the environment variable that holds the key, "
                            "not the key itself (a config is saved with the run)")


# --------------------------------------------------------------------------- config mistakes


@pytest.mark.parametrize("override,message", [
    (["--policy.n", "2.5"], "policy.n: expected an integer, got 2.5"),
    (["--mc.k", "true"], "mc.k: expected an integer, got True"),
    (["--policy.n", "four"], "policy.n: expected an integer, got 'four'"),
    (["--policy.temperature", "warm"], "policy.temperature: expected a number, got 'warm'"),
    (["--export.hf", "2"], "export.hf: expected true or false, got 2"),
    (["--policy.backend_kwargs", "[1, 2]"], "policy.backend_kwargs: expected a mapping, got [1, 2]"),
])
def test_wrong_types_name_the_key_and_the_expected_type(override, message):
    from vlprm.config import load_config
    from vlprm.synthesis.pipeline import SynthesisConfig

    with pytest.raises(ConfigError) as e:
        load_config(SynthesisConfig, None, override)
    assert str(e.value) == message


def test_lossless_values_are_still_accepted():
    from vlprm.config import load_config
    from vlprm.synthesis.pipeline import SynthesisConfig

    cfg = load_config(SynthesisConfig, None, ["--policy.n", "4.0", "--policy.temperature", "1",
                                              "--policy.top_p", "1e-1", "--export.hf", "no"])
    assert cfg.policy.n == 4 and isinstance(cfg.policy.n, int)
    assert cfg.policy.temperature == 1.0 and cfg.policy.top_p == 0.1 and cfg.export.hf is False


def test_wrong_type_on_the_command_line_is_one_line_exit_2(tmp_path):
    proc = _cli("synthesize", "--out", str(tmp_path / "run"), "--policy.n", "four")
    assert proc.returncode == 2
    assert _one_line_error(proc).endswith("policy.n: expected an integer, got 'four'")


def test_misspelt_backend_setting_names_the_valid_keys(server):
    from vlprm.backends import check_backend_kwargs, make_generator

    with pytest.raises(ConfigError) as e:
        make_generator("openai", "policy", base_url=server.base_url, max_retires=1)
    msg = str(e.value)
    assert "max_retires" in msg and "did you mean max_retries" in msg and "timeout" in msg
    with pytest.raises(ConfigError, match=r"judge\.backend_kwargs\.max_retires: not a setting of the openai"):
        check_backend_kwargs("openai", {"max_retires": 1}, "judge.backend_kwargs")
    with pytest.raises(ConfigError, match=r"policy\.backend_kwargs\.dtypes: not a setting of the hf backend"):
        check_backend_kwargs("hf", {"dtypes": "float32"}, "policy.backend_kwargs")
    check_backend_kwargs("hf", {"dtype": "float32"}, "policy.backend_kwargs")  # a real one passes
    assert server.seen == []  # refused before any request


@pytest.mark.parametrize("settings,message", [
    ({"timeout": 0}, "judge.backend_kwargs.timeout: 0 is out of range; use 0.1 to 1800"),
    ({"max_retries": 100}, "judge.backend_kwargs.max_retries: 100 is out of range; use 0 to 10"),
    ({"max_retries": 1.5}, "judge.backend_kwargs.max_retries: expected an integer, got 1.5"),
    ({"deadline": "soon"}, "judge.backend_kwargs.deadline: expected a number of seconds, got 'soon'"),
])
def test_openai_time_settings_are_bounded(settings, message):
    from vlprm.backends import check_backend_kwargs

    with pytest.raises(ConfigError) as e:
        check_backend_kwargs("openai", settings, "judge.backend_kwargs")
    assert str(e.value) == message


def test_misspelt_backend_setting_stops_the_cli_at_once(server, puzzles, tmp_path):
    proc = _cli("synthesize", "--out", str(tmp_path / "run"), "--data.benchmark", "puzzles",
                "--data.path", str(puzzles), "--stages", "rollouts", "--policy.backend", "openai",
                "--policy.model", "policy", "--policy.backend_kwargs",
                f"{{base_url: {server.base_url}, max_retires: 1}}", "--progress", "false")
    line = _one_line_error(proc)
    assert proc.returncode == 2 and line.startswith("error: policy.backend_kwargs.max_retires: not a setting of the "
                                                    "openai backend (did you mean max_retries?); valid keys: ")
    assert server.seen == []
    # A judge setting out of bounds is refused before the policy samples anything either.
    proc = _cli("synthesize", "--out", str(tmp_path / "run"), "--data.benchmark", "puzzles",
                "--data.path", str(puzzles), "--policy.backend", "openai", "--policy.model", "policy",
                "--policy.backend_kwargs", f"{{base_url: {server.base_url}}}", "--judge.backend_kwargs",
                "{timeout: 0}", "--progress", "false")
    assert _one_line_error(proc) == "error: judge.backend_kwargs.timeout: 0 is out of range; use 0.1 to 1800"
    assert server.seen == []


def test_model_reference_that_is_neither_a_path_nor_a_hub_id_is_refused(tmp_path, monkeypatch):
    from vlprm.paths import check_model_ref

    with pytest.raises(ConfigError) as e:
        check_model_ref(str(tmp_path / "no-such-prm"), "prm.model")
    assert str(e.value) == (f"prm.model: model {str(tmp_path / 'no-such-prm')!r} not found: no such local path, "
                            "and not a hub id like 'org/name'")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="prm.model: .*empty is a directory without config.json"):
        check_model_ref(str(tmp_path / "empty"), "prm.model")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert check_model_ref(str(tmp_path / "m"), "prm.model") == str(tmp_path / "m")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert check_model_ref("Qwen/Qwen2.5-VL-7B-Instruct", "policy.model")  # a hub id, hub online
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="policy.model: model 'org/not-cached-model' is not a local path, and the "
                                          "hub is offline"):
        check_model_ref("org/not-cached-model", "policy.model")


def test_missing_model_paths_are_refused_by_both_clis_before_any_work(server, puzzles, tmp_path):
    nope = tmp_path / "no-such-model"
    proc = _cli("eval", "--benchmarks", f"[{{name: puzzles, path: {puzzles}}}]", "--prm.model", str(nope),
                "--policy.backend", "openai", "--policy.model", "policy", "--policy.base_url", server.base_url,
                "--output_root", str(tmp_path / "eval"))
    assert _one_line_error(proc) == (f"error: prm.model: model {str(nope)!r} not found: no such local path, "
                                     "and not a hub id like 'org/name'")
    proc = _cli("synthesize", "--out", str(tmp_path / "run"), "--data.path", str(puzzles), "--policy.backend", "vllm",
                "--policy.model", str(nope))
    assert _one_line_error(proc) == (f"error: policy.model: model {str(nope)!r} not found: no such local path, "
                                     "and not a hub id like 'org/name'")
    assert server.seen == [] and not (tmp_path / "eval").exists()


def test_output_dir_that_is_a_file_or_on_a_full_disk_is_refused_at_start(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from vlprm.paths import check_output_dir

    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(ConfigError) as e:
        check_output_dir(f)
    assert str(e.value) == f"out: {f} is a file, not a directory; choose another output directory"
    with pytest.raises(ConfigError, match=f"out: cannot create {f / 'run'}: {f} is a file"):
        check_output_dir(f / "run")
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # the check creates nothing
    # A full disk cannot be made here without mount rights: disk_usage stands in for it.
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30, 2**20))
    with pytest.raises(ConfigError, match=r"out: no space left for .*run: 1 MiB free on its disk"):
        check_output_dir(tmp_path / "run")


def test_read_only_directory_is_refused_with_why(tmp_path):
    from vlprm.paths import check_output_dir

    if os.geteuid() != 0:
        os.chmod(tmp_path, 0o500)
        ro = tmp_path
    elif _try_mount(tmp_path / "ro", "ro", size="64m"):
        ro = tmp_path / "ro"
    else:
        pytest.skip("root without mount rights: no read-only directory to try")
    try:
        with pytest.raises(ConfigError, match=r"out: cannot write to .*run \((permission denied|read-only file "
                                              r"system) in "):
            check_output_dir(ro / "run")
    finally:
        os.chmod(tmp_path, 0o700) if os.geteuid() != 0 else _umount(tmp_path / "ro")


def _try_mount(path: Path, *opts: str, size: str = "1m") -> bool:
    path.mkdir(exist_ok=True)
    options = ",".join((f"size={size}",) + opts)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def test_benchmark_path_one_level_above_the_data_says_where_the_data_is(tmp_path):
    """A PuzzleVQA checkout's root instead of its data/: the repo's own JSON files are not
    reported as corrupt records; the error says where the puzzle files are."""
    from vlprm.data.benchmarks import load_benchmark
    from vlprm.puzzles import generate_puzzles

    checkout = tmp_path / "PuzzleVQA"
    generate_puzzles(checkout / "data", 2, 0)
    (checkout / "config.json").write_text(json.dumps({"name": "PuzzleVQA", "version": 1}, indent=2))
    (checkout / "results.json").write_text('{\n  "accuracy": 0.5\n}\n')
    with pytest.raises(FileNotFoundError) as e:
        load_benchmark("puzzlevqa", checkout, on_error="skip")
    msg = str(e.value)
    assert f"the puzzle files are in {checkout / 'data'}: point the path there" in msg
    assert "config.json" in msg and "\n" not in msg
    assert len(load_benchmark("puzzlevqa", checkout / "data")) == 2
    proc = _cli("synthesize", "--out", str(tmp_path / "run"), "--data.benchmark", "puzzlevqa",
                "--data.path", str(checkout), "--policy.backend", "openai", "--policy.model", "served-policy",
                "--progress", "false")
    assert proc.returncode == 2 and _one_line_error(proc) == f"error: {msg}"


# --------------------------------------------------------------------------- bad records


def test_wrong_typed_fields_are_skipped_records_with_their_reason(tmp_path):
    from vlprm.data.benchmarks import LoadReport, load_benchmark
    from vlprm.puzzles import generate_puzzles

    generate_puzzles(tmp_path, 2, 0)
    f = next(p for p in sorted(tmp_path.glob("*.json")))
    good = json.loads(f.read_text().splitlines()[0])
    bad = [{**good, "id": "numeric_question", "question": 42},
           {**good, "id": "options_text", "options": "A, B, C"},
           {**good, "id": "image_number", "image": 7},
           {**good, "id": "question_list", "question": ["what", "is", "it"]},
           {**good, "id": "answer_dict", "answer": {"letter": "A"}}]
    with open(f, "a") as fh:
        for rec in bad:
            fh.write(json.dumps(rec) + "\n")
    report = LoadReport("puzzlevqa", str(tmp_path))
    problems = load_benchmark("puzzlevqa", tmp_path, report=report, on_error="skip")
    assert len(problems) == 2 and all(isinstance(p.question, str) for p in problems)
    reasons = dict(report.skipped)
    assert reasons["numeric_question"] == "field 'question' must be text, got int 42"
    assert reasons["options_text"] == "options must be a list, got str"
    assert reasons["image_number"] == "image has an unsupported value of type int"
    assert reasons["question_list"].startswith("field 'question' must be text, got list")
    assert reasons["answer_dict"].startswith("field 'answer' must be text or a number, got dict")
    assert report.skipped_files == [str(f)] * 5


def test_corrupt_line_in_the_middle_of_a_stage_file_is_warned_counted_and_redone(tmp_path, caplog):
    from vlprm.data.store import JsonlStore

    path = tmp_path / "rollouts.jsonl"
    with JsonlStore(path) as store:
        for i in range(4):
            store.append({"id": f"p{i}", "value": i})
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:12]  # a damaged line with lines after it: not a killed writer
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="vlprm.data.store"):
        store = JsonlStore(path)
    assert store.corrupt_count == 1 and store.corrupt_lines == [2]
    assert sorted(store.keys()) == ["p0", "p2", "p3"]  # p1 is redone by the run
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{path}:2: corrupt line skipped (not valid JSON: ")
    assert warning.endswith("); its record is redone")
    # A line torn by a killed writer (the last one, no newline) is repaired without a warning.
    caplog.clear()
    with open(path, "a") as f:
        f.write('{"id": "p4", "val')
    with caplog.at_level(logging.WARNING, logger="vlprm.data.store"):
        store = JsonlStore(path)
    assert store.corrupt_count == 1 and not caplog.records  # line 2 was reported once; line 5 is no damage
    from vlprm.data.store import corrupt_lines_seen
    from vlprm.runs import StageSummary, format_summary

    assert corrupt_lines_seen()[str(path)] == [2]
    assert f"  {path}: 1 corrupt line(s) skipped (line 2); their records were redone" in \
        format_summary("summary", [StageSummary("rollouts")], 1.0).splitlines()


def test_disk_full_while_appending_stops_with_one_line_and_loses_nothing(tmp_path):
    from vlprm.data.store import JsonlStore, StoreWriteError

    path = tmp_path / "mc.jsonl"
    store = JsonlStore(path)
    store.append({"id": "a", "x": 1})
    before = path.read_bytes()

    class FullDisk:
        """The file handle of a disk that fills: part of the line goes out, then ENOSPC."""

        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            if len(data) > 5:
                return self.fh.write(data[:5])
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return self.fh.fileno()

        def close(self):
            self.fh.close()

    store._fh = FullDisk(open(path, "ab", buffering=0))
    with pytest.raises(StoreWriteError) as e:
        store.append({"id": "b", "x": 2})
    assert str(e.value) == (f"cannot write to {path}: no space left on device; the records written before are "
                            "kept: fix it and rerun to resume")
    assert path.read_bytes() == before and "b" not in store
    store.append({"id": "b", "x": 2})  # space freed: the run resumes
    assert sorted(JsonlStore(path).keys()) == ["a", "b"]


def test_disk_full_on_a_real_small_filesystem(tmp_path):
    """The same on a real 64 KiB tmpfs (needs mount rights; skipped without them)."""
    from vlprm.data.store import JsonlStore, StoreWriteError
    from vlprm.paths import check_output_dir

    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _try_mount(disk, size="64k"):
        pytest.skip("no mount rights for a small tmpfs")
    try:
        store = JsonlStore(disk / "judge.jsonl")
        written = []
        with pytest.raises(StoreWriteError, match="no space left on device"):
            for i in range(10_000):
                store.append({"id": f"r{i}", "text": "x" * 200})
                written.append(f"r{i}")
        again = JsonlStore(disk / "judge.jsonl")
        assert sorted(again.keys()) == sorted(written) and again.corrupt_count == 0
        with pytest.raises(ConfigError, match=f"out: .*{disk / 'run'}.*no space left"):
            check_output_dir(disk / "run")
    finally:
        _umount(disk)


def test_solution_without_final_answer_is_not_exported_as_error_free(tmp_path):
    """Solutions whose last step gives no answer and whose MC evidence finds no failing step used
    to come out with every step "+"; now they are dropped as no_final_answer and counted."""
    from vlprm.data.schema import Problem, Solution, Step, StepEvidence
    from vlprm.synthesis.combine import combine
    from vlprm.synthesis.export import collect_stats, export_dataset, render_report

    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img)
    prob = Problem(id="p", benchmark="puzzles", question="Which?", images=[str(img)], options=["a", "b"], answer="A",
                   answer_type="multiple_choice")
    sols, mc = {}, {}
    for i in range(8):
        answered = i % 2 == 0
        steps = [Step("I see a.", "perception"), Step("So a." + (" \\boxed{A}" if answered else ""))]
        s = Solution(id=f"p#{i}", problem_id="p", policy="x", text="", steps=steps,
                     final_answer="A" if answered else None, correct=answered or None)
        sols[s.id] = s
        ev = [StepEvidence(mc_correct=3, mc_total=4, mc_probed=True)] * 2
        if i == 7:  # an unanswered solution whose MC does find an error keeps its labels
            ev = [ev[0], StepEvidence(mc_correct=0, mc_total=4, mc_probed=True)]
        mc[s.id] = {"id": s.id, "status": "ok", "steps": [e.to_dict() for e in ev]}
    combined = combine(list(sols.values()), mc, {}, ["mc"])
    n = export_dataset(tmp_path / "export", combined, sols, {"p": prob}, "mc", hf=False)
    rows = [json.loads(x) for x in (tmp_path / "export" / "prm.jsonl").read_text().splitlines()]
    assert n == 5 and sorted(r["solution_id"] for r in rows) == ["p#0", "p#2", "p#4", "p#6", "p#7"]
    assert next(r for r in rows if r["solution_id"] == "p#7")["labels"] == ["+", "-"]
    rollouts = [{**s.to_dict(), "status": "ok"} for s in sols.values()]
    st = collect_stats([prob], rollouts, list(mc.values()), [], combined, "mc", rows)
    assert st["views"]["mc"]["dropped"] == {"no_final_answer": 3} and st["views"]["mc"]["kept"] == 5
    assert "no_final_answer: 3" in render_report(st)


# --------------------------------------------------------------------------- bounded time


def test_hanging_server_fails_the_request_within_the_deadline(server, sample_image):
    """A server that accepts and never answers: each request fails within the configured
    deadline with the reason, and the generator goes on to answer the next call."""
    from vlprm.backends import ChatRequest, SamplingConfig, make_generator

    msgs = [{"role": "user", "content": [{"type": "image", "image": str(sample_image)},
                                         {"type": "text", "text": "What is shown?"}]}]
    reqs = [ChatRequest(messages=msgs, id=f"r{i}") for i in range(3)]
    hang = make_generator("openai", "hang", base_url=server.base_url, timeout=1, max_retries=5, deadline=2.5,
                          backoff_base=0.1)
    t0 = time.monotonic()
    res = hang.generate(reqs, SamplingConfig(max_tokens=8), progress=False)
    spent = time.monotonic() - t0
    assert spent < 6, spent  # the deadline (2.5 s) bounds each request, not 6 x 1 s + backoff
    for r in res:
        assert not r.ok and r.error.startswith(f"no reply (timed out) from {server.base_url} after ")
        assert "(timeout 1 s per attempt, max_retries 5; deadline 2.5 s)" in r.error
    ok = make_generator("openai", "policy", base_url=server.base_url, timeout=5)
    assert ok.generate(reqs[:1], SamplingConfig(max_tokens=8), progress=False)[0].ok


def test_default_time_bounds_fit_a_run():
    from vlprm.backends.openai_backend import OpenAIGenerator

    gen = OpenAIGenerator("m", base_url="http://127.0.0.1:9/v1")
    assert gen.timeout <= 120 and gen.max_retries <= 3 and gen.deadline is not None and gen.deadline <= 600


def test_hanging_judge_does_not_stop_the_run(server, puzzles, tmp_path):
    """Through the synthesis CLI: a judge endpoint that hangs fails its requests within the
    configured bound (recorded with the reason), and combine and export still run."""
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = _cli("synthesize", "--out", str(out), "--data.benchmark", "puzzles", "--data.path", str(puzzles),
                "--stages", "rollouts,judge,combine,export", "--policy.backend", "openai",
                "--policy.model", "policy", "--policy.n", "2", "--policy.max_tokens", "64",
                "--policy.backend_kwargs", f"{{base_url: {server.base_url}}}", "--judge.backend", "openai",
                "--judge.model", "hang", "--judge.base_url", server.base_url, "--judge.cache", "null",
                "--judge.backend_kwargs", "{timeout: 1, max_retries: 1, deadline: 2, backoff_base: 0.1}",
                "--export.hf", "false", "--progress", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 120
    judge = [json.loads(line) for line in (out / "judge.jsonl").read_text().splitlines()]
    assert len(judge) == 4 and all(r["status"] != "ok" and "no reply (timed out)" in r["detail"] for r in judge)
    assert (out / "report.md").exists()


# --------------------------------------------------------------------------- bad records, end to end


def _puzzles_with_bad_records(root: Path) -> dict[str, str]:
    """Generated puzzles plus one bad record of each kind; {record id: expected reason start}."""
    from vlprm.puzzles import generate_puzzles

    generate_puzzles(root, 2, 0)
    f = sorted(root.glob("*.json"))[0]
    good = json.loads(f.read_text().splitlines()[0])
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    bad = {"missing_image": ({**good, "image": "no_such.png"}, "image file not found"),
           "zero_byte_image": ({**good, "image": "empty.png"}, "corrupt image"),
           "corrupt_image": ({**good, "image": "corrupt.png"}, "corrupt image"),
           "missing_field": ({k: v for k, v in good.items() if k != "question"},
                             "missing required field(s) 'question'"),
           "wrong_type": ({**good, "question": 42}, "field 'question' must be text, got int 42")}
    lines = f.read_text().splitlines()
    for rid, (rec, _) in bad.items():
        lines.append(json.dumps({**rec, "id": rid}))
    torn = json.dumps({**good, "id": "torn"})
    lines.insert(1, torn[: len(torn) // 2])  # a torn line in the middle of the file
    f.write_text("\n".join(lines) + "\n")
    expected = {rid: reason for rid, (_, reason) in bad.items()}
    return {**expected, f"{f.stem}_0001": "not valid JSON"}  # the torn line's record id: by position


@pytest.mark.parametrize("pipeline", ["synthesize", "eval"])
def test_bad_input_records_are_named_in_skipped_jsonl(pipeline, server, tmp_path):
    """Through the synthesis and the eval CLI on tiny data: every bad record is listed in the
    run's skipped.jsonl with benchmark, file, record id and reason; the good ones are sampled."""
    data = tmp_path / "data"
    expected = _puzzles_with_bad_records(data)
    policy = ("--policy.backend", "openai", "--policy.model", "policy", "--policy.n", "1", "--policy.max_tokens", "64",
              "--policy.backend_kwargs", f"{{base_url: {server.base_url}}}")
    if pipeline == "synthesize":
        out = tmp_path / "run"
        proc = _cli("synthesize", "--out", str(out), "--data.benchmark", "puzzles", "--data.path", str(data),
                    "--stages", "rollouts", *policy, "--progress", "false")
    else:
        proc = _cli("eval", "--benchmarks", f"[{{name: puzzles, path: {data}}}]", *policy, "--stages", "sample",
                    "--output_root", str(tmp_path / "eval"))
        [out] = (tmp_path / "eval").iterdir()
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    got = {s["id"]: s for s in skipped}
    assert set(got) == set(expected), got
    for rid, reason in expected.items():
        assert got[rid]["reason"].startswith(reason), got[rid]
        assert got[rid]["benchmark"] == "puzzles" and got[rid]["file"].endswith(".json")
    sampled = out / ("rollouts.jsonl" if pipeline == "synthesize" else "candidates.jsonl")
    assert len({json.loads(x)["problem_id"] for x in sampled.read_text().splitlines()}) == 2


def test_hanging_policy_server_does_not_keep_an_evaluation_waiting(server, puzzles, tmp_path):
    """Through the eval CLI: a policy endpoint that never answers fails each request within the
    configured bound, every problem ends in a record, and the metrics stage still runs."""
    t0 = time.monotonic()
    proc = _cli("eval", "--benchmarks", f"[{{name: puzzles, path: {puzzles}}}]", "--policy.backend", "openai",
                "--policy.model", "hang", "--policy.base_url", server.base_url, "--policy.n", "2",
                "--policy.max_tokens", "32", "--policy.backend_kwargs", "{timeout: 1, max_retries: 1, deadline: 2}",
                "--stages", "sample,metrics", "--output_root", str(tmp_path / "eval"), "--plots", "false")
    spent = time.monotonic() - t0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert spent < 120, spent
    assert any(m == "hang" for m in server.models())
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = (tmp_path / "eval").iterdir()
    samples = [json.loads(x) for x in (run / "candidates.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(s["status"] == "failed" and s["detail"].startswith("no reply (timed out)")
                                     for s in samples), samples[:1]
    assert "failed (counted wrong)" in (run / "metrics.md").read_text()


@pytest.mark.slow
def test_disk_that_fills_mid_run_stops_the_cli_with_one_line_and_resumes(server, puzzles, tmp_path):
    """A real small disk (tmpfs; needs mount rights, skipped without them) that fills while the
    policy's solutions are written: the run stops with one line, every line on disk is whole,
    and after space is freed a rerun resumes without redoing what was written."""
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _try_mount(disk, size="48m"):
        pytest.skip("no mount rights for a small tmpfs")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 30 * 2**20)  # leaves 18 MiB: enough at start, not for 8 x 4 MiB
        args = ("synthesize", "--out", str(disk / "run"), "--data.benchmark", "puzzles", "--data.path", str(puzzles),
                "--stages", "rollouts", "--policy.backend", "openai", "--policy.model", "big", "--policy.n", "4",
                "--policy.max_steps", "null", "--policy.batch_problems", "1",
                "--policy.backend_kwargs", f"{{base_url: {server.base_url}}}", "--progress", "false")
        proc = _cli(*args)
        line = _one_line_error(proc)
        rollouts = disk / "run" / "rollouts.jsonl"
        assert line == (f"error: cannot write to {rollouts}: no space left on device; the records written before "
                        "are kept: fix it and rerun to resume")
        kept = [json.loads(x) for x in rollouts.read_text().splitlines()]  # every line whole
        filler.unlink()
        sent = len(server.seen)
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        final = [json.loads(x) for x in rollouts.read_text().splitlines()]
        assert len({r["problem_id"] for r in final}) == 2 and final[: len(kept)] == kept
        assert len(server.seen) - sent == 2 - len({r["problem_id"] for r in kept})  # only the missing problems
    finally:
        _umount(disk)


def test_corrupt_line_in_a_stage_file_is_reported_by_the_cli_and_redone(server, puzzles, tmp_path):
    out = tmp_path / "run"
    args = ("synthesize", "--out", str(out), "--data.benchmark", "puzzles", "--data.path", str(puzzles),
            "--stages", "rollouts", "--policy.backend", "openai", "--policy.model", "policy", "--policy.n", "1",
            "--policy.batch_problems", "1", "--policy.backend_kwargs", f"{{base_url: {server.base_url}}}",
            "--progress", "false")
    assert _cli(*args).returncode == 0
    rollouts = out / "rollouts.jsonl"
    lines = rollouts.read_text().splitlines()
    damaged = json.loads(lines[0])["problem_id"]
    rollouts.write_text("\n".join([lines[0][:40]] + lines[1:]) + "\n")  # line 1 of 2 cut short
    sent = len(server.seen)
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count(f"{rollouts}:1: corrupt line skipped") == 1
    assert f"{rollouts}: 1 corrupt line(s) skipped (line 1); their records were redone" in proc.stdout + proc.stderr
    assert len(server.seen) == sent + 1  # only the damaged problem is sampled again
    redone = [json.loads(x) for x in rollouts.read_text().splitlines()[2:]]
    assert [r["problem_id"] for r in redone] == [damaged]


def test_echoed_bearer_token_reaches_no_file_of_an_evaluation(server, puzzles, tmp_path):
    """The same through the eval CLI: a policy endpoint that echoes the key in a 500 (retried)."""
    proc = _cli("eval", "--benchmarks", f"[{{name: puzzles, path: {puzzles}}}]", "--policy.backend", "openai",
                "--policy.model", "echo-auth-500", "--policy.base_url", server.base_url, "--policy.api_key_env",
                "VLPRM_FAKE_KEY", "--policy.n", "1", "--policy.backend_kwargs", "{max_retries: 1, backoff_base: 0.01}",
                "--stages", "sample,metrics", "--output_root", str(tmp_path / "eval"), env={"VLPRM_FAKE_KEY": KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(r["authorization"] == f"Bearer {KEY}" for r in server.seen) == 4  # 2 problems x 2 attempts
    [run] = (tmp_path / "eval").iterdir()
    assert "Bearer ***" in (run / "skipped.jsonl").read_text()
    assert _files_containing(tmp_path, KEY) == []
    assert KEY not in proc.stdout and KEY not in proc.stderr


@pytest.mark.slow
def test_unanswered_solutions_are_not_exported_error_free_by_the_cli(puzzles, tmp_path):
    """Through the synthesis CLI: a policy whose solutions never give a final answer, while its
    MC continuations do (the right one for one puzzle): no exported row ends on a "+" step, and the
    report counts the dropped ones as no_final_answer."""
    from vlprm.data.benchmarks import load_benchmark

    right = load_benchmark("puzzles", puzzles)[0].answer
    with FakeOpenAIServer(answer=right) as srv:
        out = tmp_path / "run"
        proc = _cli("synthesize", "--out", str(out), "--data.benchmark", "puzzles", "--data.path", str(puzzles),
                    "--stages", "rollouts,mc,combine,export", "--policy.backend", "openai", "--policy.model", "noanswer",
                    "--policy.n", "2", "--policy.backend_kwargs", f"{{base_url: {srv.base_url}}}", "--mc.k", "2",
                    "--combine.views", "[mc]", "--export.view", "mc", "--export.hf", "false", "--progress", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "export" / "prm.jsonl").read_text().splitlines()]
    assert all(r["labels"][-1] == "-" for r in rows), rows
    report = (out / "report.md").read_text()
    dropped = [line for line in report.splitlines() if line.startswith("| mc |")][-1]  # the label-view row
    assert "no_final_answer: 2" in dropped  # the 2 solutions of the puzzle whose continuations are right


def test_a_key_named_by_a_config_is_masked_before_any_backend_reads_it(monkeypatch):
    from vlprm.config import load_config, to_yaml
    from vlprm.secrets import redact
    from vlprm.synthesis.config import SynthesisConfig

    secret = "plain-secret-value-from-env-42"
    monkeypatch.setenv("VLPRM_OTHER_KEY", secret)
    cfg = load_config(SynthesisConfig, None, ["--judge.api_key_env", "VLPRM_OTHER_KEY"])
    assert redact(f"echo {secret}") == "echo ***"
    assert "VLPRM_OTHER_KEY" in to_yaml(cfg) and secret not in to_yaml(cfg)


@pytest.mark.slow
def test_vllm_engine_arguments_are_checked_against_vllm(tmp_path):
    """A vllm policy's backend_kwargs go to vllm.LLM: a real engine argument passes, a misspelt
    one is refused with the closest name (vLLM's own EngineArgs, imported only for unknown keys)."""
    from vlprm.backends import check_backend_kwargs

    check_backend_kwargs("vllm", {"enable_chunked_prefill": True, "max_model_len": 2048}, "policy.backend_kwargs")
    with pytest.raises(ConfigError) as e:
        check_backend_kwargs("vllm", {"enforce_eagr": True}, "policy.backend_kwargs")
    assert str(e.value).startswith("policy.backend_kwargs.enforce_eagr: not a setting of the vllm backend "
                                   "(did you mean enforce_eager?); valid keys: max_model_len, ")
    assert str(e.value).endswith(", or any vllm EngineArgs field")
