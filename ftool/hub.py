"""The Hugging Face hub, asked once per process whether it can be reached at all.

When a file is not in its cache, huggingface_hub retries a failed request for about half a minute,
logging every try, before it gives up; transformers and datasets ask for several files. On a machine
without internet that is a minute of warnings before ftool's one-line error. One quick request
tells the cases apart: if the hub cannot be reached, ftool puts the Hugging Face libraries in their
offline mode (what HF_HUB_OFFLINE=1 does), so they read their cache, or fail, at once.
"""

from __future__ import annotations

import os

# Long enough for a slow but working connection; huggingface_hub's own metadata timeout is 10 s.
_PROBE_TIMEOUT_S = 5.0

_offline: bool | None = None  # found out once per process


def offline() -> bool:
    """Whether the hub is out of reach (HF_HUB_OFFLINE set, or one quick request fails); then the
    Hugging Face libraries use only their cache. Call before they look something up on the hub."""
    global _offline
    import huggingface_hub.constants as hub_constants

    if _offline is None:
        _offline = hub_constants.is_offline_mode() or not _reachable(hub_constants.ENDPOINT)
        if _offline:
            _go_offline(hub_constants)
    return _offline


def _go_offline(hub_constants) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # for processes started from this one
    # The libraries read the variable when they are imported, which has happened by now.
    hub_constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config
    except ImportError:
        return
    datasets.config.HF_HUB_OFFLINE = True


def _reachable(endpoint: str) -> bool:
    """Whether the hub answers at all (any HTTP status), through huggingface_hub's own client and its
    proxy settings."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=_PROBE_TIMEOUT_S)
    except Exception:  # no route, no DNS, refused, timed out, TLS: the transport's errors vary
        return False
    return True
