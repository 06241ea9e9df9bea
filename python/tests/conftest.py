"""Fixtures: real servers on free ports, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


class RedisServer:
    """A private redis-server on a free port, with no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/deps.sh installs it)")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="toolops-redis-")
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def command(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


class PostgresServer:
    """A private PostgreSQL cluster (initdb) on a free port."""

    def __init__(self) -> None:
        bindir = None
        for root in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir(
                "/usr/lib/postgresql") else []:
            candidate = os.path.join("/usr/lib/postgresql", root, "bin")
            if os.path.exists(os.path.join(candidate, "initdb")):
                bindir = candidate
                break
        if bindir is None:
            pytest.fail("PostgreSQL is not installed (scripts/deps.sh installs it)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="toolops-pg-")
        os.chmod(self.dir, 0o777)
        data = os.path.join(self.dir, "data")
        run_as = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*run_as, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [*run_as, os.path.join(bindir, "postgres"), "-D", data, "-p", str(self.port),
             "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "postgres")
        # Listening is not ready: wait until it accepts connections.
        deadline = time.monotonic() + 30
        while subprocess.run([os.path.join(bindir, "pg_isready"), "-h", "127.0.0.1", "-p",
                              str(self.port), "-U", "postgres"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("postgres did not accept connections within 30 s")
            time.sleep(0.1)
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    yield server
    server.stop()
