"""Ray for scale-out (`pip install "nextoken[ray]"`): Ray Data for offline batches, Ray Serve for online serving.

Offline, one model per actor, the prompts of each batch generated together::

    ds = ray.data.from_items([{"prompt": p} for p in prompts])
    out = ds.map_batches(Predictor, fn_constructor_kwargs={"model": "smollm2", "max_new_tokens": 64},
                         concurrency=4, batch_size=16)

Online, the `nextoken serve` application on Ray Serve (one model per replica)::

    serve.run(deployment("smollm2", num_replicas=2), route_prefix="/")
"""
from __future__ import annotations

import numpy as np

from ..model import load


class Predictor:
    """A callable class for ray.data.Dataset.map_batches: takes a batch {"prompt": [...]} and returns it with a
    "generated_text" column. model: what nextoken.load() takes; load_kwargs: its other arguments (n_ctx,
    n_threads, compute_type, ...); generate_kwargs: model.generate()'s (max_new_tokens, temperature, seed, ...)."""

    def __init__(self, model: str = "smollm2", load_kwargs: dict | None = None, **generate_kwargs):
        self.model = load(model, **(load_kwargs or {}))
        self.generate_kwargs = generate_kwargs

    def __call__(self, batch: dict) -> dict:
        prompts = [str(p) for p in batch["prompt"]]
        batch["generated_text"] = np.array(self.model.generate(prompts, **self.generate_kwargs), dtype=object)
        return batch


def deployment(model: str = "smollm2", model_name: str | None = None, max_batch: int = 16, max_queue: int = 64,
               load_kwargs: dict | None = None, **deployment_options):
    """A Ray Serve application serving `model` with `nextoken serve`'s OpenAI API (see nextoken.server); bind
    it with serve.run(deployment(...)). deployment_options go to serve.deployment (num_replicas,
    ray_actor_options, ...)."""
    from ray import serve

    from ..server import create_app

    @serve.deployment(**deployment_options)
    @serve.ingress()
    class NextokenServer:
        def __init__(self):
            self.model = load(model, **(load_kwargs or {}))

        def __serve_build_asgi_app__(self):
            return create_app(self.model, model_name or str(model), max_batch, max_queue)

    return NextokenServer.bind()
