"""Whether an MLflow tracking server or a Ray cluster answers, without importing MLflow or Ray (whose clients
retry for minutes)."""

from __future__ import annotations

import urllib.error
import urllib.request


def unreachable_reason(uri: str, timeout: float) -> str | None:
    """None if the server at the http(s) ``uri`` answers within ``timeout`` seconds, else why it did not."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: a server without /health, or one behind a proxy
    except (TimeoutError, OSError) as err:
        return str(getattr(err, "reason", err))


def ray_unreachable_reason(address: str, timeout: float) -> str | None:
    """None if something listens at a Ray ``address`` (``host:port`` of its GCS, or ``ray://host:port`` of a Ray
    Client server) within ``timeout`` seconds, else why not; ``auto`` and ``local`` are left to Ray. ``ray.init``
    itself retries an address nobody answers for minutes, printing C++ warnings, and ignores SIGTERM meanwhile."""
    import socket

    target = address.removeprefix("ray://")
    if address in ("auto", "local") or "://" in target:
        return None
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return "not host:port (or ray://host:port, auto)"
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except OSError as err:
        return str(err.strerror or err)
