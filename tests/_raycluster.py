"""A real multi-process Ray cluster on this machine: a head and more nodes, each its own
``ray start --block`` process, that a test may kill one by one.

Every node runs in its own process group (killing the group is killing the node: ``ray start
--block`` and the raylet, GCS and agents it started), in its own temp folder under one private
root, on free ports for everything it opens, so nothing here finds or joins another Ray on the
machine, and ``ray stop`` is never needed. The processes carry the root as ``RAY_TMPDIR``,
the mark :func:`workers._reaper.reap` sweeps by on close (Ray's worker processes live in
process groups of their own). :attr:`RayCluster.env` is the environment a driver joining the
cluster needs: the cluster's auth token.

The GCS declares a killed node dead after :data:`HEALTH_CHECK` (Ray's defaults: 5 failed
checks 3 s apart, after a 5 s grace, at least 15 s).

Example:
    >>> cluster, (head, node) = RayCluster.create([(2, 1), (2, 1)])  # doctest: +SKIP
    >>> ids = cluster.wait_alive(2, timeout_s=90)  # doctest: +SKIP
    >>> cluster.kill(node)  # doctest: +SKIP
    >>> cluster.wait_alive(1, timeout_s=30)  # doctest: +SKIP
    >>> cluster.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workers._reaper import reap

__all__ = ["HEALTH_CHECK", "RayCluster", "RayNode"]

# Ray's RayConfig names, read by every Ray process from RAY_<name>: a node whose raylet stops
# answering is dead after 3 failed checks 0.5 s apart (the GCS then fails its actors)
HEALTH_CHECK = {
    "health_check_initial_delay_ms": 500,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
# what ``ray start`` opens besides the GCS; each gets a port found free (two nodes on one
# machine would otherwise both take the fixed defaults, e.g. the agent's 52365)
_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)
_RAY = str(Path(sys.executable).with_name("ray"))
# asks the GCS (no driver: ray.init would register a job) until COUNT nodes are alive, and
# prints their ids, the head's first
_PROBE = """
import sys, time
from ray._raylet import GcsClient
address, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
alive = None
while time.monotonic() < deadline:
    try:
        nodes = GcsClient(address=address).get_all_node_info(timeout=5)
        alive = [  # ALIVE, the head first
            key.hex()
            for key, node in sorted(nodes.items(), key=lambda item: not item[1].is_head_node)
            if node.state == 0
        ]
    except Exception as exc:
        alive = repr(exc)
    if isinstance(alive, list) and len(alive) == count:
        print(" ".join(alive))
        sys.exit(0)
    time.sleep(0.2)
print(f"last seen: {alive}")
sys.exit(1)
"""


@dataclass
class RayNode:
    """One ``ray start --block`` process and its process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """Whether ``ray start`` still runs."""
        return self.process.poll() is None


class RayCluster:
    """A head and its nodes on this machine (see :meth:`create`)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ps-raycl-", dir="/tmp"))  # short: socket paths
        token = secrets.token_hex(16)
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        # every port the cluster is given, all distinct: a port free now is free until its
        # process binds it, and the kernel may hand the same one out again before then
        self._ports: set[int] = set()
        self.address = f"127.0.0.1:{_free_port(self._ports)}"
        self.nodes: list[RayNode] = []

    @classmethod
    def create(cls, nodes: list[tuple[int, int]]) -> tuple[RayCluster, list[RayNode]]:
        """Start a cluster of ``nodes`` (``(num_cpus, num_gpus)`` each, the head first), all at
        once; the cluster and its nodes in that order. They come up in the background (Ray on
        a loaded 2-core machine takes 10-25 s): :meth:`wait_alive` waits for them.

        The other nodes start beside the head rather than after it: ``ray start --address``
        waits for the head's GCS.
        """
        cluster = cls()
        try:
            port = cluster.address.rpartition(":")[2]
            for i, (num_cpus, num_gpus) in enumerate(nodes):
                args = ["--address", cluster.address]
                if i == 0:
                    args = ["--head", "--port", port, "--include-dashboard=false"]
                cluster._start(f"node{i}", args, num_cpus=num_cpus, num_gpus=num_gpus)
        except BaseException:
            cluster.close()
            raise
        return cluster, list(cluster.nodes)

    def kill(self, node: RayNode) -> None:
        """SIGKILL the node's whole process group, as a machine that loses power."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=10)

    def wait_alive(self, count: int, *, timeout_s: float) -> list[str]:
        """Wait until the GCS counts exactly ``count`` nodes alive (``RuntimeError`` if not
        within ``timeout_s``); their node ids (as ``ray.get_runtime_context().get_node_id()``
        gives them), the head's first. One probe process asks every 0.2 s: importing Ray
        alone takes a loaded machine 2 s."""
        try:
            done = subprocess.run(
                [sys.executable, "-c", _PROBE, self.address, str(count), str(timeout_s)],
                env=self._environ(),
                capture_output=True,
                text=True,
                timeout=timeout_s + 30,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"the GCS at {self.address} did not answer:\n{self.logs()}") from exc
        if done.returncode != 0:
            raise RuntimeError(
                f"{count} alive nodes expected at {self.address}: {done.stdout.strip()}"
                f"{done.stderr[-1500:]}\n{self.logs()}"
            )
        return done.stdout.split()

    def logs(self) -> str:
        """The tail of every node's ``ray start`` output, for a failure's message."""
        return "\n".join(
            f"--- {node.name}:\n{node.log.read_text(errors='replace')[-1500:]}"
            for node in self.nodes
            if node.log.exists()
        )

    def close(self) -> None:
        """Kill every node and whatever its processes left, then remove the root."""
        mark = f"RAY_TMPDIR={self.root}".encode()
        if Path("/proc").is_dir():
            # first, while the raylets live: their agents, which lack the mark, are found as
            # their children; once a raylet is killed they are nobody's
            reap(mark, patience_s=15)
        for node in self.nodes:
            if node.alive():
                # one node that will not die must not leave the others running
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def _environ(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "RAY_TMPDIR": str(self.root),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            **{f"RAY_{key}": str(value) for key, value in HEALTH_CHECK.items()},
        }

    def _start(self, name: str, args: list[str], *, num_cpus: int, num_gpus: int) -> RayNode:
        temp_dir = self.root / name
        temp_dir.mkdir()
        ports = [arg for flag in _PORT_FLAGS for arg in (flag, str(_free_port(self._ports)))]
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    _RAY,
                    "start",
                    *args,
                    "--num-cpus",
                    str(num_cpus),
                    "--num-gpus",
                    str(num_gpus),
                    "--temp-dir",
                    str(temp_dir),
                    *ports,
                    # random worker ports: the default range is every other Ray's too
                    "--min-worker-port",
                    "0",
                    "--max-worker-port",
                    "0",
                    "--disable-usage-stats",
                    "--block",
                ],
                env=self._environ(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = RayNode(name, process, log)
        self.nodes.append(node)
        return node


def _free_port(taken: set[int]) -> int:
    """A port free now and not in ``taken``, which it joins."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


if __name__ == "__main__":  # a quick look by hand: python tests/_raycluster.py
    started = time.monotonic()
    cluster, (_, second) = RayCluster.create([(1, 1), (1, 1)])
    try:
        cluster.wait_alive(2, timeout_s=90)
        print(json.dumps({"up_s": round(time.monotonic() - started, 1)}))
        killed = time.monotonic()
        cluster.kill(second)
        cluster.wait_alive(1, timeout_s=30)
        print(json.dumps({"dead_after_s": round(time.monotonic() - killed, 1)}))
    finally:
        cluster.close()
