"""nextoken.integrations.ray on a local Ray instance started here (2 CPUs): Ray Data's map_batches with the
Predictor class equals model.generate on the same prompts; the Ray Serve deployment answers the openai client.
Skipped only when ray is not installed (the test extra installs it)."""
import socket
from pathlib import Path

import pytest

import nextoken

ray = pytest.importorskip("ray")
openai = pytest.importorskip("openai")
from nextoken.integrations.ray import Predictor, deployment  # noqa: E402

PROMPTS = [f"Prompt number {i}:" for i in range(6)]


@pytest.fixture(scope="module")
def local_ray():
    # Workers import nextoken from where this process does (an installed wheel or a source tree).
    package_root = str(Path(nextoken.__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": package_root}})
    yield
    ray.shutdown()


def test_map_batches_equals_generate(local_ray, smollm2_path, smollm2):
    ds = ray.data.from_items([{"prompt": p} for p in PROMPTS])
    out = ds.map_batches(Predictor, fn_constructor_kwargs={"model": str(smollm2_path), "load_kwargs": {"n_threads": 1},
                                                           "max_new_tokens": 6, "temperature": 0.8, "seed": 4},
                         concurrency=1, batch_size=3).take_all()
    got = {row["prompt"]: row["generated_text"] for row in out}
    assert [got[p] for p in PROMPTS] == smollm2.generate(PROMPTS, max_new_tokens=6, temperature=0.8, seed=4)


def test_serve_deployment_answers_the_openai_client(local_ray, smollm2_path, smollm2):
    from ray import serve
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(deployment(str(smollm2_path), model_name="smollm2", load_kwargs={"n_threads": 1}), route_prefix="/")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model="smollm2", prompt="Hello", max_tokens=5, temperature=0)
        assert r.choices[0].text == smollm2.generate("Hello", max_new_tokens=5)
    finally:
        serve.shutdown()
