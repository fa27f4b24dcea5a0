"""The Docker engine the live tier runs on: a running dockerd, or one started (and stopped) here.

`open_engine()` uses the daemon at /var/run/docker.sock when it answers. Otherwise, as root,
it starts its own dockerd with a private socket, pidfile, exec-root and data-root (under
/run/msops-live and /var/cache/msops-live), so it never touches a system daemon's state and
the built images survive to the next run. `Engine.close()` removes what the session created
(services, containers, networks, volumes, configs, secrets; the swarm, if this session
initialised it) and stops a dockerd it started, with every process that dockerd left, and
undoes what that dockerd changed on the host network (its iptables rules, its bridges).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

SYSTEM_SOCKET = "/var/run/docker.sock"
RUN_DIR = Path(os.environ.get("MSOPS_LIVE_RUN_DIR", "/run/msops-live"))
CACHE_DIR = Path(os.environ.get("MSOPS_LIVE_CACHE", "/var/cache/msops-live"))
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Objects the tier creates carry msops' labels; the client containers carry this one.
LIVE_LABEL = "msops-live"


class EngineUnavailable(Exception):
    """No Docker engine can be used here; the message says why."""


@dataclass
class Engine:
    """A connected engine, and what this session must undo on it."""

    client: docker.DockerClient
    base_url: str
    owned: bool
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    lock: Any = None
    swarm_created: bool = False
    host_network: HostNetwork | None = None
    # IDs that existed before the session, per kind; anything else labelled msops is ours.
    before: dict[str, set[str]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a `docker` CLI talking to this engine."""
        return {**os.environ, "DOCKER_HOST": self.base_url}

    def init_swarm(self) -> str:
        """Make this engine a one-node swarm manager on 127.0.0.1; returns the node ID."""
        info = self.client.info()
        if info["Swarm"].get("LocalNodeState") != "active":
            self.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            self.swarm_created = True
            info = self.client.info()
        elif not info["Swarm"].get("ControlAvailable"):
            raise EngineUnavailable("this engine is a swarm worker; the tier needs a manager")
        return str(info["Swarm"]["NodeID"])

    def leave_swarm(self) -> None:
        if self.swarm_created:
            with contextlib.suppress(docker.errors.APIError):
                self.client.swarm.leave(force=True)
            self.swarm_created = False
            # Left behind by a swarm; only removed when this session made the swarm.
            with contextlib.suppress(docker.errors.APIError):
                for net in self.client.networks.list(names=["docker_gwbridge"]):
                    if net.id not in self.before.get("networks", set()):
                        net.remove()

    def cleanup(self) -> None:
        """Remove every object this session created (all of them on an engine of our own)."""
        remove_created(self.client, self.before, everything=self.owned)

    def close(self) -> None:
        try:
            self.cleanup()
            self.leave_swarm()
        finally:
            self.client.close()
            if self.process is not None:
                stop_dockerd(self.process)
            if self.host_network is not None:
                self.host_network.restore()
            if self.lock is not None:
                self.lock.close()


