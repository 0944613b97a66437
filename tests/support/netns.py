"""Hosts as Linux network namespaces for the multi-host tests (issue 20, as root): a bridge
in this namespace (a "LAN", whose address a test broker can listen on), one namespace per
host joined to it by a veth pair, ``/etc/hosts`` names, an ``ssh`` stand-in for ``mpiexec``
(``--prtemca plm_ssh_agent``) that runs the daemon's command with ``ip netns exec`` (and, for
host-local disks, bind-mounts a per-host directory over a shared path in that command's own
mount namespace), and links cut with blackhole routes. Everything created is removed on exit
(namespaces with their processes, links, routes, hosts lines), a failing test included."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOSTS_FILE = Path("/etc/hosts")
AGENT = """#!/bin/sh
# ssh stand-in: [options] HOST COMMAND... -> COMMAND in network namespace HOST.
# `ip netns exec` gives the command a mount namespace of its own (mounts do not propagate
# back), where this script bind-mounts the lines "HOST SOURCE TARGET" of $0.mounts: a
# directory that is each host's own disk.
if [ "$1" = "--inside" ]; then
  host=$2; shift 2
  if [ -f "$0.mounts" ]; then
    while read -r h src dst; do
      if [ "$h" = "$host" ]; then mount --bind "$src" "$dst" || exit 1; fi
    done < "$0.mounts"
  fi
  exec /bin/sh -c "$*"
fi
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
host=$1; shift
exec ip netns exec "$host" "$0" --inside "$host" "$@"
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


def _wait_links_gone(tag: str, timeout_seconds: float = 30.0) -> None:
    """Wait until no link named after ``tag`` is left: the kernel removes a namespace's veth
    ends after ``ip netns del`` returns, and an ``mpiexec`` started meanwhile by the next test
    enumerates the interfaces and can fail on one that vanishes ("The PMIx server's listener
    thread failed to start", exit 213, seen in loaded runs of tests/distributed)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        links = subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30
        ).stdout
        if tag not in links:
            return
        time.sleep(0.1)  # polling the kernel's link table, not standing in for an event


@dataclass
class Lan:
    """A bridge in this namespace at ``gateway`` on ``subnet`` (a /24): what the hosts join,
    and an address of this namespace every host reaches (a test broker listens on it)."""

    tag: str
    subnet: str
    gateway: str

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def address(self, index: int) -> str:
        """The ``index``-th host address (from .2 on)."""
        return f"{self.gateway.rsplit('.', 1)[0]}.{index + 2}"


@contextmanager
def lan() -> Iterator[Lan]:
    """A fresh bridge with its own /24, removed afterwards."""
    tag = "sgd" + uuid.uuid4().hex[:5]
    octet = 64 + int(tag[3:5], 16) % 128
    net = Lan(tag, f"10.{octet}.0.0/24", f"10.{octet}.0.1")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        yield net
    finally:
        _ip("link", "del", net.bridge, check=False)
        _wait_links_gone(tag)


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
            *("--prtemca", "plm_ssh_agent", str(self.agent)),
            *("--prtemca", "oob_tcp_if_include", self.subnet),
            *("--mca", "btl_tcp_if_include", self.subnet),
        ]

    def launch(self, command: list[str]) -> list[str]:
        """``command`` run in the launcher namespace."""
        return ["ip", "netns", "exec", self.launcher, *command]

    def own_disks(self, target: Path) -> dict[str, Path]:
        """Make ``target`` each host's own directory: processes the agent starts on host h see
        ``target.parent / f"{target.name}@{h}"`` there (returned, by host)."""
        disks = {h: target.parent / f"{target.name}@{h}" for h in self.names}
        target.mkdir(parents=True, exist_ok=True)
        lines = []
        for host, disk in disks.items():
            disk.mkdir(parents=True, exist_ok=True)
            lines.append(f"{host} {disk} {target}\n")
        Path(f"{self.agent}.mounts").write_text("".join(lines))
        return disks

    def cut(self, host: str) -> None:
        """Cut ``host`` from every other namespace and from this one, both ways."""
        others = [n for n in [*self.names, self.launcher] if n != host]
        for name in others:
            self._blackhole(host, self.addresses[name])
            self._blackhole(name, self.addresses[host])
        self._blackhole(host, self.gateway)
        self._blackhole(None, self.addresses[host])

    def cut_link(self, a: str, b: str) -> None:
        """Cut only the link between hosts ``a`` and ``b`` (both ways): each still reaches
        the launcher and this namespace (the broker)."""
        self._blackhole(a, self.addresses[b])
        self._blackhole(b, self.addresses[a])

    def heal(self) -> None:
        """Remove every route :meth:`cut` and :meth:`cut_link` added."""
        while self.routes:
            namespace, address = self.routes.pop()
            _ip("route", "del", "blackhole", f"{address}/32", namespace=namespace, check=False)

    def _blackhole(self, namespace: str | None, address: str) -> None:
        _ip("route", "add", "blackhole", f"{address}/32", namespace=namespace)
        self.routes.append((namespace, address))

    def processes(self, host: str) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", host], capture_output=True, text=True, timeout=30
        )
        return [int(p) for p in out.stdout.split()]


@contextmanager
def two_hosts(tmp_path: Path, on: Lan | None = None) -> Iterator[Hosts]:
    """Namespaces ``<tag>a`` and ``<tag>b`` (and the launcher's ``<tag>l``) on the bridge
    ``on`` (a fresh one if None); all removed afterwards."""
    if on is None:
        with lan() as fresh, two_hosts(tmp_path, fresh) as hosts:
            yield hosts
        return
    tag = "sgd" + uuid.uuid4().hex[:5]
    names, launcher = [f"{tag}a", f"{tag}b"], f"{tag}l"
    addresses = {n: on.address(i) for i, n in enumerate([*names, launcher])}
    agent = tmp_path / "netns-agent.sh"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    hosts = Hosts(tag, names, launcher, addresses, on.gateway, on.subnet, agent)
    marker = f"# streamsgd test {tag}"
    try:
        for i, name in enumerate([*names, launcher]):
            outside, inside = f"{tag}v{i}", f"{tag}p{i}"
            _ip("netns", "add", name)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", name)
            _ip("link", "set", outside, "master", on.bridge)
            _ip("link", "set", outside, "up")
            _ip("addr", "add", f"{addresses[name]}/24", "dev", inside, namespace=name)
            _ip("link", "set", inside, "up", namespace=name)
            _ip("link", "set", "lo", "up", namespace=name)
        sysctl = ["sysctl", "-q", "-w", "net.ipv4.tcp_retries2=4"]
        subprocess.run(
            ["ip", "netns", "exec", launcher, *sysctl], check=True, capture_output=True, timeout=30
        )
        with open(HOSTS_FILE, "a", encoding="utf-8") as fh:
            fh.writelines(f"{addresses[n]} {n} {marker}\n" for n in names)
        yield hosts
    finally:
        _cleanup(hosts, marker)


def _cleanup(hosts: Hosts, marker: str) -> None:
    for name in [*hosts.names, hosts.launcher]:
        for pid in hosts.processes(name):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    hosts.heal()
    for i, name in enumerate([*hosts.names, hosts.launcher]):
        _ip("netns", "del", name, check=False)
        _ip("link", "del", f"{hosts.tag}v{i}", check=False)
    _wait_links_gone(hosts.tag)
    lines = HOSTS_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    HOSTS_FILE.write_text("".join(line for line in lines if marker not in line))
