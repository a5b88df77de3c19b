#!/usr/bin/env bash
# The README's run command: set the machine up (scripts/setup.sh), then serve every modality over HTTP.
# Arguments go to `unirep serve` (e.g. --port 9000, --config unirep.toml, --set image.weights=ckpt.pth).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/unirep serve "$@"