def _ours(labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return LIVE_LABEL in labels or any(k.startswith("msops.") for k in labels)


def snapshot(client: docker.DockerClient) -> dict[str, set[str]]:
    """The IDs of every object kind the tier may create, as they are now."""
    ids: dict[str, set[str]] = {
        "containers": {c["Id"] for c in client.api.containers(all=True)},
        "networks": {n.id for n in client.networks.list()},
        "volumes": {v.name for v in client.volumes.list()},
        "services": set(),
        "configs": set(),
        "secrets": set(),
    }
    if client.info()["Swarm"].get("ControlAvailable"):
        ids["services"] = {s.id for s in client.services.list()}
        ids["configs"] = {c.id for c in client.configs.list()}
        ids["secrets"] = {s.id for s in client.secrets.list()}
    return ids


def remove_created(
    client: docker.DockerClient, before: dict[str, set[str]], *, everything: bool
) -> None:
    """Remove objects not in `before`: all of them, or only those labelled as msops'."""

    def doomed(kind: str, key: str, labels: dict[str, str] | None) -> bool:
        return key not in before.get(kind, set()) and (everything or _ours(labels))

    swarm = client.info()["Swarm"].get("ControlAvailable")
    if swarm:
        removed = []
        for svc in client.services.list():
            if doomed("services", svc.id, svc.attrs["Spec"].get("Labels")):
                with contextlib.suppress(docker.errors.NotFound):
                    svc.remove()
                    removed.append(svc.id)
        # Their tasks take a moment to stop; networks and volumes in use cannot be removed.
        for sid in removed:
            _wait_for(
                lambda sid=sid: (
                    not client.api.containers(
                        all=True, filters={"label": f"com.docker.swarm.service.id={sid}"}
                    )
                ),
                60,
            )
    # The low-level list: the high-level one inspects each container, racing their removal.
    for ctr in client.api.containers(all=True):
        if doomed("containers", ctr["Id"], ctr.get("Labels")):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_container(ctr["Id"], force=True, v=True)
    if swarm:
        for cfg in client.configs.list():
            # Configs carry no labels in msops' graphs; the stack prefix marks them.
            if doomed(
                "configs",
                cfg.id,
                {"msops.": ""} if _stack_named(cfg.name) else cfg.attrs["Spec"].get("Labels"),
            ):
                with contextlib.suppress(docker.errors.APIError):
                    cfg.remove()
        for sec in client.secrets.list():
            if doomed("secrets", sec.id, sec.attrs["Spec"].get("Labels")):
                with contextlib.suppress(docker.errors.APIError):
                    sec.remove()
    for net in client.networks.list():
        if net.name in ("bridge", "host", "none", "ingress", "docker_gwbridge"):
            continue
        if doomed("networks", net.id, net.attrs.get("Labels")):
            with contextlib.suppress(docker.errors.APIError):
                net.remove()
    for vol in client.volumes.list():
        if doomed("volumes", vol.name, vol.attrs.get("Labels")):
            with contextlib.suppress(docker.errors.APIError):
                vol.remove(force=True)


def _stack_named(name: str) -> bool:
    return name.split("_", 1)[0] in ("dev", "staging", "prod")


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _connect(base_url: str, timeout: float = 5.0) -> docker.DockerClient | None:
    try:
        client = docker.DockerClient(base_url=base_url, version="auto", timeout=120)
    except docker.errors.DockerException:
        return None
    try:
        client.ping()
    except Exception:
        client.close()
        return None
    return client


def open_engine() -> Engine:
    """Connect to the system dockerd, else start our own; EngineUnavailable if neither works."""
    if Path(SYSTEM_SOCKET).exists():
        client = _connect(f"unix://{SYSTEM_SOCKET}")
        if client is not None:
            engine = Engine(client=client, base_url=f"unix://{SYSTEM_SOCKET}", owned=False)
            engine.before = snapshot(client)
            return engine
    if os.geteuid() != 0:
        raise EngineUnavailable(
            f"no Docker engine answers at {SYSTEM_SOCKET}, and starting dockerd needs root "
            f"(running as uid {os.geteuid()})"
        )
    dockerd = shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
    )
    if dockerd is None:
        raise EngineUnavailable(
            f"no Docker engine answers at {SYSTEM_SOCKET} and dockerd is not installed "
            "(apt-get install docker.io iptables)"
        )
    return start_dockerd(dockerd)


