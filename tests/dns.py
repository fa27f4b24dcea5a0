"""Service discovery on loopback for LB tests: a real DNS server, replicas on 127.0.0.x, nginx.

Docker's embedded DNS answers a service's network alias with the address of every running
replica, and drops a replica when its container stops. Here dnsmasq plays that part: it
answers a name from a hosts file that a test rewrites (then SIGHUP) to add or remove a
replica. Every replica of a service listens on the same port, each on its own loopback
address (127.0.0.2, 127.0.0.3, ...), as containers do on their own network addresses.

No port is picked in one process and bound in another: each process binds the port it
serves on, and a bind that fails is retried on another port (dnsmasq, nginx, the first
replica of a service) or on the next address (later replicas, which must share the port).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar

from components.artifacts.nginx import LB_HEALTH_PATH
from tests.runtime.processes import APP_DIR, STARTUP_TIMEOUT_SECONDS, AppHandle, app_env, http_get

DNSMASQ = "/usr/sbin/dnsmasq"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
BIND_ATTEMPTS = 20
# Replicas get 127.0.0.2 and up; 127.0.0.1 is left to everything else on the machine.
FIRST_REPLICA_HOST = 2
LAST_REPLICA_HOST = 254

T = TypeVar("T")


class AddressInUse(Exception):
    """The port (or address and port) a process tried to bind was taken: try another."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def random_port() -> int:
    """A port below the kernel's ephemeral range, so no outgoing connection is handed it.

    Nothing binds it here: the process that serves on it does, and its caller retries with
    another port if that fails.
    """
    return random.randrange(10000, max(_ephemeral_low(), 12000))


def retry_bind(attempt: Callable[[int], T], what: str) -> T:
    """`attempt(port)` with random ports until one does not raise AddressInUse."""
    for _ in range(BIND_ATTEMPTS):
        with contextlib.suppress(AddressInUse):
            return attempt(random_port())
    raise RuntimeError(f"{what}: every port tried was in use ({BIND_ATTEMPTS} attempts)")


