"""Options of the ``ray`` backend (the ``ensemble.ray`` parameter block) and connecting to Ray: checking the
options, parsing and probing a cluster address (a TCP connection, so that an unreachable cluster fails in
seconds instead of hanging in ``ray.init``), ``ray.init`` / reuse, and checking that some node can run a
shard. The shards themselves are in :mod:`certssb.execution.ray`.

Ray is an optional extra (``pip install -e ".[ray]"``); it is imported lazily (:func:`import_ray`).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from certssb.core.validation import ConfigError, choice, fail, number, positive

log = logging.getLogger(__name__)

LOCAL_BACKENDS = ("sequential", "vectorised")
DEFAULT_GCS_PORT = 6379  # ``ray start --head`` default
DEFAULT_CLIENT_PORT = 10001  # Ray client server default (``ray://``)
PROBE_TIMEOUT_S = 3.0

#: ``ensemble.ray`` keys and their defaults. ``local_backend`` depends on ``num_gpus_per_shard``.
DEFAULTS: dict[str, Any] = {
    "address": None,
    "num_shards": None,
    "max_retries": 2,
    "num_cpus_per_shard": 1,
    "num_gpus_per_shard": 0,
    "local_backend": None,
    "num_cpus": None,
}

_INSTALL_HINT = "backend 'ray' needs the optional extra: pip install -e \".[ray]\""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`ConfigError` with the install hint when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(_INSTALL_HINT) from exc
    return ray


# ---------------------------------------------------------------------------------------------------
# Options


def split_address(address: str) -> tuple[str, int]:
    """``[ray://]host[:port]`` -> (host, port); the port defaults to Ray's (6379, or 10001 for ray://)."""
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    default = DEFAULT_CLIENT_PORT if address.startswith("ray://") else DEFAULT_GCS_PORT
    host, port = rest, default
    if rest.startswith("["):  # [ipv6]:port
        end = rest.find("]")
        if end < 0:
            raise ValueError(address)
        host, tail = rest[1:end], rest[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise ValueError(address)
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = int(p)
    elif ":" in rest:
        raise ValueError(address)
    if not host or "/" in host or not 0 < port < 65536:
        raise ValueError(address)
    return host, port


def check_address(address: Any) -> Any:
    """``address`` if it is null, ``"auto"`` or a ``[ray://]host[:port]`` string; else
    :class:`ConfigError`."""
    allowed = (
        'null (a local Ray instance), "auto" (the cluster started on this machine), '
        '"ray://host:port" (Ray client) or "host:port" (the head node\'s GCS)'
    )
    if address is None or address == "auto":
        return address
    if not isinstance(address, str):
        fail("ensemble.ray.address", address, "must be " + allowed)
    try:
        split_address(address)
    except ValueError:
        fail("ensemble.ray.address", address, "must be " + allowed)
    return address


def check_options(options: dict[str, Any] | None, num_models: int) -> dict[str, Any]:
    """Validate the ``ensemble.ray`` parameter block and return it with defaults filled in.

    - ``address``: ``None`` (start a local instance), ``"auto"``, ``"ray://host:port"`` or ``"host:port"``;
    - ``num_shards``: ``None`` (one shard per chunk) or an int in ``[1, num_models]``;
    - ``max_retries``: int >= 0 (2); ``num_cpus_per_shard`` > 0 (1); ``num_gpus_per_shard`` >= 0 (0);
    - ``local_backend``: ``sequential`` | ``vectorised`` (``vectorised`` when shards get GPUs, else
      ``sequential``);
    - ``num_cpus``: the size of a local instance (int >= 1, or ``None`` for all cores).

    Raises :class:`ConfigError` for a bad value, an unknown key, or when Ray is not installed.
    """
    if options is None:
        options = {}
    if not isinstance(options, dict):
        fail("ensemble.ray", options, "must be a mapping of " + ", ".join(DEFAULTS))
    unknown = [k for k in options if k not in DEFAULTS]
    if unknown:
        fail(
            f"ensemble.ray.{unknown[0]}",
            options[unknown[0]],
            "unknown option; allowed options are " + ", ".join(DEFAULTS),
        )
    opts = {**DEFAULTS, **options}
    check_address(opts["address"])
    if opts["num_shards"] is not None:
        number("ensemble.ray.num_shards", opts["num_shards"], low=1, high=num_models, integer=True)
    number("ensemble.ray.max_retries", opts["max_retries"], low=0, integer=True)
    positive("ensemble.ray.num_cpus_per_shard", opts["num_cpus_per_shard"])
    number("ensemble.ray.num_gpus_per_shard", opts["num_gpus_per_shard"], low=0)
    if opts["local_backend"] is None:
        opts["local_backend"] = "vectorised" if opts["num_gpus_per_shard"] > 0 else "sequential"
    choice("ensemble.ray.local_backend", opts["local_backend"], LOCAL_BACKENDS)
    if opts["num_cpus"] is not None:
        positive("ensemble.ray.num_cpus", opts["num_cpus"], integer=True)
        if opts["address"] is None and opts["num_cpus_per_shard"] > opts["num_cpus"]:
            fail(
                "ensemble.ray.num_cpus_per_shard",
                opts["num_cpus_per_shard"],
                f"must be <= ensemble.ray.num_cpus ({opts['num_cpus']}), the size of the local instance",
            )
    import_ray()
    return opts


# ---------------------------------------------------------------------------------------------------
# Connecting


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to a ``[ray://]host[:port]`` address within ``timeout_s``.

    Raises :class:`ConfigError` naming ``ensemble.ray.address`` when nothing answers, so that an unreachable
    cluster fails in seconds instead of hanging in ``ray.init``.
    """
    check_address(address)
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        fail(
            "ensemble.ray.address",
            address,
            f"nothing answers at {host}:{port} ({exc.__class__.__name__}: {exc}); start the cluster with "
            '`ray start --head` (then use "auto" or "host:6379"), or use null for a local Ray instance',
        )


def connect(opts: dict[str, Any]) -> bool:
    """Make sure this process is connected to Ray; return True if *this call* ran ``ray.init``.

    An already initialised Ray (a notebook, the tests, a caller that manages Ray) is reused as is.
    """
    ray = import_ray()
    address = opts["address"]
    if ray.is_initialized():
        if address is not None:
            log.info("Ray is already initialised; reusing it (ensemble.ray.address=%r not used)", address)
        return False
    if address is None:
        log.info("starting a local Ray instance (num_cpus=%s)", opts["num_cpus"])
        ray.init(num_cpus=opts["num_cpus"], include_dashboard=False)
        return True
    if address != "auto":
        probe_address(address)
    try:
        ray.init(address=address)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        fail(
            "ensemble.ray.address",
            address,
            f"could not connect ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "start the cluster with `ray start --head`, or use null for a local Ray instance",
        )
    return True


def check_resources(ray: Any, opts: dict[str, Any], started_local: bool) -> None:
    """A task asking for more CPUs/GPUs than any node has never runs: fail (local) or warn (cluster)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
    for key, res in (("num_cpus_per_shard", "CPU"), ("num_gpus_per_shard", "GPU")):
        need = opts[key]
        have = max((float(n.get(res, 0)) for n in nodes), default=0.0)
        if need > have:
            msg = (
                f"parameter 'ensemble.ray.{key}' = {need!r} is invalid: no Ray node has that many {res}s "
                f"(largest: {have:g}); shards asking for it would never be scheduled"
            )
            if started_local:
                raise ConfigError(msg)
            log.warning("%s (an autoscaling cluster may still add such a node)", msg)
