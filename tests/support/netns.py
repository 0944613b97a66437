"""Hosts as Linux network namespaces for the multi-host tests (issue 20, as root): a bridge
in this namespace, one namespace per host joined to it by a veth pair, ``/etc/hosts`` names,
an ``ssh`` stand-in for ``mpiexec`` (``--prtemca plm_ssh_agent``) that runs the daemon's
command with ``ip netns exec``, and links cut with blackhole routes. Everything created is
removed on exit (namespaces with their processes, links, routes, hosts lines)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOSTS_FILE = Path("/etc/hosts")
AGENT = """#!/bin/sh
# ssh stand-in: [options] HOST COMMAND... -> COMMAND in network namespace HOST
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
host=$1; shift
exec ip netns exec "$host" /bin/sh -c "$*"
"""


def available() -> str | None:
    """None when namespaces can be made here, else why not (the tests skip)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return None


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=check, capture_output=True, timeout=30)


@dataclass
class Hosts:
    """Namespaces ``names`` (hosts) and ``launcher`` (where ``mpiexec`` runs, its TCP
    retransmissions limited by its own ``net.ipv4.tcp_retries2``) at ``addresses`` on the
    bridge; this namespace is ``gateway``."""

    tag: str
    names: list[str]
    launcher: str
    addresses: dict[str, str]
    gateway: str
    subnet: str
    agent: Path
    routes: list[tuple[str | None, str]] = field(default_factory=list)

    def mpiexec_args(self) -> list[str]:
        """What ``mpiexec`` needs to start daemons in the namespaces over the bridge."""
        return [
            "--prtemca", "plm_ssh_agent", str(self.agent),
            "--prtemca", "oob_tcp_if_include", self.subnet,
            "--mca", "btl_tcp_if_include", self.subnet,
        ]  # fmt: skip

    def launch(self, command: list[str]) -> list[str]:
        """``command`` run in the launcher namespace."""
        return ["ip", "netns", "exec", self.launcher, *command]

    def cut(self, host: str) -> None:
        """Cut ``host`` from every other namespace and from this one, both ways."""
        others = [n for n in [*self.names, self.launcher] if n != host]
        for name in others:
            self._blackhole(host, self.addresses[name])
            self._blackhole(name, self.addresses[host])
        self._blackhole(host, self.gateway)
        self._blackhole(None, self.addresses[host])

    def _blackhole(self, namespace: str | None, address: str) -> None:
        _ip("route", "add", "blackhole", f"{address}/32", namespace=namespace)
        self.routes.append((namespace, address))

    def processes(self, host: str) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", host], capture_output=True, text=True, timeout=30
        )
        return [int(p) for p in out.stdout.split()]


@contextmanager
def two_hosts(tmp_path: Path) -> Iterator[Hosts]:
    """Namespaces ``<tag>a`` and ``<tag>b`` on a fresh bridge; all removed afterwards."""
    tag = "sgd" + uuid.uuid4().hex[:5]
    octet = 64 + int(tag[3:5], 16) % 128
    subnet, gateway = f"10.{octet}.0.0/24", f"10.{octet}.0.1"
    names, launcher = [f"{tag}a", f"{tag}b"], f"{tag}l"
    addresses = {n: f"10.{octet}.0.{i + 2}" for i, n in enumerate([*names, launcher])}
    agent = tmp_path / "netns-agent.sh"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    hosts = Hosts(tag, names, launcher, addresses, gateway, subnet, agent)
    marker = f"# streamsgd test {tag}"
    bridge = f"{tag}br"
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, name in enumerate([*names, launcher]):
            outside, inside = f"{tag}v{i}", f"{tag}p{i}"
            _ip("netns", "add", name)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", name)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("addr", "add", f"{addresses[name]}/24", "dev", inside, namespace=name)
            _ip("link", "set", inside, "up", namespace=name)
            _ip("link", "set", "lo", "up", namespace=name)
        subprocess.run(
            ["ip", "netns", "exec", launcher, "sysctl", "-q", "-w", "net.ipv4.tcp_retries2=4"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        with open(HOSTS_FILE, "a", encoding="utf-8") as fh:
            fh.writelines(f"{addresses[n]} {n} {marker}\n" for n in names)
        yield hosts
    finally:
        _cleanup(hosts, bridge, marker)


def _cleanup(hosts: Hosts, bridge: str, marker: str) -> None:
    for name in [*hosts.names, hosts.launcher]:
        for pid in hosts.processes(name):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    for namespace, address in hosts.routes:
        if namespace is None:
            _ip("route", "del", "blackhole", f"{address}/32", check=False)
    for i, name in enumerate([*hosts.names, hosts.launcher]):
        _ip("netns", "del", name, check=False)
        _ip("link", "del", f"{hosts.tag}v{i}", check=False)
    _ip("link", "del", bridge, check=False)
    lines = HOSTS_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    HOSTS_FILE.write_text("".join(line for line in lines if marker not in line))
