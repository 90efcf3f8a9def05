"""`make ui`: the sandbox, `dagster dev` and the MLflow UI together, stopped together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from orchestration.settings import PROJECT_ROOT, get_settings

# The page to open for a service whose root answers nothing useful (the sandbox's is a 404).
_PAGES = {"sandbox": "/_sandbox/facts"}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_for_port(port: int, seconds: float, proc: subprocess.Popen) -> bool:
    """True once the port answers; False after `seconds`, or as soon as `proc` has ended."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _port_free(port):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def run_ui(console: Console, dagster_port: int, mlflow_port: int) -> int:
    """Start the three services, print their addresses and wait for Ctrl-C.

    Returns:
        The exit code: 0 after a clean Ctrl-C, 1 when a service could not start.
    """
    from rich.markup import escape

    from orchestration.demo import half_set_credentials, unknown_dataset

    settings = get_settings()
    refused = half_set_credentials(settings) or unknown_dataset(settings)
    if refused:
        console.print(f"[red]{escape(refused)}[/red]", soft_wrap=True)
        return 1
    settings.prepare_home()
    bin_dir = Path(sys.executable).parent
    busy = [p for p in (settings.sandbox_port, dagster_port, mlflow_port) if not _port_free(p)]
    if busy:
        console.print(
            f"[red]port(s) {busy} already in use[/red]: stop what holds them, or choose others"
            " with --dagster-port, --mlflow-port and NEXTBEST_SANDBOX_PORT"
        )
        return 1
    env = dict(os.environ)
    # As in the demo, the sandbox shows the whole event history unless a window is asked for.
    env.setdefault("NEXTBEST_SANDBOX_EVENT_WINDOW_DAYS", "0")
    commands: list[tuple[str, list[str], int]] = []
    if settings.uses_sandbox:
        commands.append(
            (
                "sandbox",
                [
                    str(bin_dir / "nextbest"),
                    "sandbox",
                    "serve",
                    "--dataset",
                    settings.dataset,
                    "--port",
                    str(settings.sandbox_port),
                ],
                settings.sandbox_port,
            )
        )
        # The code location reads these at run time, so runs started in the UI use the sandbox.
        from sandbox.runner import INTERCOM_TOKEN, STRIPE_KEY

        base = f"http://127.0.0.1:{settings.sandbox_port}"
        env |= {
            "INTERCOM_BASE_URL": f"{base}/intercom",
            "INTERCOM_ACCESS_TOKEN": INTERCOM_TOKEN,
            "STRIPE_BASE_URL": f"{base}/stripe",
            "STRIPE_API_KEY": STRIPE_KEY,
        }
    commands.append(
        (
            "dagster",
            [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-p", str(dagster_port)],
            dagster_port,
        )
    )
    if settings.tracking_uri.startswith(("sqlite:", "postgresql:")):
        commands.append(
            (
                "mlflow",
                [
                    str(bin_dir / "mlflow"),
                    "ui",
                    "--backend-store-uri",
                    settings.tracking_uri,
                    "--default-artifact-root",
                    str(settings.mlflow_dir / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    # One browser on a laptop needs one worker; the default four take over a
                    # minute to start on two busy cores, against the 120 s we wait for the port.
                    "--workers",
                    "1",
                ],
                mlflow_port,
            )
        )
    return supervise(console, commands, env)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _default_interrupt() -> None:
    # Started in the background by a script or nohup, this process ignores SIGINT and its
    # children would too; `dagster dev` gives SIGTERM its SIGINT handler, so it would ignore
    # the stop as well and be killed 20 s later, with its runs left unfinished.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def supervise(
    console: Console, commands: list[tuple[str, list[str], int]], env: dict[str, str]
) -> int:
    """Start each command, wait until its port opens, then until Ctrl-C, and stop them all.

    Each child runs in a session of its own, so a closed terminal (SIGHUP) or a `kill`
    (SIGTERM) reaches only this process: both are handled as Ctrl-C, else the children
    would outlive it and keep the ports and the warehouse.

    Returns:
        The exit code: 0 after a clean stop, 1 when a command did not start or died.
    """
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    processes: list[tuple[str, subprocess.Popen]] = []
    try:
        for name, command, port in commands:
            # A new session per child, so Ctrl-C reaches us once and we stop each child cleanly.
            proc = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=_default_interrupt,
            )
            processes.append((name, proc))
            if not _wait_for_port(port, 120, proc):
                if proc.poll() is not None:
                    console.print(
                        f"[red]{name} exited with code {proc.returncode} before opening port"
                        f" {port}[/red]: its error is above"
                    )
                else:
                    console.print(f"[red]{name} did not open port {port} within 120 s[/red]")
                return 1
            console.print(f"{name}: http://127.0.0.1:{port}{_PAGES.get(name, '')}")
        console.print("all running; press Ctrl-C to stop them")
        while all(proc.poll() is None for _, proc in processes):
            time.sleep(1)
        dead = [name for name, proc in processes if proc.poll() is not None]
        console.print(f"[red]{', '.join(dead)} stopped unexpectedly[/red]")
        return 1
    except KeyboardInterrupt:
        console.print("stopping")
        return 0
    finally:
        for _, proc in reversed(processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
