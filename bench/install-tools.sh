#!/usr/bin/env bash
# Installs the load generators, servers and native tunnels the benchmarks use (Debian 12
# packages). Idempotent: packages already installed are skipped, and services the packages
# start on their own are stopped, because the benchmarks run their own instances.
set -euo pipefail

say() { printf '[ambit bench setup] %s\n' "$*" >&2; }
die() { printf '[ambit bench setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the benchmarks create network namespaces); re-run with sudo"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 (bookworm) only"

# iperf3: L4 bulk throughput · wrk: HTTP keep-alive and new-connection load · nginx-light: the fast
# HTTP server · stunnel4, haproxy: the native mTLS tunnels compared against · openssl: throwaway
# certificates · iproute2, procps: namespaces and /proc. Debian 12 has no wrk2, fortio or vegeta:
# the fixed-rate latency client is bench/tools/fixed-rate.ts (Node).
BENCH_PKGS=(iperf3 wrk nginx-light stunnel4 haproxy openssl iproute2 procps)
# Services these packages enable at install time; the benchmarks start their own on other ports.
BENCH_SERVICES=(nginx haproxy stunnel4 iperf3)

missing_pkgs() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out+=("$p")
  done
  printf '%s\n' "${out[@]}"
}

mapfile -t want < <(missing_pkgs "${BENCH_PKGS[@]}" | sed '/^$/d')
if [ "${#want[@]}" -eq 0 ]; then
  say "all bench packages present: ${BENCH_PKGS[*]}"
else
  say "apt-get update"
  apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
  say "installing Debian packages: ${want[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null \
    || die "apt-get install failed for: ${want[*]}"
fi

for svc in "${BENCH_SERVICES[@]}"; do
  if systemctl is-active --quiet "$svc" 2>/dev/null; then
    say "stopping and disabling the system $svc service (the benchmarks run their own)"
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

for tool in iperf3 wrk nginx stunnel4 haproxy openssl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool is not on PATH after the install"
done
say "bench tools ready: iperf3 $(iperf3 --version 2>/dev/null | head -n1 | awk '{print $2}'), wrk, nginx, stunnel4, haproxy"
