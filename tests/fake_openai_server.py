"""A stand-in OpenAI-compatible server for fault tests (hosted APIs and misbehaving proxies cannot
run here). What it does is chosen per served model name, so one server can be a working policy
and a broken judge at once:

    policy            a step-by-step solution ending in \\boxed{<answer>} (continuations too)
    noanswer          a solution with steps but no final answer (its continuations do answer)
    big               the policy's solution with a 2 MiB first step (fills a small disk fast)
    judge             a judge reply: every step correct
    echo-auth         401 whose error message repeats the Authorization header (as some proxies do)
    echo-auth-500     the same as a 500 (retried, so the echo comes back on every attempt)
    hang              accepts the request and never answers (until the server stops)
    429 / 500         that status, always

It records every request it was sent (`seen`: model, Authorization header, body).

    with FakeOpenAIServer() as srv:
        gen = OpenAIGenerator("policy", base_url=srv.base_url)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOLUTION = ("### Perception\nStep 1: I see a grid of colored circles.\n\n"
            "### Reasoning\nStep 2: The missing circle must match its row.\n\n"
            "Step 3: So the answer is option {answer}. Therefore, the final answer is \\boxed{{{answer}}}.")
NO_ANSWER = ("### Perception\nStep 1: I see a grid of colored circles.\n\n"
             "### Reasoning\nStep 2: The missing circle must match its row.\n\n"
             "Step 3: I am not sure which option fits.")
JUDGE = "Step 1: correct\nStep 2: correct\nStep 3: correct\nFIRST_ERROR_STEP: none\nVERDICT: correct"


class FakeOpenAIServer:
    """A threaded HTTP server on 127.0.0.1 answering /v1/chat/completions by model name."""

    def __init__(self, answer: str = "A"):
        self.answer = answer
        self.seen: list[dict] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._srv.daemon_threads = True
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._srv.server_port}/v1"

    def models(self) -> list[str]:
        return [r["model"] for r in self.seen]

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases hanging handlers
        self._srv.shutdown()
        self._srv.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _reply_text(self, model: str, body: dict) -> str:
        if model == "judge":
            return JUDGE
        if body.get("continue_final_message"):  # an MC continuation of a step prefix
            return f"Step 9: So the final answer is \\boxed{{{self.answer}}}."
        if model == "noanswer":
            return NO_ANSWER
        if model == "big":
            return SOLUTION.format(answer=self.answer).replace("circles.", "circles " + "o" * 2**21 + ".", 1)
        return SOLUTION.format(answer=self.answer)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                except json.JSONDecodeError:
                    body = {}
                auth = self.headers.get("Authorization", "")
                model = str(body.get("model", ""))
                with server._lock:
                    server.seen.append({"model": model, "authorization": auth, "body": body})
                if model == "hang":
                    server._stop.wait()
                    return
                if model in ("echo-auth", "echo-auth-500"):
                    msg = f"Incorrect API key provided: {auth}. You can find your API key at your dashboard."
                    return self._json(401 if model == "echo-auth" else 500, {"error": {"message": msg}})
                if model in ("429", "500"):
                    return self._json(int(model), {"error": {"message": f"status {model} on purpose"}})
                n = int(body.get("n") or 1)
                text = server._reply_text(model, body)
                self._json(200, {"id": "fake", "object": "chat.completion", "created": 0, "model": model,
                                 "choices": [{"index": i, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}} for i in range(n)],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 20 * n,
                                           "total_tokens": 10 + 20 * n}})

            def _json(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                    pass

            def log_message(self, *a):
                pass

        return Handler
