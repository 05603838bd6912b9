#!/usr/bin/env bash
# The main job. Until the multi-host lab lands it runs what works today:
# the talk's policy, in its 2017 form, checked by the reference evaluator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
echo "brindle demo: the multi-host lab is not built yet."
