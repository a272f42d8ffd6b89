"""The Ray autoscaler's node provider for RunPod pods, with warm standby (Ray's ``external`` provider type).

A pool of GPU pods in three states, as the system this product replaces planned it: **stopped**
(``EXITED``: a warm spare; its image and models are on its disk, it costs only storage and starts
in 30–60 s instead of a 3–5 min cold create), **running** as a Ray worker, and **warming** (a new
spare on its first boot, stopped once warm). The Ray autoscaler decides how many workers a node
type needs (pending Serve replicas, ``min_workers``) and which are idle (``idle_timeout_minutes``,
the "stop after 5 idle minutes"); this provider turns its calls into pod actions:

* ``create_node``: start a stopped spare of that node type if there is one, else create a pod; a
  start that fails (RunPod: no free GPU left on the spare's machine) moves on to the next spare,
  then to a create (``max_start_attempts`` tries in all).
* ``terminate_node``: stop the pod (it becomes a spare) while the spares are below ``max_standby``,
  else delete it.
* every ``non_terminated_nodes`` (the autoscaler's poll): keep ``min_standby`` spares per standby
  node type: create and warm the missing ones (stopped ``standby_warm_s`` after their creation),
  delete spares beyond ``max_standby``.

The head is not a pod: it runs where the gateways and Redis run (a CPU host with Serve's proxy),
at ``head_address``, and is reported as the node ``head``. Pods belong to the cluster by name:
``sb-<cluster>-<node type>-<hex>``. Ray's node tags live in a
JSON file on the head (``state_path``), like Ray's local provider keeps its cluster state. Pods
join the cluster themselves (``deploy/ray/pod_entrypoint.sh``), so the cluster config sets
``disable_node_updaters: true`` and nodes are tagged up to date at launch. The API key comes from
``$RUNPOD_API_KEY``. Config: ``deploy/ray/cluster.yaml``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from services.cluster.runpod.api import DEFAULT_URL, EXITED, RUNNING, Pod, RunPodAPI, RunPodError

log = logging.getLogger(__name__)

HEAD_ID = "head"
"""Node id of the head (not a pod)."""
WARMING_TAG = "switchboard-warming-since"
"""Tag of a spare on its first boot: Unix time of its creation."""


class RunPodNodeProvider(NodeProvider):
    """Ray's ``NodeProvider`` over RunPod pods (see the module docstring).

    ``provider_config`` keys: ``head_address`` (the head host's IP), ``head_node_type`` (``head``),
    ``api_url`` (default RunPod's), ``state_path``, ``min_standby`` (0),
    ``max_standby`` (``min_standby``), ``standby_node_type`` + ``standby_node_config`` (the pod
    spec of spares: RunPod's create body), ``standby_warm_s`` (300), ``max_start_attempts`` (3).
    """

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        cfg = provider_config
        self.api = RunPodAPI(base_url=cfg.get("api_url", DEFAULT_URL))
        self.prefix = f"sb-{cluster_name}-"
        self.head_address = str(cfg.get("head_address", ""))
        self.head_tags = {
            TAG_RAY_NODE_KIND: NODE_KIND_HEAD,
            TAG_RAY_USER_NODE_TYPE: str(cfg.get("head_node_type", "head")),
            TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
        }
        self.min_standby = int(cfg.get("min_standby", 0))
        self.max_standby = max(int(cfg.get("max_standby", self.min_standby)), self.min_standby)
        self.standby_type = str(cfg.get("standby_node_type", ""))
        self.standby_config: dict[str, Any] = dict(cfg.get("standby_node_config") or {})
        self.warm_s = float(cfg.get("standby_warm_s", 300))
        self.max_start_attempts = int(cfg.get("max_start_attempts", 3))
        self.state_path = Path(cfg.get("state_path") or Path.home() / ".switchboard" / f"runpod-{cluster_name}.json")
        self._lock = threading.RLock()
        self._tags: dict[str, dict[str, str]] = self._load_tags()
        self._pods: dict[str, Pod] = {}

    # ---- state -------------------------------------------------------------------------
    def _load_tags(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _save_tags(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._tags, indent=1, sort_keys=True))
        tmp.replace(self.state_path)

    def _node_type(self, pod: Pod) -> str:
        """The node type in the pod's name ``sb-<cluster>-<type>-<hex>``."""
        return pod.name.removeprefix(self.prefix).rsplit("-", 1)[0]

    def _refresh(self) -> list[Pod]:
        pods = [p for p in self.api.list_pods() if p.name.startswith(self.prefix) and p.desired_status != "TERMINATED"]
        self._pods = {p.id: p for p in pods}
        for gone in set(self._tags) - set(self._pods):
            del self._tags[gone]
        return pods

    def spares(self, node_type: str) -> list[Pod]:
        """Stopped pods of ``node_type`` (warm spares), from the last refresh."""
        return [p for p in self._pods.values() if p.desired_status == EXITED and self._node_type(p) == node_type]

    # ---- NodeProvider --------------------------------------------------------------------
    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        """The head and the running pods launched as Ray nodes, matching ``tag_filters``; also keeps the spares."""
        with self._lock:
            self._refresh()
            self._keep_standby()
            self._save_tags()
            head = [HEAD_ID] if all(self.head_tags.get(k) == v for k, v in tag_filters.items()) else []
            return head + [
                p.id
                for p in self._pods.values()
                if p.desired_status == RUNNING
                and p.id in self._tags
                and WARMING_TAG not in self._tags[p.id]
                and all(self._tags[p.id].get(k) == v for k, v in tag_filters.items())
            ]

    def is_running(self, node_id: str) -> bool:
        """The pod runs (the head always does)."""
        if node_id == HEAD_ID:
            return True
        pod = self._pods.get(node_id)
        return pod is not None and pod.desired_status == RUNNING

    def is_terminated(self, node_id: str) -> bool:
        """The pod is stopped, gone, or a spare being warmed (not a node)."""
        with self._lock:
            return not self.is_running(node_id) or WARMING_TAG in self._tags.get(node_id, {})

    def node_tags(self, node_id: str) -> dict[str, str]:
        """Ray's tags of the node."""
        if node_id == HEAD_ID:
            return dict(self.head_tags)
        with self._lock:
            return dict(self._tags.get(node_id, {}))

    def set_node_tags(self, node_id: str, tags: dict[str, str]) -> None:
        """Merge ``tags`` into the node's tags."""
        with self._lock:
            self._tags.setdefault(node_id, {}).update(tags)
            self._save_tags()

    def external_ip(self, node_id: str) -> str:
        """The pod's public IP (RunPod ``publicIp``); the head's ``head_address``."""
        if node_id == HEAD_ID:
            return self.head_address
        pod = self._pods.get(node_id) or self.api.get(node_id)
        return pod.public_ip or ""

    def internal_ip(self, node_id: str) -> str:
        """The address the pod's raylet reports (its public IP: pods reach the head over it)."""
        return self.external_ip(node_id)

    def create_node(self, node_config: dict[str, Any], tags: dict[str, str], count: int) -> dict[str, Any]:
        """Launch ``count`` nodes: warm spares first, then new pods (see the module docstring).

        Raises:
            RunPodError: no pod could be started or created within ``max_start_attempts``.
        """
        node_type = tags.get(TAG_RAY_USER_NODE_TYPE, "worker")
        launched: dict[str, Any] = {}
        with self._lock:
            for _ in range(count):
                pod = self._launch(node_type, node_config)
                self._tags[pod.id] = {**tags, TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE}
                self._pods[pod.id] = pod
                launched[pod.id] = {"name": pod.name}
            self._save_tags()
        return launched

    def _launch(self, node_type: str, node_config: dict[str, Any]) -> Pod:
        failed: set[str] = set()
        last: RunPodError | None = None
        for _ in range(self.max_start_attempts):
            spare = next((p for p in self.spares(node_type) if p.id not in failed), None)
            try:
                if spare is not None:
                    self.api.start(spare.id)
                    log.info("started warm spare %s (%s)", spare.id, node_type)
                    spare.desired_status = RUNNING
                    return spare
                pod = self._create(node_type, node_config)
                log.info("created pod %s (%s): no warm spare", pod.id, node_type)
                return pod
            except RunPodError as exc:
                last = exc
                log.warning("pod %s failed to start (%s); trying another", spare.id if spare else "create", exc)
                if spare is not None:
                    failed.add(spare.id)
        raise RunPodError(f"no {node_type} pod started after {self.max_start_attempts} tries: {last}")

    def _create(self, node_type: str, node_config: dict[str, Any]) -> Pod:
        spec = {**node_config, "name": f"{self.prefix}{node_type}-{uuid.uuid4().hex[:8]}"}
        return self.api.create(spec)

    def terminate_node(self, node_id: str) -> dict[str, Any]:
        """Stop the pod (a warm spare) while spares are below ``max_standby``, else delete it."""
        with self._lock:
            pod = self._pods.get(node_id)
            node_type = self._node_type(pod) if pod else self._tags.get(node_id, {}).get(TAG_RAY_USER_NODE_TYPE, "")
            keep = node_type == self.standby_type and len(self.spares(node_type)) < self.max_standby
            try:
                if keep:
                    self.api.stop(node_id)
                    log.info("stopped %s: a warm spare now", node_id)
                else:
                    self.api.delete(node_id)
                    log.info("deleted %s", node_id)
            finally:
                if pod is not None:
                    pod.desired_status = EXITED if keep else "TERMINATED"
                self._tags.pop(node_id, None)
                self._save_tags()
        return {}

    # ---- warm standby ----------------------------------------------------------------------
    def _keep_standby(self) -> None:
        """Warm spares of ``standby_node_type``: stop the warm ones, create the missing, delete extras."""
        if not self.standby_type:
            return
        now = time.time()
        warming = []
        for pid in [pid for pid, tags in self._tags.items() if WARMING_TAG in tags and pid in self._pods]:
            if now - float(self._tags[pid][WARMING_TAG]) < self.warm_s:
                warming.append(pid)
                continue
            try:
                self.api.stop(pid)
            except RunPodError as exc:
                log.warning("could not stop the warmed spare %s: %s", pid, exc)
                warming.append(pid)
                continue
            self._pods[pid].desired_status = EXITED
            del self._tags[pid]
        spares = self.spares(self.standby_type)
        for _ in range(self.min_standby - len(spares) - len(warming)):
            try:
                pod = self._create(self.standby_type, self.standby_config)
            except RunPodError as exc:
                log.warning("could not create a warm spare: %s", exc)
                return
            self._pods[pod.id] = pod
            self._tags[pod.id] = {WARMING_TAG: str(now), TAG_RAY_USER_NODE_TYPE: self.standby_type}
            log.info("creating warm spare %s", pod.id)
        for extra in spares[self.max_standby :]:
            try:
                self.api.delete(extra.id)
                del self._pods[extra.id]
            except RunPodError as exc:
                log.warning("could not delete the extra spare %s: %s", extra.id, exc)
