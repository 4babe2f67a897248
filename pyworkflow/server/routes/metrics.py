"""``/metrics``: the Prometheus exposition of this process's default registry: what
pyworkflow counted in this process (runs started, cancelled or resumed through the API,
runs it executes under the local runtime; see ``docs/observability.md``) and the process
collectors of ``prometheus_client``.

Needs the read-only (or admin) token unless ``dashboard_public_metrics`` is set, for a
scraper on a trusted network.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from pyworkflow.server.auth import current_principal

router = APIRouter(tags=["system"])

METRICS_HINT = 'metrics need the metrics extra: pip install "pyworkflow-engine[metrics]"'


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not request.app.state.pyworkflow.settings.public_metrics:
        await current_principal(request)  # 401 without a valid token or session
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        raise HTTPException(404, METRICS_HINT) from None
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
