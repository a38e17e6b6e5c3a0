"""An OpenAI-compatible HTTP server with continuous batching (`nextoken serve`, `pip install ".[serve]"`).

POST /v1/completions and /v1/chat/completions (both with `stream: true` as server-sent events), GET /v1/models
and /health, on FastAPI. One engine thread steps every admitted request together through the step API: a
request joins the running batch at the next step and leaves when it finishes; a streamed request whose client
goes away is freed at the next step. At most `max_batch` requests run at once; up to `max_queue` more wait,
and beyond that the server answers 429. A seeded request gives the same tokens alone or beside others (the
engine's batches are bitwise invariant).
"""
from __future__ import annotations

import asyncio
import collections
import json
import secrets
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ._core import Error
from .model import MAX_LOGPROBS, Model, TextStream
from .tokenizer import StreamDecoder

# OpenAI request fields we take (beyond the prompt / messages), and the ones we accept and ignore.
COMPLETION_FIELDS = {"max_tokens", "temperature", "top_p", "stop", "seed", "n", "logprobs", "presence_penalty",
                     "frequency_penalty", "logit_bias", "stream"}
CHAT_FIELDS = COMPLETION_FIELDS | {"top_logprobs", "max_completion_tokens"}
IGNORED_FIELDS = {"model", "user", "stream_options"}


class RequestError(Exception):
    """A request the server refuses: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Job:
    """One choice of one request: its sequence, its text and the events sent back to the request."""

    def __init__(self, engine: "Engine", sequence_id: int, stops: list[str], logprobs: int | None,
                 end_ids: set[int], loop: asyncio.AbstractEventLoop):
        self.engine, self.sequence_id, self.logprobs, self.end_ids = engine, sequence_id, logprobs, end_ids
        self.text = TextStream(StreamDecoder(engine.model.tokenizer), stops)
        self.loop, self.events = loop, asyncio.Queue()
        self.cancelled = False
        self.n_tokens = 0

    def send(self, event: dict):
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the request's event loop has closed: nobody is listening
            pass

    def on_token(self, out) -> bool:
        """Handles one StepOutput on the engine thread; True when the job is over."""
        self.n_tokens += 1
        ends = out.finished and out.token in self.end_ids
        piece = "" if ends else self.text.push(out.token)
        entry = None
        if self.logprobs is not None:
            tokenizer = self.engine.model.tokenizer
            entry = (tokenizer.decode([out.token], skip_special_tokens=False), out.logprob,
                     [(tokenizer.decode([i], skip_special_tokens=False), lp) for i, lp in out.top])
        if self.text.stopped:
            self.send({"text": piece, "logprob": entry, "finish_reason": "stop"})
            return True
        if out.finished:
            piece += self.text.flush()
            self.send({"text": piece, "logprob": entry, "finish_reason": "stop" if ends else "length"})
            return True
        if piece or entry:
            self.send({"text": piece, "logprob": entry, "finish_reason": None})
        return False


class Engine:
    """The thread that steps every admitted job together (continuous batching)."""

    def __init__(self, model: Model, max_batch: int = 16, max_queue: int = 64):
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        self._waiting: collections.deque[Job] = collections.deque()
        self._active: dict[int, Job] = {}
        self._reserved = 0  # room promised to requests still adding their sequences
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="nextoken-engine", daemon=True)
        self._thread.start()

    def reserve(self, n: int):
        """Room for n more jobs (running or waiting), held until submit() or release(); else RequestError 429."""
        with self._wake:
            if len(self._active) + len(self._waiting) + self._reserved + n > self.max_batch + self.max_queue:
                raise RequestError(429, f"the server is busy: {len(self._active)} requests run and "
                                        f"{len(self._waiting) + self._reserved} wait (max_batch = {self.max_batch}, "
                                        f"max_queue = {self.max_queue}); retry later")
            self._reserved += n

    def release(self, n: int):
        with self._wake:
            self._reserved -= n

    def submit(self, jobs: list[Job], reserved: int):
        with self._wake:
            self._reserved -= reserved
            self._waiting.extend(jobs)
            self._wake.notify()

    def cancel(self, jobs: list[Job]):
        with self._wake:
            for job in jobs:
                job.cancelled = True
            self._wake.notify()

    def _run(self):
        # The lock guards the queues only; the session's own calls (step, free) run outside it, so the event
        # loop never waits for a step to take or give back a request.
        while True:
            with self._wake:
                while not self._active and not self._waiting:
                    self._wake.wait()
                done = [sid for sid, job in self._active.items() if job.cancelled]  # clients that went away
                for sid in done:
                    del self._active[sid]
                done += [job.sequence_id for job in self._waiting if job.cancelled]
                self._waiting = collections.deque(job for job in self._waiting if not job.cancelled)
                while self._waiting and len(self._active) < self.max_batch:
                    job = self._waiting.popleft()
                    self._active[job.sequence_id] = job
                ids = list(self._active)
            for sid in done:
                self.model.free_sequence(sid)
            if not ids:
                continue
            try:
                outs = self.model.step(ids)  # the GIL is released while the step runs
            except Exception as e:  # noqa: BLE001 - a failed step ends its jobs with the error, not the thread
                with self._wake:
                    failed = [self._active.pop(sid) for sid in ids]
                for job in failed:
                    job.send({"error": str(e)})
                    self.model.free_sequence(job.sequence_id)
                continue
            over = []
            with self._wake:
                for out in outs:
                    job = self._active.get(out.id)
                    if job is None:
                        continue
                    try:
                        ended = job.on_token(out)
                    except Exception as e:  # noqa: BLE001 - e.g. a tokenizer failure: this job ends, the others go on
                        job.send({"error": str(e)})
                        ended = True
                    if ended:
                        del self._active[out.id]
                        over.append(out.id)
            for sid in over:
                self.model.free_sequence(sid)


def _reject_unknown(body: dict, allowed: set[str]):
    unknown = sorted(set(body) - allowed - IGNORED_FIELDS)
    if unknown:
        raise RequestError(400, f"unsupported parameter(s): {', '.join(unknown)}")


def _params(body: dict, n_ctx: int, n_prompt: int, default_max: int | None) -> dict:
    """Our generation parameters from an OpenAI request body."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", default_max))
    if max_tokens is None:
        max_tokens = max(1, n_ctx - n_prompt)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    bias = body.get("logit_bias") or {}
    if not isinstance(bias, dict):
        raise RequestError(400, "logit_bias must be an object {token id: bias}")
    try:
        logit_bias = {int(k): v for k, v in bias.items()}
    except ValueError:
        raise RequestError(400, "logit_bias keys must be token ids") from None
    if any(not isinstance(v, (int, float)) or not -100 <= v <= 100 for v in logit_bias.values()):
        raise RequestError(400, "logit_bias values must be numbers in [-100, 100]")
    return dict(max_new_tokens=max_tokens, temperature=body.get("temperature", 1.0), top_p=body.get("top_p", 1.0),
                presence_penalty=body.get("presence_penalty", 0.0), frequency_penalty=body.get("frequency_penalty", 0.0),
                logit_bias=logit_bias, stop=stops)


