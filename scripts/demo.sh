#!/usr/bin/env bash
# The main job, on embedded defaults: set up .venv, generate data, register all the feature
# repos, materialize, retrieve. Needs Python 3.11+, pip and (for pictures) Debian's graphviz.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-system-packages.sh graphviz:dot
source scripts/setup-env.sh notebook,model
python scripts/demo.py