def start_dockerd(dockerd: str) -> Engine:
    """Start a private dockerd as root and wait until it answers."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # One live session per machine at a time: they share the data-root and the host ports.
    lock = (RUN_DIR / "session.lock").open("w")
    deadline = time.monotonic() + 600
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                raise EngineUnavailable(
                    f"another live-tier session has held {RUN_DIR / 'session.lock'} for 10 minutes"
                ) from None
            time.sleep(1)
    sock = RUN_DIR / "docker.sock"
    pidfile = RUN_DIR / "docker.pid"
    _kill_stale(pidfile)
    log_path = CACHE_DIR / "dockerd.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        # No registry is reachable; a pull must fail at once instead of waiting on a network
        # timeout (Swarm tries one before every task start and logs the failure).
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    args = [
        dockerd,
        f"--host=unix://{sock}",
        f"--pidfile={pidfile}",
        f"--exec-root={RUN_DIR / 'exec'}",
        f"--data-root={CACHE_DIR / 'docker'}",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]
    host_network = HostNetwork.snapshot()
    if log_path.exists() and log_path.stat().st_size > 10 * 1024 * 1024:
        log_path.unlink()
    with log_path.open("ab") as log:
        log.write(f"--- msops live session {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base_url = f"unix://{sock}"
    deadline = time.monotonic() + START_TIMEOUT
    client = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if sock.exists():
            client = _connect(base_url)
            if client is not None:
                break
        time.sleep(0.2)
    if client is None:
        tail = _tail(log_path)
        stop_dockerd(process)
        host_network.restore()
        lock.close()
        raise EngineUnavailable(
            f"dockerd did not answer on {sock} within {START_TIMEOUT:.0f}s "
            f"(exit code {process.returncode}); its log ends:\n{tail}"
        )
    engine = Engine(
        client=client,
        base_url=base_url,
        owned=True,
        process=process,
        log_path=log_path,
        lock=lock,
        host_network=host_network,
    )
    # A data-root of our own: whatever an interrupted earlier run left is ours to remove.
    if client.info()["Swarm"].get("LocalNodeState") == "active":
        engine.swarm_created = True
        engine.leave_swarm()
    remove_created(client, {}, everything=True)
    engine.before = snapshot(client)
    return engine


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _kill_stale(pidfile: Path) -> None:
    """Stop a dockerd an interrupted earlier session left running on our pidfile."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return
    if str(RUN_DIR) in cmdline:
        os.kill(pid, signal.SIGTERM)
        _wait_for(lambda: not Path(f"/proc/{pid}").exists(), STOP_TIMEOUT)


@dataclass
class HostNetwork:
    """What a dockerd changes on the host and leaves when it stops: iptables rules and
    chains, the FORWARD policy, ip_forward, the docker0 and docker_gwbridge bridges."""

    rules: dict[str, list[str]]
    links: set[str]
    ip_forward: str

    TABLES = ("filter", "nat")
    BRIDGES = ("docker0", "docker_gwbridge")
    FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")

    @classmethod
    def snapshot(cls) -> HostNetwork:
        return cls(
            rules={t: _iptables_rules(t) for t in cls.TABLES},
            links={name for name in cls.BRIDGES if Path(f"/sys/class/net/{name}").exists()},
            ip_forward=cls.FORWARDING.read_text().strip() if cls.FORWARDING.exists() else "",
        )

    def restore(self) -> None:
        """Undo the Docker changes made since the snapshot; nothing else is touched."""
        for table in self.TABLES:
            before = set(self.rules[table])
            added = [r for r in _iptables_rules(table) if r not in before and "DOCKER" in r.upper()]
            for rule in added:
                if rule.startswith("-A "):
                    _iptables(table, ["-D", *rule[3:].split()])
            for rule in self.rules[table]:
                if rule.startswith("-P ") and rule not in _iptables_rules(table):
                    _iptables(table, rule.split())
            for rule in added:
                if rule.startswith("-N "):
                    _iptables(table, ["-F", rule[3:]])
                    _iptables(table, ["-X", rule[3:]])
        for name in self.BRIDGES:
            if name not in self.links and Path(f"/sys/class/net/{name}").exists():
                subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
        if self.ip_forward and self.FORWARDING.read_text().strip() != self.ip_forward:
            with contextlib.suppress(OSError):
                self.FORWARDING.write_text(self.ip_forward)


def _iptables(table: str, args: list[str]) -> str:
    if shutil.which("iptables") is None:
        return ""
    done = subprocess.run(
        ["iptables", "-w", "-t", table, *args], capture_output=True, text=True, check=False
    )
    return done.stdout


def _iptables_rules(table: str) -> list[str]:
    return [line for line in _iptables(table, ["-S"]).splitlines() if line]


def stop_dockerd(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM dockerd (it stops its containers and its containerd), then reap what is left."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    for pid in leftover_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def leftover_pids() -> list[int]:
    """Processes still running from our dockerd: its containerd and shims name our exec-root."""
    marker = str(RUN_DIR).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def engine_session() -> Iterator[Engine]:
    engine = open_engine()
    try:
        yield engine
    finally:
        engine.close()
