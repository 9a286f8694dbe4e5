"""Serving the dashboard page (:mod:`ribbed.dashboard`) with solara's own server.

``ribbed dashboard`` runs ``python -m solara run ribbed.dashboard:Page`` in a child process, the
way solara documents serving an app: its server (uvicorn, websockets, the page's assets) stays
solara's, and this module only chooses what it serves and how it stops.

* The scenario travels in environment variables (:data:`SCENARIO_VARIABLE`,
  :data:`EVAL_EVERY_VARIABLE`), as a built-in name or an absolute path, so the child reads the
  same file from any folder.
* Nothing is downloaded while the page is served: solara's telemetry is switched off, and its
  assets come from the ``solara-assets`` package on disk; the address solara would fetch a
  missing asset from is pointed at this machine (:data:`OFFLINE_CDN`), so a missing asset is an
  error in the page rather than a download.
* Ctrl-C reaches the child too (same process group): both stop, and ``serve`` returns once the
  child has; a SIGTERM to this process is passed on to the child (unless this process was
  started ignoring it, as ribbed.signals does for runs).  This module imports neither
  solara nor torch, so ``ribbed --version`` stays fast.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ribbed.errors import Problem, RibbedError, ScenarioError

if TYPE_CHECKING:
    from ribbed.scenarios.schema import Scenario

__all__ = ["EVAL_EVERY_VARIABLE", "OFFLINE_CDN", "SCENARIO_VARIABLE", "check_eval_every", "check_port", "serve", "server_command",
           "server_environment"]

#: The environment variable naming the scenario (a built-in name or a YAML path) the page shows.
SCENARIO_VARIABLE = "RIBBED_DASHBOARD_SCENARIO"
#: The environment variable holding the page's default evaluation interval in ticks.
EVAL_EVERY_VARIABLE = "RIBBED_DASHBOARD_EVAL_EVERY"

#: Where solara would download an asset its packages do not hold: nowhere (a closed local port).
OFFLINE_CDN = "http://127.0.0.1:9/"
#: How long the server may take to stop after Ctrl-C before it is killed, in seconds.
STOP_TIMEOUT = 10.0


def scenario_argument(scenario: str) -> str:
    """What the child process is told to load: a file's absolute path (it may run elsewhere), or
    the built-in name as given."""
    path = Path(scenario)
    return str(path.resolve()) if path.exists() else scenario


def server_command(host: str, port: int, open_browser: bool) -> list[str]:
    """The command line of solara's server for the dashboard page."""
    return [sys.executable, "-m", "solara", "run", "ribbed.dashboard:Page", "--host", host, "--port", str(port),
            "--production", "--open" if open_browser else "--no-open", "--log-level", "warning"]


def server_environment(scenario: str, eval_every: int) -> dict[str, str]:
    """This process's environment, with the page's scenario and solara's offline settings."""
    environment = dict(os.environ)
    environment.update({
        SCENARIO_VARIABLE: scenario_argument(scenario),
        EVAL_EVERY_VARIABLE: str(eval_every),
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "false",
        "SOLARA_ASSETS_CDN": OFFLINE_CDN,
        "SOLARA_THEME_SHOW_BANNER": "false",
    })
    return environment


def check_eval_every(scenario: Scenario, eval_every: int) -> int:
    """``eval_every`` if the page can evaluate so (1 to ``run.ticks``), else a located error."""
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or not 1 <= eval_every <= scenario.run.ticks:
        raise ScenarioError(Problem(str(scenario.source), "--eval-every",
                                    f"expected a whole number of ticks from 1 to run.ticks ({scenario.run.ticks}), "
                                    f"got {eval_every!r}",
                                    "give the interval, in ticks, between two evaluations of the dashboard"))
    return eval_every


def check_port(host: str, port: int) -> None:
    """A located error when ``host:port`` cannot be listened on (a port in use, an address that
    is not this machine's), before the server is started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise RibbedError(Problem("ribbed dashboard", "--port" if exc.errno == errno.EADDRINUSE else "--host",
                                  f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                  "choose another --port (or stop what listens there), and a --host of this "
                                  "machine (127.0.0.1 by default)")) from None


def serve(scenario: str, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          eval_every: int = 1, on_start: Callable[[str], None] | None = None) -> int:
    """Serve the dashboard of ``scenario`` until Ctrl-C (or SIGTERM); return the server's exit
    status (0 when it was stopped so).  ``on_start`` is called with the page's address once the
    server process is started."""
    try:
        child = subprocess.Popen(server_command(host, port, open_browser), env=server_environment(scenario, eval_every))
    except OSError as exc:
        raise RibbedError(Problem("ribbed dashboard", "", f"could not start solara's server: {exc}",
                                  "check that solara is installed in this Python (pip install -e .)")) from None
    shown = "localhost" if host in ("0.0.0.0", "::") else host  # every address: this machine's will do
    if on_start:
        on_start(f"http://{shown}:{port}")

    def on_term(signum: int, frame: object) -> None:
        child.terminate()

    installed = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    previous = signal.signal(signal.SIGTERM, on_term) if installed else None
    try:
        try:
            status = child.wait()
        except KeyboardInterrupt:  # the child had its Ctrl-C too: let it stop, then make sure it did
            _stop(child)
            return 0
        return 0 if status in (-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT) else status
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            _stop(child)


def _stop(child: subprocess.Popen) -> int:
    """Wait for ``child`` to stop after a signal; ask again, then kill it, if it does not."""
    for action in (None, child.terminate, child.kill):
        if action is not None:
            action()
        try:
            return child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            continue
    return child.wait()
