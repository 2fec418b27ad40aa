"""certssb.execution.ray_options: the ``ensemble.ray`` options checked with their names, addresses probed
before any training, Ray missing named as the optional extra. No Ray instance is started here."""

from __future__ import annotations

import builtins
import socket
import time

import pytest

ray = pytest.importorskip("ray")

from certssb.core.validation import ConfigError  # noqa: E402
from certssb.execution import ray_options  # noqa: E402

pytestmark = pytest.mark.ray


def test_check_options_defaults_and_errors():
    opts = ray_options.check_options({}, 4)
    assert opts["max_retries"] == 2 and opts["num_cpus_per_shard"] == 1 and opts["num_gpus_per_shard"] == 0
    assert opts["local_backend"] == "sequential" and opts["num_shards"] is None and opts["address"] is None
    assert ray_options.check_options({"num_gpus_per_shard": 1}, 4)["local_backend"] == "vectorised"
    with pytest.raises(ConfigError, match=r"ensemble\.ray\.num_shards.* 5 .*\[1, 4\]"):
        ray_options.check_options({"num_shards": 5}, 4)
    for bad in (
        {"max_retries": -1},
        {"num_cpus_per_shard": 0},
        {"local_backend": "ray"},
        {"address": "ray://"},
        {"address": "host:port"},
        {"nope": 1},
        {"_fail_once_marker": "f"},
    ):
        with pytest.raises(ConfigError, match=r"ensemble\.ray\."):
            ray_options.check_options(bad, 4)


def test_unreachable_address_fails_fast():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"ensemble\.ray\.address.*ray start --head.*null"):
        ray_options.probe_address(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(ConfigError, match=r"ensemble\.ray\.address"):
        ray_options.probe_address("ray://127.0.0.1:1", timeout_s=2)
    assert time.perf_counter() - t0 < 5


def test_reachable_address_passes_probe():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        ray_options.probe_address(f"127.0.0.1:{s.getsockname()[1]}", timeout_s=2)


def test_ray_missing_is_a_config_error(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r'optional extra: pip install -e "\.\[ray\]"'):
        ray_options.check_options({}, 4)
