"""Screenshots of the Airflow trigger form and of a study report in the Airflow UI, for a person to look at.

Starts a real ``airflow standalone`` on PostgreSQL on a tiny synthetic cohort, runs a short
study through the REST API, then drives headless Chromium (Playwright with the
system's ``/usr/bin/chromium``; nothing is downloaded) logged in with the
admin's JWT cookie. Writes ``trigger_form_cohort.png`` (the cohort field's proposals), ``trigger_form.png``,
``report_in_ui.png`` and ``report.png`` to ``--out``.

    .venv/bin/python tests/support/screenshots.py --out data/screenshots
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from airflow_local import LocalAirflow  # run as a script: this folder is on sys.path

from posesweep.layout import safe_name
from posesweep.synthetic import SynthOptions, generate_cohort

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CONF = {"cohort": "screenshots", "frames_per_video": 8, "frame_set_sizes": [10, 20], "train_fraction": 0.8,
        "max_iterations": 60, "snapshot_interval": 20, "allow_random_init": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="posesweep-screenshots-"))
    generate_cohort(work / "data" / "cohorts" / "screenshots", SynthOptions(participants=3, duration_s=2.0, seed=5))
    args.out.mkdir(parents=True, exist_ok=True)
    with LocalAirflow(work / "airflow", work / "data") as airflow:
        status, body = airflow.request("/api/v2/dags/dlc_training_study/dagRuns", "POST",
                                       {"logical_date": None, "conf": CONF})
        run_id = json.loads(body)["dag_run_id"]
        state = airflow.wait_for_run("dlc_training_study", run_id, 900)
        print(f"study run {run_id}: {state}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": "_token", "value": airflow.token, "url": airflow.base}])
            page = context.new_page()
            page.goto(f"{airflow.base}/dags/dlc_training_study", wait_until="networkidle")
            page.get_by_role("button", name="Trigger").first.click()
            page.get_by_text("Cohort", exact=True).first.click()  # the cohort field proposes the cohort folders
            page.wait_for_timeout(1000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out / "trigger_form_cohort.png"))
            # the proposals are the field's datalist, which the browser shows natively (not in a screenshot)
            proposals = page.eval_on_selector_all("datalist option", "options => options.map(o => o.value)")
            print(f"cohort field proposals in the trigger form: {proposals}")
            page.get_by_text("Cohort", exact=True).first.click()
            page.get_by_text("Training", exact=True).click()  # open one section of the form
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "trigger_form.png"))
            page.goto(f"{airflow.base}/plugin/posesweep-reports", wait_until="networkidle")
            page.frame_locator("iframe").get_by_role("link").first.click()  # the report, inside the UI
            page.wait_for_timeout(3000)
            page.screenshot(path=str(args.out / "report_in_ui.png"))
            report = f"{airflow.base}/posesweep/runs/screenshots/{safe_name(run_id)}/report/index.html"
            page.goto(report, wait_until="networkidle")
            page.screenshot(path=str(args.out / "report.png"), full_page=True)
            browser.close()
    for name in ("trigger_form_cohort.png", "trigger_form.png", "report_in_ui.png", "report.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
