#!/usr/bin/env bash
# npm test: host tools, build, type check, lint, then every test (unit and lab) with node's runner.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "npm test must run as root: the lab tests create network namespaces and nftables rules" >&2; exit 1; }
bash scripts/install-host-deps.sh
echo "[test] build"; npx tsc -p tsconfig.json
echo "[test] type check (sources and tests)"; npx tsc -p tsconfig.test.json
echo "[test] lint"; npx eslint .
echo "[test] tests"
# Lab tests share the lab address space, so test files run one at a time.
if [ $# -eq 0 ]; then set -- test/*.test.ts; fi
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "$@"
