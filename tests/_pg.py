"""A throwaway PostgreSQL server for tests.

:func:`postgres_connection` starts a private server from the PostgreSQL
binaries found on the machine (``initdb`` on the PATH or under
``/usr/lib/postgresql/*/bin``), in a temporary folder, listening only on a
unix socket inside that folder (no TCP port). It yields a psycopg2
connection to a fresh database and stops the server afterwards. It never
connects to a server it did not start.

PostgreSQL refuses to run as root; when the tests run as root the server
runs as the ``postgres`` system user (created by Debian's ``postgresql``
package) through ``runuser``.

Without binaries the tests skip, unless the environment variable
``ICP_REQUIRE_POSTGRES`` is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_ENV = "ICP_REQUIRE_POSTGRES"
_DATABASE = "icp_test"
_USER = "icp"


def find_bin_dir() -> Path | None:
    """Return the folder holding ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set, so PostgreSQL tests must run")
    pytest.skip(f"{reason} (set {REQUIRE_ENV}=1 to make this an error)")


def _runner() -> tuple[list[str], int | None]:
    """Command prefix that runs a program as a non-root user, and its uid."""
    if os.geteuid() != 0:
        return [], None
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        _unavailable("running as root and no 'postgres' user exists to run the server")
    runuser = shutil.which("runuser")
    if runuser is None:
        _unavailable("running as root and 'runuser' is not available")
    return [runuser, "-u", "postgres", "--"], uid


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def _start(bin_dir: Path, root: Path, prefix: list[str]) -> Path:
    data = root / "data"
    _run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            _USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
    )
    options = f"-c listen_addresses='' -c unix_socket_directories='{root}' -F"
    log = root / "server.log"
    _run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log),
          "-o", options, "-w", "-t", "60", "start"])  # fmt: skip
    return data


def postgres_connection() -> Iterator:
    """Start a private server and yield a connection to an empty database.

    Meant to be wrapped in a session fixture::

        @pytest.fixture(scope="session")
        def pg_conn():
            yield from postgres_connection()
    """
    psycopg2 = pytest.importorskip("psycopg2")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install "
            "Debian's 'postgresql' package"
        )
    prefix, uid = _runner()
    root = Path(tempfile.mkdtemp(prefix="icp-pg-"))
    if uid is not None:
        os.chown(root, uid, -1)
    try:
        data = _start(bin_dir, root, prefix)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start a private PostgreSQL server: {exc}")
    try:
        admin = psycopg2.connect(host=str(root), dbname="postgres", user=_USER)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {_DATABASE}")
        admin.close()
        conn = psycopg2.connect(host=str(root), dbname=_DATABASE, user=_USER)
        conn.autocommit = True
        yield conn
        conn.close()
    finally:
        stop = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]
        subprocess.run(stop, capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
