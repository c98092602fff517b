"""A real NFSv3 server and two "hosts" that mount it, built from user-space parts (root).

The recipe of /work/shared/MULTIHOST.md: three network namespaces (the server, host A,
host B), a veth pair from the server to each host, rpcbind and nfs-ganesha in the
server's namespace with a private /run, and one FUSE mount per host (tools/nfsfuse.py,
a libnfs client), so each host is its own NFS client of one export. Names carry this
process's id, so parallel runs do not collide. `close()` takes everything down by
process id and deletes the namespaces, whatever state the set-up reached.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NFSFUSE = Path(__file__).resolve().parent / "nfsfuse.py"  # a copy of MULTIHOST's tools/
PROGRAMS = ("ganesha.nfsd", "rpcbind", "fusermount3", "ip", "nsenter", "unshare", "umount")
GANESHA_CONF = """\
NFS_CORE_PARAM {{ Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }}
NFSV4 {{ Grace_Period = 0; Graceless = true; RecoveryRoot = {srv}/recov; }}
EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /export; Protocols = 3;
  Transports = TCP; Access_Type = RW; Squash = No_Root_Squash; SecType = sys;
  FSAL {{ Name = VFS; }} }}
"""
SERVER_SCRIPT = """\
mount -t tmpfs tmpfs /run; mkdir -p /run/rpcbind
rpcbind -w -f & echo $! > "$1/rpcbind.pid"
for i in $(seq 50); do [ -S /run/rpcbind.sock ] && break; sleep 0.1; done
ganesha.nfsd -F -f "$1/g.conf" -L "$1/g.log" -p "$1/g.pidfile" & echo $! > "$1/ganesha.pid"
wait
"""


def missing() -> str | None:
    """Why the rig cannot be built here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, FUSE mounts, an NFS server)"
    absent = [p for p in PROGRAMS if shutil.which(p) is None]
    if ctypes.util.find_library("nfs") is None:
        absent.append("libnfs13")
    if importlib.util.find_spec("mfusepy") is None:
        absent.append("mfusepy (pip)")
    if not Path("/dev/fuse").exists():
        absent.append("/dev/fuse")
    if absent:
        return "missing " + ", ".join(absent) + " (.ci/run installs them)"
    return None


@dataclass(frozen=True)
class Host:
    """One NFS client: its network namespace and where it mounts the export."""

    name: str
    netns: str
    mount: Path

    def command(self, argv: list[str]) -> list[str]:
        """argv run inside this host's network namespace (mounts stay visible to all)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]


class NfsRig:
    """The server and two hosts; build with `start()`, take down with `close()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        tag = f"{os.getpid() % 100000}"
        self.tag = tag
        self.server_ns = f"nfs{tag}s"
        self.srv = root / "srv"
        self.export = root / "export"
        self.a = Host("a", f"nfs{tag}a", root / "a")
        self.b = Host("b", f"nfs{tag}b", root / "b")
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._clients: list[subprocess.Popen[bytes]] = []

    # ----- set-up ------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> NfsRig:
        for folder in (self.srv, self.export, self.a.mount, self.b.mount):
            folder.mkdir(parents=True, exist_ok=True)
        self._network()
        self._server(timeout)
        for host, address in ((self.a, "192.0.2.1"), (self.b, "192.0.2.5")):
            self._mount(host, address, timeout)
        return self

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def _network(self) -> None:
        for ns in (self.server_ns, self.a.netns, self.b.netns):
            self._ip("netns", "add", ns)
            self._namespaces.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        links = ((self.a, "1", "2"), (self.b, "5", "6"))
        for host, server_end, host_end in links:
            outside, inside = f"v{self.tag}s{host.name}", f"v{self.tag}{host.name}"
            self._ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._ip("link", "set", outside, "netns", self.server_ns)
            self._ip("link", "set", inside, "netns", host.netns)
            self._ip(
                "-n", self.server_ns, "addr", "add", f"192.0.2.{server_end}/30", "dev", outside
            )
            self._ip("-n", host.netns, "addr", "add", f"192.0.2.{host_end}/30", "dev", inside)
            self._ip("-n", self.server_ns, "link", "set", outside, "up")
            self._ip("-n", host.netns, "link", "set", inside, "up")

    def _server(self, timeout: float) -> None:
        (self.srv / "g.conf").write_text(GANESHA_CONF.format(srv=self.srv, export=self.export))
        (self.srv / "run.sh").write_text(SERVER_SCRIPT)
        script = ["sh", str(self.srv / "run.sh"), str(self.srv)]
        private = ["unshare", "--mount", "--propagation", "private"]
        command = ["nsenter", f"--net=/run/netns/{self.server_ns}", *private, *script]
        log = (self.srv / "server.out").open("wb")
        self._procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        self._wait(lambda: "NFS SERVER INITIALIZED" in self._read(self.srv / "g.log"), timeout,
                   "ganesha did not start: see " + str(self.srv / "g.log"))  # fmt: skip

    def _mount(self, host: Host, address: str, timeout: float) -> None:
        argv = [sys.executable, str(NFSFUSE), address, str(self.export), str(host.mount), "3"]
        log = (self.root / f"nfsfuse-{host.name}.log").open("wb")
        proc = subprocess.Popen(host.command(argv), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._clients.append(proc)
        self._wait(lambda: os.path.ismount(host.mount) or proc.poll() is not None, timeout,
                   f"nfsfuse for host {host.name} did not mount")  # fmt: skip
        if proc.poll() is not None:
            raise RuntimeError(self._read(self.root / f"nfsfuse-{host.name}.log"))

    # ----- take-down ---------------------------------------------------------------------------

    def close(self) -> None:
        """Unmount, stop the server, delete the namespaces: each step whatever came before."""
        for proc in self._clients:
            _stop(proc)
        for host in (self.a, self.b):
            if os.path.ismount(host.mount):
                subprocess.run(["umount", "-l", str(host.mount)], capture_output=True)
        for name in ("ganesha.pid", "rpcbind.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.srv / name).read_text()), signal.SIGKILL)
        for proc in self._procs:
            _stop(proc)
        for ns in self._namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    # ----- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(what)
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
