"""The same FastAPI app as a Ray Serve deployment: each replica loads the models of a
`ServerSpec` and runs its own engine; Ray Serve's HTTP proxy spreads the requests over the
replicas. A team that outgrows one machine adds replicas on a Ray cluster:

    mavis serve --ray --replicas 4 --address ray://head:10001

Ray is an optional extra (`pip install 'mavis-align[distributed]'`), imported only here.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mavis.serving.app import build_app
from mavis.serving.spec import RayOptions, ServerSpec

APP_NAME = "mavis"


class Replica:
    """One Ray Serve replica: builds the app (and so loads the models) when Ray starts it."""

    def __init__(self, spec: ServerSpec, threads: int) -> None:
        self.spec = spec
        self.threads = threads

    def __serve_build_asgi_app__(self) -> Any:
        torch.set_num_threads(self.threads)
        return build_app(self.spec)


def application(spec: ServerSpec, options: RayOptions) -> Any:
    """The Ray Serve application (bound deployment) serving `spec` on `options.replicas`."""
    from ray import serve

    deployment = serve.deployment(serve.ingress()(Replica), name="MavisServer",
                                  num_replicas=options.replicas,
                                  ray_actor_options={"num_cpus": options.cpus_per_replica})
    return deployment.bind(spec, max(1, int(options.cpus_per_replica)))


def start(spec: ServerSpec, options: RayOptions, ray_init: dict[str, Any] | None = None) -> str:
    """Connect to (or start) Ray, start Ray Serve's proxy on host:port and deploy; returns the
    URL. Returns once every replica is up (their models loaded)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        # a local cluster of the server's own logs only errors: its start-up notices are noise
        quiet = {"logging_level": logging.ERROR} if options.address is None else {}
        ray.init(address=options.address, log_to_driver=False, **{**quiet, **(ray_init or {})})
    serve.start(http_options={"host": options.host, "port": options.port},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    serve.run(application(spec, options), name=APP_NAME, route_prefix="/")
    return f"http://{options.host}:{options.port}"


def stop() -> None:
    """Remove the deployment and disconnect from Ray (a local cluster started here ends)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
