"""Several "hosts" on one machine, for tests and benchmarks across a network.

Each host is a network namespace with its own address, joined to the others
by a bridge (in a namespace of its own), so MPI between them goes over TCP
through real network interfaces, with optional added latency (``netem``).
Open MPI starts its daemons on the other hosts through an ``ssh`` stand-in
(:meth:`FakeHosts.ssh_script`) that enters the host's namespace with a clean
login environment (``PATH`` and ``HOME`` only) and the host's own hostname;
a host can be given a private view of some folders (an empty ``tmpfs`` over
them), as if it had local disks there.

Everything is made with ``ip netns``/``unshare`` (root only) and removed by
:meth:`FakeHosts.down`; addresses live only inside the namespaces.
"""

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time


class Unavailable(Exception):
    """Namespaces cannot be made here (not root, no ``ip``, no netns)."""


def _run(*command, check=True):
    return subprocess.run(command, check=check, capture_output=True, text=True)


class FakeHosts:
    """``count`` hosts named ``<prefix>-0`` ... on subnet ``10.<net>.0.0/24``.

    Parameters
    ----------
    count : int
        How many hosts.
    latency_ms : float
        Delay added to every packet leaving a host (0: none).
    hidden : dict of int to list of str
        Folders host ``i`` sees as empty (host-local disks there).
    """

    def __init__(self, count=2, latency_ms=0.0, hidden=None):
        tag = os.getpid() % 10000
        self.prefix = f"pc{tag}"
        self.net = 100 + os.getpid() % 150
        self.count = count
        self.latency_ms = latency_ms
        self.hidden = hidden or {}
        self.folder = tempfile.mkdtemp(prefix="fakehosts-")
        self.names = [f"{self.prefix}-{i}" for i in range(count)]
        self.addresses = [f"10.{self.net}.0.{i + 1}" for i in range(count)]
        self.bridge_ns = f"{self.prefix}-br"

    # -- making and removing -------------------------------------------------

    def up(self):
        """Make the namespaces, the bridge, the links and the ssh stand-in."""
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root")
        try:
            _run("ip", "netns", "add", self.bridge_ns)
        except (OSError, subprocess.CalledProcessError) as error:
            raise Unavailable(f"cannot make a network namespace: {error}") from None
        _run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, (name, address) in enumerate(zip(self.names, self.addresses)):
            self._host(i, name, address)
        self._write_ssh()
        return self

    def _host(self, i, name, address):
        _run("ip", "netns", "add", name)
        inside, outside = f"{self.prefix}h{i}", f"{self.prefix}b{i}"
        _run("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
        _run("ip", "link", "set", inside, "netns", name)
        _run("ip", "link", "set", outside, "netns", self.bridge_ns)
        _run("ip", "-n", self.bridge_ns, "link", "set", outside, "master", "br0", "up")
        _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", inside)
        _run("ip", "-n", name, "link", "set", inside, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        if self.latency_ms:
            _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", inside, "root",
                 "netem", "delay", f"{self.latency_ms}ms")

    def down(self):
        """Kill what still runs in the namespaces, then remove them."""
        for name in [*self.names, self.bridge_ns]:
            for pid in self.pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _run("ip", "netns", "del", name, check=False)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    # -- using them ----------------------------------------------------------

    def pids(self, name):
        """Process ids running in host ``name``'s namespace."""
        found = _run("ip", "netns", "pids", name, check=False).stdout.split()
        return [int(pid) for pid in found]

    def hostfile(self, slots):
        """A hostfile with ``slots`` slots per host (its path)."""
        path = os.path.join(self.folder, "hosts")
        with open(path, "w", encoding="ascii") as handle:
            handle.writelines(f"{address} slots={slots}\n" for address in self.addresses)
        return path

    def environment(self, base=None):
        """What mpiexec on host 0 needs: the ssh stand-in and the interfaces."""
        env = dict(os.environ if base is None else base)
        subnet = f"10.{self.net}.0.0/24"
        env.update(PRTE_MCA_plm_ssh_agent=self.ssh_script,
                   PRTE_MCA_oob_tcp_if_include=subnet, OMPI_MCA_btl_tcp_if_include=subnet)
        return env

    def command(self, argv, host=0):
        """``argv`` run on host ``host`` (its namespace and hostname)."""
        return ["ip", "netns", "exec", self.names[host], "unshare", "--uts", "sh", "-c",
                f'hostname {self.names[host]} && exec "$@"', "sh", *argv]

    # -- the ssh stand-in ----------------------------------------------------

    @property
    def ssh_script(self):
        return os.path.join(self.folder, "ssh")

    def _write_ssh(self):
        """``ssh [options] HOST COMMAND``: COMMAND in HOST's namespace, with a
        clean login environment and the host's private folders."""
        cases = []
        for i, (name, address) in enumerate(zip(self.names, self.addresses)):
            mounts = "".join(f"mount -t tmpfs none {shlex.quote(folder)} && "
                             for folder in self.hidden.get(i, []))
            inner = (f"hostname {name} && {mounts}exec env -i PATH={shlex.quote(_path())} "
                     'HOME=/root sh -c "$0"')
            cases.append(f"    {address}|{name}) exec ip netns exec {name} unshare --uts "
                         f"--mount --propagation private sh -c {shlex.quote(inner)} "
                         '"$*";;')
        script = ["#!/bin/sh",
                  "while [ $# -gt 0 ]; do case \"$1\" in -*) shift;; *) break;; esac; done",
                  'host="$1"; shift',
                  'case "$host" in', *cases,
                  '    *) echo "ssh: unknown host $host" >&2; exit 255;;',
                  "esac", ""]
        with open(self.ssh_script, "w", encoding="ascii") as handle:
            handle.write("\n".join(script))
        os.chmod(self.ssh_script, 0o755)


def _path():
    """A login PATH that finds this Python's tools (the venv) first."""
    return os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin",
                            "/bin"])


def wait_gone(pids, seconds=10.0):
    """Whether every pid in ``pids`` has ended within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False
