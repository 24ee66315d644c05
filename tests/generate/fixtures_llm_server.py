"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests of mcq.generate.

Each passage carries a marker `[[mode-k]]`; the mode picks the reply to generation calls:
good, fenced, think, malformed, invalid, long, dup, dupx, wrongkey, carriage, unsure, r429, r500, slow.
Verification calls (they contain "single letter") are answered with the option marked TRUEFACT,
or "I cannot tell" for `unsure`. Every call is recorded with its Authorization header. Only
/v1/chat/completions exists (404 elsewhere); /redirect/... answers 307 to the path without /redirect.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = (
    "quasar enzyme isotope glacier photon neuron catalyst magma plankton comet allele prism "
    "tectonic meiosis plasma nebula ribosome halogen aquifer proton tundra lichen neutrino "
    "vortex polymer mantle cilia pulsar electrolyte fossil"
).split()
DUP_PROMPT = "Which organelle is known as the powerhouse of eukaryotic cells?"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@dataclass
class Call:
    kind: str  # "generate" or "verify"
    topic: str
    number: int
    auth: str | None
    content: str


@dataclass
class ScriptedLLM:
    """State shared with the handler: the script's knobs and what the server received."""

    dupx_prompt: str = "What is the chemical symbol for gold?"
    slow_s: float = 2.0
    required_key: str | None = None
    calls: list[Call] = field(default_factory=list)
    seen: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def generation_calls(self) -> Counter:
        """Generation requests per (topic, number)."""
        return Counter((c.topic, c.number) for c in self.calls if c.kind == "generate")

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.seen.clear()


def question(topic: str, number: int, answer: str = "A") -> dict:
    """A good question, unique per (topic, number), its TRUEFACT option at `answer`."""
    tag = hashlib.sha1(f"{topic}/{number}".encode()).hexdigest()[:8]
    w = random.Random(tag).sample(WORDS, 4)
    options = [f"TRUEFACT the {w[0]} binds {w[1]}"] + [
        f"the {w[k % 4]} claim number {k} about {tag}" for k in range(1, 5)
    ]
    letters = "ABCDE"
    key = letters.index(answer)
    options[0], options[key] = options[key], options[0]
    prompt = f"Which statement about the {w[0]} and {w[1]} in sample x{tag} [[{topic}]] is correct?"
    return {"prompt": prompt, **dict(zip(letters, options)), "answer": answer}


def generation_reply(mode: str, topic: str, number: int, llm: ScriptedLLM) -> tuple[int, dict, str]:
    """(status, headers, content) for a generation call in `mode`."""
    q = question(topic, number)
    if mode == "fenced":
        return 200, {}, "Here it is:\n```json\n" + json.dumps(q, indent=1) + "\n```"
    if mode == "think":
        return 200, {}, "<think>Let me pick {a fact}.</think>" + json.dumps(q)
    if mode == "malformed":
        return 200, {}, 'Sure! {"prompt": "What is'
    if mode == "invalid":
        return 200, {}, json.dumps({**q, "C": q["B"]})
    if mode == "long":
        return 200, {}, json.dumps({**q, "prompt": "Why " + "very " * 400 + "long?"})
    if mode == "dup":
        return 200, {}, json.dumps({**q, "prompt": DUP_PROMPT})
    if mode == "dupx":
        return 200, {}, json.dumps({**q, "prompt": llm.dupx_prompt.upper()})
    if mode == "wrongkey":
        return 200, {}, json.dumps({**q, "answer": "C"})
    if mode == "carriage":  # a lone carriage return inside the prompt
        return 200, {}, json.dumps({**q, "prompt": q["prompt"].replace(" is correct?", "\ris correct?")})
    first = llm.seen[("generate", topic, number)] == 1
    if mode == "r429" and first:
        return 429, {"Retry-After": "0"}, ""
    if mode == "r500" and first:
        return 500, {}, ""
    if mode == "slow" and first:
        time.sleep(llm.slow_s)
    return 200, {}, json.dumps(q)


def verify_reply(mode: str, content: str) -> str:
    if mode == "unsure":
        return "I cannot tell."
    match = re.search(r"^([A-E])\) TRUEFACT", content, re.M)
    return match.group(1) if match else "?"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        assert isinstance(self.server, _Server)
        llm: ScriptedLLM = self.server.llm
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        auth = self.headers.get("Authorization")
        if self.path.startswith("/redirect/"):
            with llm.lock:
                llm.calls.append(Call("redirect", "", 0, auth, ""))
            return self._send(307, {"Location": self.path.removeprefix("/redirect")}, {})
        if self.path != "/v1/chat/completions":
            return self._send(404, {}, {"error": f"no route {self.path}"})
        content = body["messages"][-1]["content"]
        kind = "verify" if "single letter" in content else "generate"
        marker = re.search(r"\[\[(\w+)-(\w+)\]\]", content)
        topic = f"{marker.group(1)}-{marker.group(2)}" if marker else "free"
        mode = marker.group(1) if marker else "good"
        number = int(m.group(1)) if (m := re.search(r"question (\d+) of", content, re.I)) and kind == "generate" else 0
        with llm.lock:
            llm.calls.append(Call(kind, topic, number, auth, content))
            llm.seen[(kind, topic, number)] += 1
        if llm.required_key and auth != f"Bearer {llm.required_key}":
            # A careless server that echoes what it got: the client must redact it.
            return self._send(401, {}, {"error": f"invalid key in header: {auth}"})
        if kind == "verify":
            return self._send(200, {}, _completion(verify_reply(mode, content)))
        status, headers, text = generation_reply(mode, topic, number, llm)
        self._send(status, headers, _completion(text) if status == 200 else {"error": f"HTTP {status}"})

    def _send(self, status: int, headers: dict, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


def _completion(text: str) -> dict:
    return {
        "id": "cmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": USAGE,
    }


class _Server(ThreadingHTTPServer):
    llm: ScriptedLLM
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # a client that timed out closed its socket; nothing to report


def start_server() -> tuple[ScriptedLLM, _Server]:
    """Start a scripted server on 127.0.0.1 (free port) in a daemon thread."""
    llm = ScriptedLLM()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.llm = llm
    llm.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    # a short poll interval: shutdown() waits for the loop to notice (0.5 s a test at the default)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return llm, server