class Server:
    """The FastAPI app of one model (see module docstring)."""

    def __init__(self, model: Model, model_name: str, max_batch: int = 16, max_queue: int = 64):
        self.model, self.model_name = model, model_name
        self.engine = Engine(model, max_batch, max_queue)

    async def start(self, body: Any, chat: bool) -> tuple[list[Job], int, bool]:
        """Checks a request, adds its sequences and queues its jobs: (jobs, prompt tokens, stream)."""
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        model = self.model
        if chat:
            _reject_unknown(body, CHAT_FIELDS | {"messages"})
            messages = body.get("messages")
            try:
                prompts = [model.chat_ids(messages)]
            except (Error, TypeError, KeyError) as e:
                raise RequestError(400, f"messages: {e}") from None
            logprobs = body.get("top_logprobs", 0) if body.get("logprobs") else None
        else:
            _reject_unknown(body, COMPLETION_FIELDS | {"prompt"})
            prompt = body.get("prompt")

            def one(p):  # text, or token ids
                if isinstance(p, str):
                    return model.tokenize(p)
                if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
                    return p
                raise RequestError(400, "prompt must be a string, a list of token ids, or a list of those")
            if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
                prompts = [one(p) for p in prompt]  # a batch: choices ordered by prompt, then by n
            else:
                prompts = [one(prompt)]
            logprobs = body.get("logprobs")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)
                                     or not 0 <= logprobs <= MAX_LOGPROBS):
            raise RequestError(400, f"logprobs / top_logprobs must be an integer in [0, {MAX_LOGPROBS}]")
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.engine.max_batch:
            raise RequestError(400, f"n must be an integer in [1, max_batch = {self.engine.max_batch}]")
        params = _params(body, model.n_ctx, max(len(p) for p in prompts), None if chat else 16)
        stops = params.pop("stop")
        if len(stops) > 4 or any(not isinstance(s, str) or not s for s in stops):
            raise RequestError(400, "stop must be a non-empty string or a list of up to 4 of them")
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbits(63)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise RequestError(400, "seed must be a non-negative integer")
        total = n * len(prompts)
        self.engine.reserve(total)
        loop = asyncio.get_running_loop()
        end_ids = set(model.eos_token_ids)
        jobs = []
        try:
            for ids, i in ((ids, i) for ids in prompts for i in range(n)):  # choice i samples with seed + i
                add = loop.run_in_executor(None, lambda ids=ids, i=i: model.add_sequence(
                    ids, seed=seed + i, logprobs=logprobs, **params))
                try:
                    sid = await asyncio.shield(add)
                except asyncio.CancelledError:  # the request went away: free what the add makes
                    add.add_done_callback(lambda f: f.exception() is None and model.free_sequence(f.result()))
                    raise
                jobs.append(Job(self.engine, sid, stops, logprobs, end_ids, loop))
        except BaseException as e:  # nothing of a refused or interrupted request stays
            self.engine.release(total)
            for job in jobs:
                model.free_sequence(job.sequence_id)
            if isinstance(e, Error):
                raise RequestError(400, str(e)) from None
            raise
        self.engine.submit(jobs, total)
        return jobs, sum(len(p) for p in prompts), bool(body.get("stream"))


