"""`mavis serve`: the OpenAI-compatible server, where every request picks its own objective
weights (one process, or Ray Serve replicas with --ray)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mavis.checks import SettingsError
from mavis.cli.options import (
    Device,
    ValueDtype,
    checked_dtype,
    option_error,
    parse_assignments,
)
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_MODEL, DEFAULT_VALUE_DTYPE
from mavis.serving.spec import RayOptions, ServerLimits, ServerSpec, api_key_from_environment

DEFAULTS = ServerLimits()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless told "
                                           "otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    model: Annotated[str, typer.Option(help="Reference model: packaged name, path or hub id.")]
    = DEFAULT_MODEL,
    value_model: Annotated[list[str], typer.Option(
        "--value-model", help="NAME=PATH of a value model: a folder or a hub id "
        "org/name[@revision] (repeatable); defaults to the bundled ones of --model.")] = [],  # noqa: B006
    served_name: Annotated[str, typer.Option(
        "--served-name", help="The model name clients pass (default: --model).")] = "",
    max_batch: Annotated[int, typer.Option("--max-batch", help="Rows decoded together at "
                                           "most.")] = DEFAULTS.max_batch,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Rows that may wait for the "
                                           "batch; beyond, requests get 429.")]
    = DEFAULTS.max_queue,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens a request may "
                                            "ask for.")] = DEFAULTS.max_tokens,
    ray: Annotated[bool, typer.Option("--ray", help="Run as Ray Serve replicas (needs the "
                                      "'distributed' extra of mavis-align).")] = False,
    replicas: Annotated[int, typer.Option(help="Ray Serve replicas (with --ray).")] = 1,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join, e.g. ray://head:10001 (with --ray; default: start a local "
             "one).")] = None,
    cpus_per_replica: Annotated[float, typer.Option(
        "--cpus-per-replica", help="CPUs (and torch threads) per Ray replica.")] = 1.0,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level (info "
                                           "shows every request).")] = "warning",
    device: Device = None,
    value_dtype: ValueDtype = DEFAULT_VALUE_DTYPE,
) -> None:
    """Serve the reference model and its value models over an OpenAI-compatible HTTP API, with
    a playground page at / (MAVIS_API_KEY set: every API request needs that bearer key)."""
    from mavis.serving.launch import check_log_level

    if not 0 <= port <= 65535:
        raise MavisError(f"--port {port} is not a port number (0-65535)")
    check_log_level(log_level)
    checked_dtype(value_dtype)
    try:
        options = RayOptions(replicas=replicas, address=address, cpus_per_replica=cpus_per_replica,
                             host=host, port=port)
    except SettingsError as exc:
        raise option_error(exc) from None
    if not (ray and address):  # a cluster's replicas may have devices this machine lacks
        from mavis.models.devices import check_device

        check_device(device, "--device")
    limits = ServerLimits(max_batch=max_batch, max_queue=max_queue, max_tokens=max_tokens,
                          default_max_tokens=min(DEFAULTS.default_max_tokens, max_tokens))
    spec = ServerSpec(model=model, value_model_folders=tuple(_folders(model, value_model)),
                      limits=limits, served_name=served_name, api_key=api_key_from_environment(),
                      device=device, value_dtype=value_dtype)
    if ray:
        _serve_ray(spec, options)
    else:
        _serve_here(spec, host, port, log_level)


def _folders(model: str, value_model: list[str]) -> list[str]:
    """The value-model folders to load: those named, else every bundled one for `model`."""
    from mavis.models.bundled import bundled_value_models, choose_value_models

    explicit = parse_assignments(value_model, "--value-model", "harmless=runs/vm/best")
    if explicit:
        names = list(explicit)
        return choose_value_models(model, explicit, names, names)
    folders = list(dict.fromkeys(str(path) for path in bundled_value_models(model).values()))
    if not folders:
        typer.echo(f"note: no bundled value models for {model}; serving plain top-k sampling "
                   "(add --value-model NAME=PATH)", err=True)
    return folders


def _announce(spec: ServerSpec, url: str, host: str) -> None:
    typer.echo(f"mavis serving {spec.name} on {url} (playground: {url}/, OpenAI base_url: "
               f"{url}/v1)", err=True)
    if spec.api_key:
        typer.echo("every API request needs 'Authorization: Bearer $MAVIS_API_KEY'", err=True)
    elif host not in LOOPBACK:
        typer.echo(f"note: listening on {host} without an API key; anyone who reaches it can "
                   "use it (set MAVIS_API_KEY)", err=True)


def _serve_here(spec: ServerSpec, host: str, port: int, log_level: str) -> None:
    from mavis.serving.app import build_app
    from mavis.serving.launch import listening_socket, serve_forever

    sock = listening_socket(host, port)  # a taken port fails before the models load
    try:
        app = build_app(spec)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    _announce(spec, f"http://{shown}:{bound}", host)
    serve_forever(app, sock, log_level)


def _serve_ray(spec: ServerSpec, options: RayOptions) -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise MavisError("--ray needs Ray Serve: pip install 'mavis-align[distributed]'") from None
    from mavis.serving.ray_serve import start, stop

    typer.echo(f"starting {options.replicas} Ray Serve replica(s)...", err=True)
    try:
        _announce(spec, start(spec, options), options.host)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
