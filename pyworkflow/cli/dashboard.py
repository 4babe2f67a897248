"""``pyworkflow dashboard``: serve the HTTP API, webhook receiver and web UI (uvicorn)."""

from __future__ import annotations

import click

from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.core.config import get_config


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-ui", is_flag=True, help="Serve the JSON API and webhooks only.")
@pass_cli
def dashboard(cli: CliContext, host: str, port: int, no_ui: bool) -> None:
    """Serve the HTTP API (/api), webhook receiver (/hooks/TOKEN) and dashboard.

    Tokens: PYWORKFLOW_DASHBOARD_TOKEN (admin) and PYWORKFLOW_DASHBOARD_READ_TOKEN
    (read-only). Without a token the server listens on a loopback address only.
    Needs the server extra: pip install "pyworkflow-engine[server]".
    """
    # Raises ConfigurationError (one line: which extra to install) without the extra.
    from pyworkflow.server import ServerSettings, check_bind, create_app
    from pyworkflow.server.serve import serve

    settings = ServerSettings.from_config()
    check_bind(host, settings)
    app = create_app(settings=settings, modules=list(get_config().modules) or None, ui=not no_ui)
    click.echo(f"pyworkflow dashboard on http://{_shown(host)}:{port}/", err=True)
    serve(app, host, port)
    del cli  # the global options were applied by the group already


COMMANDS = (dashboard,)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
