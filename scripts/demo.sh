#!/usr/bin/env bash
# The lab in one command: two real Kubernetes nodes in network namespaces, Istio's unmodified
# helloworld and curl samples applied exactly as in seed 000, and curl answering from both
# versions. Set AMBIT_DEMO_KEEP=1 to leave the lab up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES="${AMBIT_SAMPLES_DIR:-../shared/samples/istio}"
CTX=lab-cluster1
ambit() { node bin/ambit.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

[ "$(id -u)" = 0 ] || { echo "npm run demo must run as root (the lab creates network namespaces)" >&2; exit 1; }
[ -f "$SAMPLES/helloworld.yaml" ] || { echo "Istio samples not found in $SAMPLES (set AMBIT_SAMPLES_DIR)" >&2; exit 1; }

step "bring up the lab (topologies/one-cluster.yaml: one cluster, two nodes)"
show ambit lab up -f topologies/one-cluster.yaml
show kubectl --context $CTX get nodes -L topology.kubernetes.io/zone

step "deploy Istio's samples, unmodified, as in seed 000 step 8"
kubectl --context $CTX get ns sample >/dev/null 2>&1 || show kubectl create ns sample --context $CTX
show kubectl apply --context $CTX -n sample -f "$SAMPLES/helloworld.yaml" -l service=helloworld
show kubectl apply --context $CTX -n sample -f "$SAMPLES/helloworld.yaml" -l version=v1
show kubectl apply --context $CTX -n sample -f "$SAMPLES/helloworld.yaml" -l version=v2
show kubectl apply --context $CTX -n sample -f "$SAMPLES/curl.yaml"
show kubectl --context $CTX -n sample rollout status deploy/helloworld-v1 deploy/helloworld-v2 deploy/curl --timeout=120s
show kubectl --context $CTX -n sample get pods -o wide

step "call helloworld from the curl pod (no mesh yet): both versions answer"
seen=""
for i in $(seq 1 10); do
  out=$(ambit lab exec --cluster cluster1 -n sample deploy/curl -- curl -sS --max-time 5 helloworld.sample:5000/hello)
  echo "$out"
  seen="$seen $out"
done
for v in v1 v2; do
  grep -q "version: $v" <<<"$seen" || { echo "demo failed: no answer from $v" >&2; exit 1; }
done

if [ "${AMBIT_DEMO_KEEP:-0}" = 1 ]; then
  step "the lab stays up: try kubectl --context $CTX get pods -A; remove it with: node bin/ambit.js lab down"
else
  step "bring the lab down (AMBIT_DEMO_KEEP=1 keeps it)"
  show ambit lab down
fi
