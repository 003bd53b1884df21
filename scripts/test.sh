#!/usr/bin/env bash
# npm test: build, type check, lint and the unit tests for everyone; as root also the host tools
# and the lab tests (real clusters in network namespaces), as before.
#
# A lab test is a test file that uses the lab helpers (test/helpers/lab.ts, mesh.ts,
# multicluster.ts) or has the line `// ambit:lab-test` (tests that make network namespaces or
# nftables rules themselves). Run without root, a lab test that is not recognised fails at once:
# the lab helpers refuse to load, namespaces and nftables refuse to be made, and every test file
# has a time limit (--test-timeout), so nothing waits for a lab that cannot come up.
set -euo pipefail
cd "$(dirname "$0")/.."

is_root=false
[ "$(id -u)" = 0 ] && is_root=true

if $is_root; then
  bash scripts/install-host-deps.sh
else
  echo "[test] not root: skipping scripts/install-host-deps.sh (it installs Debian packages and builds Kubernetes)"
fi
echo "[test] build"; npx tsc -p tsconfig.json
echo "[test] type check (sources and tests)"; npx tsc -p tsconfig.test.json
echo "[test] lint"; npx eslint .
echo "[test] tests"

is_lab_test() { grep -qE "from '\./helpers/(lab|mesh|multicluster)\.js'|^// ambit:lab-test" "$1"; }

if [ $# -eq 0 ]; then set -- test/*.test.ts; fi
if $is_root; then
  # Lab tests share the lab address space, so test files run one at a time.
  exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "$@"
fi

unit=()
lab=()
for file in "$@"; do
  if is_lab_test "$file"; then lab+=("$file"); else unit+=("$file"); fi
done
if [ ${#lab[@]} -gt 0 ]; then
  echo "[test] not root: skipping ${#lab[@]} lab test file(s), which create network namespaces and nftables rules (run npm test as root for them):"
  printf '[test]   %s\n' "${lab[@]}"
fi
if [ ${#unit[@]} -eq 0 ]; then
  echo "[test] no unit test files to run"
  exit 0
fi
export AMBIT_TEST_UNPRIVILEGED=1
exec node --import tsx --test --test-concurrency=1 --test-timeout=300000 --test-reporter=spec "${unit[@]}"
