#!/usr/bin/env bash
# Builds and runs the API benchmark against a fresh vireod. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build vireod vireo api_bench >/dev/null
exec build/bin/api_bench --bin build/bin "$@"
