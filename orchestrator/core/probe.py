"""Whether an MLflow tracking server answers, without importing MLflow (whose client retries for minutes)."""

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
