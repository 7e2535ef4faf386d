"""Several "hosts" on one machine, for tests and benchmarks across a network.

Each host is a network namespace with its own address, joined to the others
by a bridge (in a namespace of its own), so MPI between them goes over TCP
through real network interfaces, with optional added latency (``netem``).
Open MPI starts its daemons on the other hosts through an ``ssh`` stand-in
(:meth:`FakeHosts.ssh_script`) that enters the host's namespace with a clean
login environment (``PATH`` and ``HOME`` only) and the host's own hostname;
a host can be given a private view of some folders (an empty ``tmpfs`` over
them), as if it had local disks there.

Latency: with ``latency_ms`` the hosts are joined not by a bridge but by a
router process (:func:`route`) that holds a TUN device in every host's
namespace and forwards each IP packet to its destination host after the
given delay (each way), since the kernel here has no ``netem``. It handles
tens of thousands of packets a second, enough for the clocks and messages
of small jobs.

Everything is made with ``ip netns``/``unshare`` (root only) and removed by
:meth:`FakeHosts.down`; addresses live only inside the namespaces.
"""

import itertools
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time


_SERIAL = itertools.count()


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
        serial = next(_SERIAL)
        self.prefix = f"pc{os.getpid() % 10000}{serial}"
        self.net = 100 + (os.getpid() + 37 * serial) % 150
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
        for name in self.names:
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        if self.latency_ms:
            self._start_router()
        else:
            _run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
            for i, (name, address) in enumerate(zip(self.names, self.addresses)):
                self._bridged(i, name, address)
        self._write_ssh()
        return self

    def _start_router(self):
        """The delaying router, then each host's TUN address (once it exists)."""
        argv = [sys.executable, os.path.abspath(__file__), "--route", str(self.latency_ms),
                *[f"{name}={self.prefix}t{i}" for i, name in enumerate(self.names)]]
        self.router = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        if self.router.stdout.readline().strip() != "ready":
            raise Unavailable("the delaying router did not start")
        for i, (name, address) in enumerate(zip(self.names, self.addresses)):
            device = f"{self.prefix}t{i}"
            _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", device)
            _run("ip", "-n", name, "link", "set", device, "up")

    def _bridged(self, i, name, address):
        inside, outside = f"{self.prefix}h{i}", f"{self.prefix}b{i}"
        _run("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
        _run("ip", "link", "set", inside, "netns", name)
        _run("ip", "link", "set", outside, "netns", self.bridge_ns)
        _run("ip", "-n", self.bridge_ns, "link", "set", outside, "master", "br0", "up")
        _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", inside)
        _run("ip", "-n", name, "link", "set", inside, "up")

    def down(self):
        """Kill what still runs in the namespaces, then remove them."""
        if getattr(self, "router", None) is not None:
            self.router.kill()
            self.router.wait()
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


# -- the delaying router ------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def _open_tun(namespace, device):
    """A TUN device ``device`` made inside network namespace ``namespace``."""
    import ctypes
    import fcntl
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(target, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        libc.setns(home, 0x40000000)
        os.close(home)
        os.close(target)
    return fd


def route(latency_ms, devices):
    """Forward IPv4 packets between the hosts' TUN devices, each after
    ``latency_ms`` (runs until killed). ``devices``: ``[(namespace, device)]``
    in host order; host i has address ``x.x.x.(i + 1)``."""
    import heapq
    import select

    fds = [_open_tun(namespace, device) for namespace, device in devices]
    print("ready", flush=True)
    delay, due, order = latency_ms / 1000.0, [], 0
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        readable, _, _ = select.select(fds, [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            packet = os.read(fd, 65536)
            host = packet[19] - 1 if len(packet) >= 20 and packet[0] >> 4 == 4 else -1
            if 0 <= host < len(fds):
                heapq.heappush(due, (now + delay, order, fds[host], packet))
                order += 1
        while due and due[0][0] <= time.monotonic():
            _, _, fd, packet = heapq.heappop(due)
            os.write(fd, packet)


if __name__ == "__main__" and sys.argv[1:2] == ["--route"]:
    route(float(sys.argv[2]), [tuple(arg.split("=", 1)) for arg in sys.argv[3:]])
