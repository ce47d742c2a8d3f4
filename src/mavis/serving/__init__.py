"""The OpenAI-compatible server (`mavis serve`): one frozen reference model and its value models
serving many clients, each request with its own objective weights.

    spec.py        ServerLimits and ServerSpec: the caps a server enforces, and what it loads
    schemas.py     the request bodies of /v1/completions and /v1/chat/completions (pydantic)
    errors.py      APIError and OpenAI's error shape
    planner.py     a parsed request -> a Job (checked against the loaded models, tokenised)
    jobs.py        Job and the events the engine sends back to the HTTP side
    text.py        what part of a growing answer is safe to stream
    engine.py      the request queue and the background decoding loop (continuous batching)
    scoring.py     rewards of finished answers (`score: true`)
    responses.py   response bodies and stream chunks in OpenAI's format
    metrics.py     Prometheus metrics
    auth.py        the API key check (ASGI middleware)
    app.py         the FastAPI app: routes, the playground page, the engine's lifespan
    ray_serve.py   the same app as a Ray Serve deployment (scale-out)
"""
