"""The MLflow tracking server of a deployment: backend store in PostgreSQL, artifacts in a folder.

`python -m deploy mlflow-server` (or `make mlflow-server`) creates the backend database when
it is missing and then replaces itself with `mlflow server`; clients reach it by setting
`MLFLOW_TRACKING_URI=http://<host>:<port>`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deploy.settings import DeploySettings


def server_command(settings: DeploySettings, executable: str | None = None) -> list[str]:
    """The `mlflow server` command line for these settings.

    Args:
        settings: the deployment settings.
        executable: the `mlflow` program; default the one beside the running Python.

    Returns:
        The argument vector, ready for `subprocess` or `os.execv`.
    """
    program = executable or str(Path(sys.executable).with_name("mlflow"))
    return [
        program,
        "server",
        "--backend-store-uri",
        settings.mlflow_backend_store_uri,
        "--artifacts-destination",
        settings.artifacts_destination,
        "--host",
        settings.mlflow_host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        str(settings.mlflow_workers),
        # A worker imports all of MLflow before it answers uvicorn's health check, which waits
        # 5 s by default; on a busy host that is too short and uvicorn kills and restarts the
        # workers in a loop, so the server never serves a request.
        "--uvicorn-opts",
        "--timeout-worker-healthcheck 120",
    ]


def backend_dsn(uri: str) -> dict[str, object] | None:
    """psycopg2 connection arguments for a `postgresql://` backend store URI, else None."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if scheme not in ("postgresql", "postgres"):
        return None
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "dbname": parts.path.lstrip("/") or "mlflow",
    }


def redacted(uri: str) -> str:
    """The URI with its password replaced by `***`, for printing."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def prepare(settings: DeploySettings) -> bool:
    """Create the backend database and a local artifact folder when they are missing.

    Returns:
        True when the database was created now.
    """
    from deploy.postgres import ensure_database

    destination = settings.artifacts_destination
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    dsn = backend_dsn(settings.mlflow_backend_store_uri)
    return ensure_database(dsn) if dsn else False


def server_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: MLflow's background job runner off unless asked for.

    The job runner (seven huey consumer processes, for GenAI evaluation jobs and trace
    roll-ups) serves nothing nextbest logs; without it the server starts faster, uses less
    memory and stops with its process group.
    """
    environment = dict(os.environ if environ is None else environ)
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return environment


def exec_server(settings: DeploySettings) -> None:  # pragma: no cover - replaces the process
    """Replace this process with the MLflow server (so signals reach it directly)."""
    command = server_command(settings)
    os.execve(command[0], command, server_environment())
