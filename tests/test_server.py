"""`nextoken serve`: the OpenAI API through the official openai client, against a server started on
127.0.0.1 in this process (SmolLM2, fp32). Expected texts come from the Python API on the same model:
the server runs the same sequences, and a seeded sequence's tokens do not depend on what is batched with it."""
import asyncio
import socket
import threading
import time

import pytest

import nextoken

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
from nextoken.server import create_app  # noqa: E402 - needs fastapi, which the test extra installs

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def start_server(model, **kwargs):
    """create_app(model) served by uvicorn on a free 127.0.0.1 port in a thread: (server, base_url)."""
    app = create_app(model, "smollm2", **kwargs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.01)
    return srv, app, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def server(smollm2_path):
    model = nextoken.load(smollm2_path, n_ctx=1024, n_threads=2)
    srv, app, url = start_server(model, max_batch=8, max_queue=8)
    yield model, app, url
    srv.should_exit = True


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[2], api_key="unused", max_retries=0)


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list()] == ["smollm2"]
    import json
    import urllib.request
    with urllib.request.urlopen(server[2].replace("/v1", "/health")) as reply:
        assert json.loads(reply.read()) == {"status": "ok"}


def test_completion_equals_generate(server, client):
    model = server[0]
    r = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=12,
                                  temperature=0.7, seed=3)
    assert r.choices[0].text == model.generate("The capital of France is", max_new_tokens=12, temperature=0.7, seed=3)
    assert r.usage.prompt_tokens == len(model.tokenize("The capital of France is"))
    assert r.choices[0].finish_reason in ("length", "stop")


def test_chat_completion_equals_chat(server, client):
    model = server[0]
    r = client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=16, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == model.chat(MESSAGES, max_new_tokens=16)


def test_streamed_pieces_join_to_the_text(client):
    kw = dict(model="smollm2", prompt="Once upon a time", max_tokens=20, temperature=0.8, seed=11)
    whole = client.completions.create(**kw).choices[0].text
    pieces = [c.choices[0].text for c in client.completions.create(stream=True, **kw)]
    assert "".join(pieces) == whole and len(pieces) > 1
    chat = dict(model="smollm2", messages=MESSAGES, max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**chat).choices[0].message.content
    deltas = [c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **chat)]
    assert "".join(deltas) == whole


def test_concurrent_seeded_requests_equal_their_serial_results(server):
    """16 requests at once (8 run together, 8 wait for room): each equals the same request run alone."""
    aclient = openai.AsyncOpenAI(base_url=server[2], api_key="unused", max_retries=0)
    prompts = [f"Story number {i}:" for i in range(16)]

    async def one(i):
        r = await aclient.completions.create(model="smollm2", prompt=prompts[i], max_tokens=10, temperature=0.9,
                                             top_p=0.9, seed=100 + i)
        return r.choices[0].text

    async def all_at_once():
        return await asyncio.gather(*(one(i) for i in range(16)))
    together = asyncio.run(all_at_once())
    serial = [server[0].generate(p, max_new_tokens=10, temperature=0.9, top_p=0.9, seed=100 + i)
              for i, p in enumerate(prompts)]
    assert together == serial


def test_n_and_logprobs(server, client):
    r = client.completions.create(model="smollm2", prompt="Hello", max_tokens=5, temperature=1.0, seed=5, n=2,
                                  logprobs=3)
    model = server[0]
    assert [c.text for c in r.choices] == [model.generate("Hello", max_new_tokens=5, temperature=1.0, seed=s)
                                           for s in (5, 6)]
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == 5 and all(len(t) <= 3 for t in lp.top_logprobs)
    c = client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=4, temperature=0, logprobs=True,
                                       top_logprobs=2)
    entries = c.choices[0].logprobs.content
    assert len(entries) == 4 and all(len(e.top_logprobs) == 2 for e in entries)
    assert all(e.logprob <= 0 for e in entries)


def test_a_list_of_prompts_is_one_batch(server, client):
    """OpenAI's batch form: choices ordered by prompt, then by n."""
    model = server[0]
    prompts = ["Red", "Green is"]
    r = client.completions.create(model="smollm2", prompt=prompts, max_tokens=5, temperature=0.8, seed=9, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == [model.generate(p, max_new_tokens=5, temperature=0.8, seed=s)
                                           for p in prompts for s in (9, 10)]


def test_a_cancelled_stream_frees_its_sequence(server, client):
    model, app, _ = server
    engine = app.state.server.engine
    stream = client.completions.create(model="smollm2", prompt="Count:", max_tokens=400, stream=True, temperature=0)
    next(iter(stream))
    stream.close()  # the client goes away
    for _ in range(200):
        if not engine._active and not engine._waiting:
            break
        time.sleep(0.05)
    assert not engine._active and not engine._waiting
    assert model.step() == []  # no sequence left behind


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt="x", best_of=2), "best_of"),
    (dict(prompt="x", temperature=-1), "temperature"),
    (dict(prompt="x", max_tokens=5000), "context overflow"),
    (dict(prompt="x", logit_bias={"abc": 1}), "logit_bias"),
    (dict(prompt=[["a"]]), "prompt"),
    (dict(prompt="x", n=100), "n must be"),
    (dict(prompt="x", max_tokens=0), "max_tokens"),
])
def test_bad_requests_get_400_naming_the_problem(client, kwargs, message):
    with pytest.raises(openai.BadRequestError, match=message):
        client.completions.create(model="smollm2", **{"max_tokens": 4, **kwargs})


def test_a_full_server_answers_429(smollm2_path):
    """max_batch 1 and max_queue 0: while one stream runs, the next request is refused with 429."""
    model = nextoken.load(smollm2_path, n_ctx=1024, n_threads=2)
    srv, _, url = start_server(model, max_batch=1, max_queue=0)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    stream = client.completions.create(model="smollm2", prompt="Count:", max_tokens=400, stream=True, temperature=0)
    next(iter(stream))
    with pytest.raises(openai.RateLimitError, match="busy"):
        client.completions.create(model="smollm2", prompt="x", max_tokens=2)
    stream.close()
    srv.should_exit = True
