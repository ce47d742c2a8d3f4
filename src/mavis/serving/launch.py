"""Running an app with uvicorn: in the foreground (`mavis serve`), or in a background thread on
a loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import uvicorn

from mavis.errors import MavisError

STARTUP_TIMEOUT_S = 120.0


def check_log_level(level: str) -> str:
    """`level` if uvicorn knows it (critical, error, warning, info, debug, trace)."""
    if level not in uvicorn.config.LOG_LEVELS:
        raise MavisError(f"--log-level {level!r} is not a log level; choose one of "
                         f"{', '.join(uvicorn.config.LOG_LEVELS)}")
    return level


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: any free one), or a clear error when taken.

    It listens at once, before the models load and uvicorn starts: a client that connects as
    soon as the address is announced waits in the backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MavisError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                         "--port or --host") from None
    except (UnicodeError, TypeError, ValueError, OverflowError) as exc:  # not a host name
        sock.close()
        raise MavisError(f"--host {host!r} is not an address to listen on ({exc}); give an "
                         "address like 127.0.0.1, ::1 or 0.0.0.0") from None
    sock.listen(2048)  # uvicorn's default backlog
    sock.set_inheritable(True)
    return sock


def serve_forever(app: Any, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve `app` on `sock` until interrupted: Ctrl-C (or SIGTERM) finishes the open
    responses for up to 5 seconds, stops the engine and returns."""
    config = uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"),
                            timeout_graceful_shutdown=5)
    # uvicorn re-raises the signal it handled once it has stopped: that is the normal end
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


class BackgroundServer:
    """`app` served by uvicorn in a thread of this process on a free port of `host`:

        with BackgroundServer(app) as server:
            httpx.get(server.url + "/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        self.sock = listening_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="mavis-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise MavisError("the server did not start (see its log above)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
