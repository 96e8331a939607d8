"""Study reports and Great Expectations Data Docs, served by the Airflow API server.

Mounted at ``/posesweep``: ``/posesweep/`` lists every run with a report,
``/posesweep/runs/<cohort>/<run>/report/index.html`` serves a report and
``.../validation/data_docs/index.html`` its Data Docs. Only users the auth manager
lets read ``dlc_training_study`` get an answer (401 without a login, 403 without
that permission), and only files inside a run's ``report/`` and ``validation/``
folders under the data root are ever served. Every answer carries a
Content-Security-Policy that sandboxes it and runs no script (the Great
Expectations Data Docs pull scripts from public CDNs; they stay readable without
them) and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import html
from pathlib import Path

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from posesweep.layout import OutsideDataRootError, resolve_inside
from posesweep.settings import Settings

SERVED_FOLDERS = ("report", "validation")
URL_PREFIX = "/posesweep"
STUDY_DAG_ID = "dlc_training_study"
SECURITY_HEADERS = {
    "Content-Security-Policy": "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
                               "img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'none'; "
                               "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}

app = FastAPI(title="posesweep reports",
              dependencies=[Depends(requires_access_dag("GET", param_dag_id=STUDY_DAG_ID))])


@app.middleware("http")
async def security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def _runs_root() -> Path:
    return Settings.from_env().data_root / "runs"


@app.get("/", response_class=HTMLResponse)
def list_reports() -> str:
    runs_root = _runs_root()
    reports = sorted(runs_root.glob("*/*/report/index.html"), key=lambda p: p.stat().st_mtime, reverse=True)
    items = "".join(
        f'<li><a href="{URL_PREFIX}/runs/{html.escape(p.parts[-4])}/{html.escape(p.parts[-3])}/report/index.html">'
        f"{html.escape(p.parts[-4])} / {html.escape(p.parts[-3])}</a></li>" for p in reports)
    return (f"<!doctype html><title>posesweep reports</title><h1>Study reports</h1>"
            f"<ul>{items or '<li>No report yet.</li>'}</ul>")


@app.get("/runs/{cohort}/{run_name}/{path:path}")
def run_file(cohort: str, run_name: str, path: str) -> FileResponse:
    runs_root = _runs_root()
    try:
        run_dir = resolve_inside(runs_root, Path(cohort) / run_name)
        target = resolve_inside(run_dir, path)
    except OutsideDataRootError:
        raise HTTPException(status_code=404, detail="not found") from None
    relative = target.relative_to(run_dir).parts
    if run_dir.parent.parent != runs_root.resolve() or not relative or relative[0] not in SERVED_FOLDERS \
            or not target.is_file():
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(target)


class PosesweepReportsPlugin(AirflowPlugin):
    name = "posesweep_reports"
    fastapi_apps = [{"app": app, "name": "posesweep reports", "url_prefix": URL_PREFIX}]
    external_views = [{"name": "Study reports", "href": f"{URL_PREFIX}/", "destination": "nav",
                       "category": "browse", "url_route": "posesweep-reports"}]