def _choice_logprobs(entries: list, chat: bool):
    if entries is None:
        return None
    if chat:
        return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()),
                             "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode())} for a, alp in top]}
                            for t, lp, top in entries]}
    return {"tokens": [t for t, _, _ in entries], "token_logprobs": [lp for _, lp, _ in entries],
            "top_logprobs": [dict(top) for _, _, top in entries]}


def create_app(model: Model, model_name: str = "nextoken", max_batch: int = 16, max_queue: int = 64):
    """The FastAPI application serving `model` under the name `model_name`."""
    server = Server(model, model_name, max_batch, max_queue)
    app = FastAPI(title="nextoken", description=__doc__.split("\n")[0])
    app.state.server = server

    @app.exception_handler(RequestError)
    async def refused(_, e: RequestError):
        kind = "rate_limit_error" if e.status == 429 else "invalid_request_error"
        return JSONResponse({"error": {"message": str(e), "type": kind}}, status_code=e.status)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "nextoken"}]}

    async def respond(request: Request, chat: bool):
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise RequestError(400, "the request body is not JSON") from None
        jobs, n_prompt, stream = await server.start(body, chat)
        created, rid = int(time.time()), ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        kind = "chat.completion" if chat else "text_completion"
        if stream:
            return StreamingResponse(_events(server, jobs, chat, rid, created, kind), media_type="text/event-stream")
        texts, entries, reasons = [""] * len(jobs), [None] * len(jobs), [None] * len(jobs)
        try:
            for i, job in enumerate(jobs):
                entries[i] = [] if job.logprobs is not None else None
                while reasons[i] is None:
                    event = await job.events.get()
                    if "error" in event:
                        raise RequestError(500, event["error"])
                    texts[i] += event["text"]
                    if event["logprob"] is not None:
                        entries[i].append(event["logprob"])
                    reasons[i] = event["finish_reason"]
        finally:
            server.engine.cancel([job for job, r in zip(jobs, reasons) if r is None])
        n_new = sum(job.n_tokens for job in jobs)
        choices = []
        for i in range(len(jobs)):
            logprobs = _choice_logprobs(entries[i], chat)
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": texts[i]},
                                "logprobs": logprobs, "finish_reason": reasons[i]})
            else:
                choices.append({"index": i, "text": texts[i], "logprobs": logprobs, "finish_reason": reasons[i]})
        return {"id": rid, "object": kind, "created": created, "model": model_name, "choices": choices,
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new}}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await respond(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await respond(request, chat=True)

    return app


async def _events(server: Server, jobs: list[Job], chat: bool, rid: str, created: int, kind: str):
    """Server-sent events of a streamed request: one chunk per piece of any choice, then [DONE]. A client
    that goes away cancels the generator: its sequences are freed at the next step."""
    kind += ".chunk" if chat else ""
    pending = {asyncio.ensure_future(job.events.get()): i for i, job in enumerate(jobs)}
    try:
        if chat:
            for i in range(len(jobs)):
                yield _sse({"id": rid, "object": kind, "created": created, "model": server.model_name,
                            "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = pending.pop(task)
                event = task.result()
                if "error" in event:
                    yield _sse({"error": {"message": event["error"], "type": "server_error"}})
                    return
                logprobs = _choice_logprobs([event["logprob"]] if event["logprob"] else None, chat)
                choice = {"index": i, "logprobs": logprobs, "finish_reason": event["finish_reason"]}
                choice.update({"delta": {"content": event["text"]}} if chat else {"text": event["text"]})
                yield _sse({"id": rid, "object": kind, "created": created, "model": server.model_name,
                            "choices": [choice]})
                if event["finish_reason"] is None:
                    pending[asyncio.ensure_future(jobs[i].events.get())] = i
        yield "data: [DONE]\n\n"
    finally:
        for task in pending:
            task.cancel()
        server.engine.cancel(jobs)


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def serve(model: Model, model_name: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 16,
          max_queue: int = 64):
    """Runs the server until interrupted."""
    import uvicorn
    uvicorn.run(create_app(model, model_name, max_batch, max_queue), host=host, port=port, log_level="info")