@dataclass
class Daemon:
    """A server process a test started, its output in a file; stop() is safe to call twice."""

    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        if self.log.closed:
            return ""
        self.log.flush()
        return os.pread(self.log.fileno(), 1 << 20, 0).decode(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


@contextlib.contextmanager
def _stopped_unless_returned(stop: Callable[[], object]) -> Iterator[None]:
    """Run `stop` if the block raises (a failed start, a timeout, a bug, Ctrl-C), so that
    nothing a failed start-up launched is left running."""
    try:
        yield
    except BaseException:
        stop()
        raise


def spawn(name: str, argv: Sequence[str], stdin: IO[bytes] | int = subprocess.DEVNULL) -> Daemon:
    # A file, not a pipe: nobody reads the output while the process runs, and a full pipe
    # would block it.
    log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 - the Daemon owns and closes it
    proc = subprocess.Popen(list(argv), stdin=stdin, stdout=log, stderr=subprocess.STDOUT)
    return Daemon(name, proc, log)


def start_server(
    name: str,
    argv: Callable[[int], Sequence[str]],
    ready_url: Callable[[int], str],
    *,
    stdin: Callable[[int], Path] | None = None,
) -> tuple[Daemon, int]:
    """Run `argv(port)` (its stdin the file `stdin(port)`) until `ready_url(port)` answers
    200; a start that fails because the port is taken is retried on another port."""

    def attempt(port: int) -> tuple[Daemon, int]:
        if stdin is None:
            daemon = spawn(name, argv(port))
        else:
            with stdin(port).open("rb") as source:
                daemon = spawn(name, argv(port), source)
        with _stopped_unless_returned(daemon.stop):
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if daemon.proc.poll() is not None:
                    output = daemon.output()
                    if "address already in use" in output.lower():
                        raise AddressInUse(port)
                    raise RuntimeError(f"{name} exited {daemon.proc.returncode}:\n{output}")
                with contextlib.suppress(OSError):
                    if http_get(ready_url(port), timeout=1.0).status == 200:
                        return daemon, port
                time.sleep(0.02)
            raise RuntimeError(f"{name} did not answer in {START_TIMEOUT}s:\n{daemon.output()}")

    return retry_bind(attempt, name)


# --- DNS ---------------------------------------------------------------------------------------


def query_a(server: tuple[str, int], name: str, timeout: float = 1.0) -> tuple[int, list[str]]:
    """Ask `server` over UDP for the A records of `name`: (rcode, sorted addresses)."""
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    header = struct.pack("!HHHHHH", secrets.randbits(16), 0x0100, 1, 0, 0, 0)
    packet = header + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, server)
        reply = b""
        while reply[:2] != packet[:2]:
            reply, _ = sock.recvfrom(4096)
    _, flags, questions, answers, _, _ = struct.unpack("!HHHHHH", reply[:12])

    def after_name(at: int) -> int:
        while reply[at] != 0:
            if reply[at] & 0xC0 == 0xC0:  # a compression pointer ends the name
                return at + 2
            at += 1 + reply[at]
        return at + 1

    offset = 12
    for _ in range(questions):
        offset = after_name(offset) + 4
    addresses = []
    for _ in range(answers):
        offset = after_name(offset)
        rtype, _, _, length = struct.unpack("!HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return flags & 0x000F, sorted(addresses)


def find_dnsmasq() -> str | None:
    """dnsmasq's path; None where it is missing, except in CI, where that is an error."""
    found = shutil.which("dnsmasq") or (DNSMASQ if os.access(DNSMASQ, os.X_OK) else None)
    if found is None and os.environ.get("CI"):
        raise RuntimeError("dnsmasq is not installed: apt-get install dnsmasq-base")
    return found


@dataclass
class Dnsmasq:
    """A running dnsmasq on 127.0.0.1 answering names from a hosts file the test edits."""

    daemon: Daemon
    port: int
    hosts: Path
    records: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def resolver(self) -> str:
        """The address for nginx's `resolver` directive."""
        return f"127.0.0.1:{self.port}"

    def lookup(self, name: str, timeout: float = 1.0) -> tuple[int, list[str]]:
        return query_a(("127.0.0.1", self.port), name, timeout)

    def set(self, name: str, addresses: Iterable[str]) -> None:
        """Make `name` answer exactly `addresses` (none: NXDOMAIN); returns once it does."""
        self.records[name] = tuple(dict.fromkeys(addresses))
        text = "".join(f"{a} {n}\n" for n, addrs in self.records.items() for a in addrs)
        # Written whole and renamed into place, so dnsmasq never reads half a file.
        staged = self.hosts.with_suffix(".new")
        staged.write_text(text)
        staged.chmod(0o644)
        staged.replace(self.hosts)
        self.daemon.proc.send_signal(signal.SIGHUP)
        expected = sorted(self.records[name])
        seen: tuple[int, list[str]] = (-1, [])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                seen = self.lookup(name)
                if seen[1] == expected:
                    return
            time.sleep(0.01)
        raise AssertionError(
            f"dnsmasq answers {name} with {seen}, not {expected}:\n{self.daemon.output()}"
        )

    def add(self, name: str, *addresses: str) -> None:
        self.set(name, [*self.records.get(name, ()), *addresses])

    def remove(self, name: str, *addresses: str) -> None:
        self.set(name, [a for a in self.records.get(name, ()) if a not in addresses])

    def stop(self) -> None:
        self.daemon.stop()
        shutil.rmtree(self.hosts.parent, ignore_errors=True)


def _dnsmasq_argv(binary: str, hosts: Path, port: int) -> list[str]:
    argv = [
        binary,
        # In the foreground, logging to stderr. Not --no-daemon: that is debug mode, which
        # never drops root.
        "--keep-in-foreground",
        "--log-facility=-",
        "--pid-file=",
        "--conf-file=/dev/null",
        # Only the test's names: no /etc/hosts, no upstream servers, and never forward (/#/),
        # so a name with no replica is NXDOMAIN, as an alias with no container is on Docker.
        "--no-hosts",
        "--no-resolv",
        "--local=/#/",
        f"--addn-hosts={hosts}",
        "--local-ttl=1",
        # 127.0.0.1:port itself, not the wildcard address, which would collide with more.
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--port={port}",
    ]
    if os.geteuid() == 0:
        # Drop root once the port is bound, as a packaged dnsmasq does. It then reads the
        # hosts file as nobody, so that file lives in a directory anyone can read.
        user, group = pwd.getpwuid(65534).pw_name, grp.getgrgid(65534).gr_name
        argv += [f"--user={user}", f"--group={group}"]
    return argv


def start_dnsmasq(binary: str) -> Dnsmasq:
    """dnsmasq on 127.0.0.1, on a port it binds itself, serving no name yet; stop() it."""
    # Not under pytest's tmp_path: that is private to root, and dnsmasq reads as nobody.
    directory = Path(tempfile.mkdtemp(prefix="msops-dns-"))
    directory.chmod(0o755)
    hosts = directory / "hosts"
    hosts.write_text("")
    hosts.chmod(0o644)

    def attempt(port: int) -> Dnsmasq:
        server = Dnsmasq(spawn("dnsmasq", _dnsmasq_argv(binary, hosts, port)), port, hosts)
        daemon = server.daemon
        with _stopped_unless_returned(daemon.stop):
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if daemon.proc.poll() is not None:
                    output = daemon.output()
                    if "address already in use" in output.lower():
                        raise AddressInUse(port)
                    raise RuntimeError(f"dnsmasq exited {daemon.proc.returncode}:\n{output}")
                with contextlib.suppress(OSError):
                    server.lookup("ready.invalid", timeout=0.2)
                    return server
                time.sleep(0.01)
            raise RuntimeError(f"dnsmasq did not answer in {START_TIMEOUT}s:\n{daemon.output()}")

    try:
        return retry_bind(attempt, "dnsmasq")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_dnsmasq(binary: str) -> Iterator[Dnsmasq]:
    server = start_dnsmasq(binary)
    try:
        yield server
    finally:
        server.stop()


# --- replicas ----------------------------------------------------------------------------------


@dataclass
class HostedApp(AppHandle):
    """A demo app replica listening on its own loopback address."""

    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the replica dies mid-request, as on an OOM kill or a lost host."""
        self.proc.kill()
        self.proc.wait()


def launch_hosted_app(host: str, port: int, **env: str | None) -> HostedApp:
    """The demo app on host:port, once it answers (/version, which no fault switch changes);
    AddressInUse if it cannot bind."""
    child_env = app_env({**env, "HOST": host, "PORT": str(port)})
    log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 - the handle owns and closes it
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.server"],
        cwd=APP_DIR,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    app = HostedApp(port=port, proc=proc, log=log, env=child_env, host=host)
    with _stopped_unless_returned(app.stop):
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = app.logs()
                if "cannot listen" in output and "in use" in output:
                    raise AddressInUse(f"{host}:{port}")
                raise RuntimeError(f"demo app exited {proc.returncode} during startup:\n{output}")
            with contextlib.suppress(OSError):
                if app.get("/version", timeout=1.0).status == 200:
                    return app
            time.sleep(0.02)
        raise RuntimeError(
            f"demo app not answering after {STARTUP_TIMEOUT_SECONDS}s:\n{app.logs()}"
        )


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"{host}:{port}") from exc
        raise
    return sock


class Service:
    """The replicas of one service: one port, an address each, as on a container network.

    The port is settled by the first bind that succeeds (or by reading `port`); a later bind
    that finds its address and port taken moves on to the next address. close() stops
    everything started here.
    """

    def __init__(self) -> None:
        self._port: int | None = None
        self._next_host = FIRST_REPLICA_HOST
        self._lock = threading.Lock()
        self._apps: list[HostedApp] = []
        self._closers: list[Callable[[], object]] = []

    @property
    def port(self) -> int:
        """The port every replica listens on."""
        with self._lock:
            if self._port is None:
                self._port = random_port()
            return self._port

    def _address(self) -> str:
        with self._lock:
            if self._next_host > LAST_REPLICA_HOST:
                raise RuntimeError("no loopback address left for another replica")
            host = f"127.0.0.{self._next_host}"
            self._next_host += 1
            return host

    def _bind(self, start: Callable[[str, int], T]) -> T:
        for _ in range(BIND_ATTEMPTS):
            host = self._address()
            with self._lock:
                port = self._port if self._port is not None else random_port()
            try:
                started = start(host, port)
            except AddressInUse:
                continue
            with self._lock:
                self._port = port
            return started
        raise RuntimeError(f"no free address for a replica ({BIND_ATTEMPTS} attempts)")

    def app(self, **env: str | None) -> HostedApp:
        """A demo app replica; keyword arguments are its environment (REPLICA_ID="r1")."""
        app = self._bind(lambda host, port: launch_hosted_app(host, port, **env))
        self._apps.append(app)
        return app

    def apps(self, *envs: Mapping[str, str | None]) -> list[HostedApp]:
        """One replica per environment, started side by side once the port is settled."""
        if not envs:
            return []
        first = self.app(**envs[0])
        with ThreadPoolExecutor(max(1, len(envs) - 1)) as pool:
            rest = list(pool.map(lambda env: self.app(**env), envs[1:]))
        return [first, *rest]

    def server(self, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        """An in-process HTTP server with `handler` on the next address."""

        def start(host: str, port: int) -> ThreadingHTTPServer:
            try:
                server = ThreadingHTTPServer((host, port), handler)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUse(f"{host}:{port}") from exc
                raise
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            return server

        server = self._bind(start)
        self._closers.append(lambda: (server.shutdown(), server.server_close()))
        return server

    def listener(self) -> socket.socket:
        """A socket bound and listening on the next address; the caller accepts on it."""
        sock = self._bind(_bound_socket)
        sock.listen(64)
        self._closers.append(sock.close)
        return sock

    def dead(self) -> str:
        """An address where the service's port refuses connections, as a stopped replica's
        does: a socket is bound there and never listens, so nothing else can take it."""
        sock = self._bind(_bound_socket)
        self._closers.append(sock.close)
        return str(sock.getsockname()[0])

    def close(self) -> None:
        # Signal every replica first, so their shutdowns overlap instead of queueing.
        for app in self._apps:
            app.terminate()
        for app in self._apps:
            app.stop()
        for close in reversed(self._closers):
            with contextlib.suppress(OSError):
                close()
        self._apps, self._closers = [], []


@contextlib.contextmanager
def service() -> Iterator[Service]:
    svc = Service()
    try:
        yield svc
    finally:
        svc.close()


# --- nginx -------------------------------------------------------------------------------------


@dataclass
class Lb:
    """A running nginx LB on 127.0.0.1."""

    daemon: Daemon
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.daemon.proc.pid

    def output(self) -> str:
        return self.daemon.output()

    def stop(self) -> None:
        self.daemon.stop()


def start_nginx(
    binary: str, render: Callable[[str], str], directory: Path, *, prefix: Sequence[str] = ()
) -> Lb:
    """nginx in the foreground on the config `render(listen)`, on a port it binds itself.

    The config goes in on stdin, because the LB container's tmpfs /tmp may hide `directory`;
    -e stderr, because the compiled-in error log path is opened before the config is read.
    """
    conf = directory / "nginx.conf"

    def config_for(port: int) -> Path:
        conf.write_text(render(f"127.0.0.1:{port}"))
        return conf

    argv = [*prefix, binary, "-p", "/tmp/", "-c", "/dev/stdin", "-e", "stderr"]
    daemon, port = start_server(
        "nginx",
        lambda _port: [*argv, "-g", "daemon off;"],
        lambda port: f"http://127.0.0.1:{port}{LB_HEALTH_PATH}",
        stdin=config_for,
    )
    return Lb(daemon, port)


def replica_of(url: str, timeout: float = 10.0, **kwargs: Any) -> str:
    """Which replica answered a GET of `url` (its X-Replica header), or "<status>"."""
    resp = http_get(url, timeout=timeout, **kwargs)
    return resp.headers.get("X-Replica") or f"<{resp.status}>"
