"""A local multi-node Ray cluster with the services on Serve: one command, for tests and trying it out.

``ray.cluster_utils.Cluster`` starts a head and worker "nodes" as separate raylets on this machine
(each with its own CPUs, object store and Serve replicas), the way Ray tests multi-node behaviour
(docs.ray.io/en/latest/ray-contribute/testing-tips.html). :class:`LocalCluster` then starts Serve
(one HTTP proxy, on the head) and deploys the applications of a Serve config file
(``deploy/ray/serve.local.yaml``: STT and TTS on CPU). Memory stays modest: small object stores,
no dashboard, explicit CPUs per node.

    python -m services.cluster.local --nodes 3 --port 8010     # Ctrl-C stops it
    make ray-local

A gateway then uses ``GATEWAY_STT__URL=http://127.0.0.1:8010/stt`` and
``GATEWAY_TTS__URL=http://127.0.0.1:8010/tts``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from shared.config import PROJECT_ROOT

log = logging.getLogger("cluster")

LOCAL_CONFIG = PROJECT_ROOT / "deploy" / "ray" / "serve.local.yaml"
"""The Serve config the local cluster deploys by default (STT and TTS on CPU)."""


def load_config(path: Path) -> list[dict[str, Any]]:
    """The ``applications`` of a Serve config file, validated by Serve's own schema.

    Raises:
        pydantic.ValidationError: not a valid Serve config.
    """
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(raw)
    return list(raw["applications"])


def build(app: dict[str, Any]) -> Any:
    """The Serve ``Application`` of one config entry: its ``import_path`` builder called with its ``args``."""
    from ray._common.utils import import_attr

    target = import_attr(app["import_path"])
    return target(app.get("args") or {}) if callable(target) and not hasattr(target, "bind") else target


class LocalCluster:
    """A head node and ``nodes - 1`` worker nodes on this machine, with Serve's proxy on the head.

    Args:
        nodes: raylets in all (the head included).
        cpus_per_node: logical CPUs of each worker node (the head gets one: Serve's controller and proxy).
        object_store_mb: object store per node, MiB.
        port: the Serve HTTP proxy's port on 127.0.0.1.
    """

    def __init__(self, nodes: int = 3, cpus_per_node: int = 2, object_store_mb: int = 80, port: int = 8010) -> None:
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_mb << 20
        self.port = port
        self.cluster: Any = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the Serve proxy."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalCluster:
        """Start the nodes, connect this process and start Serve.

        Raises:
            RuntimeError: a node did not come up.
        """
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        store = self.object_store_bytes
        head = {"num_cpus": 1, "object_store_memory": store, "include_dashboard": False}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(self.nodes - 1):
            self.cluster.add_node(num_cpus=self.cpus_per_node, object_store_memory=store)
        self.cluster.wait_for_nodes()
        pythonpath = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address=self.cluster.address, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
        serve.start(http_options={"host": "127.0.0.1", "port": self.port}, proxy_location="HeadOnly")
        log.info("Ray: %d nodes, %s; Serve on %s", self.nodes, ray.cluster_resources(), self.url)
        return self

    def deploy(self, applications: list[dict[str, Any]], timeout_s: float = 300.0) -> None:
        """Deploy (or update) Serve applications (config-file entries) and wait until all run.

        Raises:
            TimeoutError: not all running within ``timeout_s``.
        """
        from ray import serve

        for app in applications:
            serve.run(build(app), name=app["name"], route_prefix=app.get("route_prefix", "/"), blocking=False)
        self.wait_running([a["name"] for a in applications], timeout_s)

    def wait_running(self, names: list[str], timeout_s: float = 300.0) -> None:
        """Wait until the applications ``names`` are ``RUNNING``.

        Raises:
            TimeoutError: one is not running within ``timeout_s`` (its status and message in the error).
        """
        from ray import serve

        deadline = time.monotonic() + timeout_s
        while True:
            apps = serve.status().applications
            states = {n: apps[n].status if n in apps else "MISSING" for n in names}
            if all(s == "RUNNING" for s in states.values()):
                return
            if time.monotonic() > deadline:
                messages = {n: apps[n].message for n in names if n in apps}
                raise TimeoutError(f"Serve applications not running after {timeout_s}s: {states} {messages}")
            time.sleep(0.25)

    def shutdown(self) -> None:
        """Stop Serve, disconnect and stop every node."""
        import ray
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if self.cluster is not None:
                self.cluster.shutdown()
                self.cluster = None


def main(argv: list[str] | None = None) -> int:
    """``python -m services.cluster.local``: run the cluster with the config's applications until Ctrl-C."""
    from shared.logs import setup_logging

    setup_logging("cluster")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="raylets, the head included (default 3)")
    parser.add_argument("--cpus-per-node", type=int, default=2, help="logical CPUs per worker node")
    parser.add_argument("--port", type=int, default=8010, help="Serve HTTP port on 127.0.0.1")
    parser.add_argument("--config", type=Path, default=LOCAL_CONFIG, help="Serve config file")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.nodes, args.cpus_per_node, port=args.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        apps = load_config(args.config)
        cluster.deploy(apps)
        for app in apps:
            log.info("%s: %s%s", app["name"], cluster.url, app.get("route_prefix", "/"))
        log.info("running; Ctrl-C stops the cluster")
        stop.wait()
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
