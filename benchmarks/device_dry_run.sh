#!/usr/bin/env bash
# benchmarks/on_device.sh rehearsed on this machine's CPU, small, in an environment shaped like the lent GPU
# machine's: the project's .venv seen without TensorFlow, Airflow, Great Expectations and the kubernetes client
# (none of them is there), so an import the GPU machine cannot satisfy fails here, not in its scarce minutes.
# Takes about 8 minutes on 2 cores. Results (CPU numbers: they say only that every measurement runs) in $OUT,
# default data/device-dry-run/.
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
view=$(mktemp -d /tmp/posesweep-device-view-XXXXXX)
trap 'rm -rf "$view"' EXIT
mkdir "$view/site"
for entry in "$site"/*; do
  case "$(basename "$entry" | tr '[:upper:]' '[:lower:]')" in
    tensorflow*|tf_keras*|keras*|airflow*|apache_airflow*|great_expectations*|kubernetes*) ;;
    *) ln -s "$entry" "$view/site/" ;;
  esac
done
cat > "$view/sitecustomize.py" <<PY
import sys
sys.path[:] = ["$view/site" if p == "$site" else p for p in sys.path]
PY
export OUT=${OUT:-$PWD/data/device-dry-run} PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$view
export POSESWEEP_DEVICE_SECONDS=${POSESWEEP_DEVICE_SECONDS:-1200}
mkdir -p "$OUT"
python3 -c "import importlib.util as u, sys; absent = [m for m in ('tensorflow', 'airflow', 'great_expectations', \
'kubernetes') if u.find_spec(m) is None]; print('absent here, as on the GPU machine:', ', '.join(absent)); \
sys.exit(len(absent) != 4)"
bash benchmarks/on_device.sh --width 320 --height 240 --batch-sizes 2 1 --workers 0 --steps 4 --epochs 1
