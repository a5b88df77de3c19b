#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole suite: ruff, mypy, then pytest.
# pytest's exit code 5 ("no tests collected") is turned into a failure: a suite that runs nothing is broken.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# Torch in pytest's own process shares the two cores with the servers the tests start: without passive waiting
# its OpenMP threads spin and slow both (the services set the same for themselves).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy unirep_errors models modality_adapters servable service training sdk/unirep_client benchmarks
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
