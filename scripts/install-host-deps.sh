#!/usr/bin/env bash
# Installs what the lab needs that npm does not: Debian packages, the Kubernetes control-plane
# binaries, the node binaries (kubelet, kube-proxy) and the pause binary, all built from Debian's
# kubernetes source package into one cache directory. Idempotent: every step checks before it
# acts, and a cache that has only some of the binaries gets only the missing ones built.
set -euo pipefail

K8S_CACHE_ROOT="${AMBIT_CACHE_DIR:-$HOME/.cache/ambit}"
say() { printf '[ambit setup] %s\n' "$*" >&2; }
die() { printf '[ambit setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the lab creates network namespaces, veth pairs and nftables tables); re-run with sudo"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 (bookworm) only"

# Debian packages needed at run time by the lab, tests and benchmarks.
RUNTIME_PKGS=(iproute2 nftables etcd-server curl dnsutils tcpdump conntrack procps psmisc util-linux)
# What a real lab node needs: its container runtime (containerd, runc), the CNI plugins (bridge,
# ptp, host-local), socat (kubelet 1.20's port-forward execs it) and iptables (kube-proxy and
# kubelet use it; Debian's is the nft backend).
NODE_PKGS=(containerd runc containernetworking-plugins socat iptables)
BUILD_PKGS=(golang-go rsync make dpkg-dev golang-github-modern-go-reflect2-dev gcc libc6-dev)
CONTROL_PLANE_BINS=(kube-apiserver kube-controller-manager kube-scheduler)
NODE_BINS=(kubelet kube-proxy)
# Bump when the build recipe of existing binaries changes, so cached binaries of an older recipe
# are rebuilt (adding a binary needs no bump: missing ones are built into the existing cache).
BUILD_REVISION=r2

missing_pkgs() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out+=("$p")
  done
  printf '%s\n' "${out[@]}"
}

apt_updated=0
apt_install() {
  local want
  mapfile -t want < <(missing_pkgs "$@" | sed '/^$/d')
  [ "${#want[@]}" -eq 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
    apt_updated=1
  fi
  say "installing Debian packages: ${want[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null \
    || die "apt-get install failed for: ${want[*]}"
}

apt_install "${RUNTIME_PKGS[@]}" "${NODE_PKGS[@]}"
# `ambit image build` (debootstrap) and its test (a throwaway containerd; skopeo reads the archives).
IMAGE_PKGS=(debootstrap skopeo)
apt_install "${IMAGE_PKGS[@]}"
# etcd-server's package starts a system etcd on 2379, containerd's a system containerd on
# /run/containerd; the lab runs its own per cluster and per node.
for unit in etcd containerd; do
  if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null; then
    say "disabling the system $unit service (the lab runs its own)"
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

# Binaries the lab runs, and where each comes from: the Go ones are built with the Kubernetes
# makefile, pause with gcc from build/pause/linux/pause.c of the same source tree.
missing_bins() {
  local dir=$1 b; shift
  for b in "$@"; do [ -x "$dir/$b" ] || echo "$b"; done
}

if [ -n "${AMBIT_K8S_BIN_DIR:-}" ]; then
  for b in "${CONTROL_PLANE_BINS[@]}"; do
    [ -x "$AMBIT_K8S_BIN_DIR/$b" ] || die "AMBIT_K8S_BIN_DIR=$AMBIT_K8S_BIN_DIR has no executable $b"
  done
  mapfile -t absent < <(missing_bins "$AMBIT_K8S_BIN_DIR" "${NODE_BINS[@]}" pause)
  say "using Kubernetes binaries from AMBIT_K8S_BIN_DIR=$AMBIT_K8S_BIN_DIR"
  [ "${#absent[@]}" -eq 0 ] || say "note: AMBIT_K8S_BIN_DIR lacks ${absent[*]} (real lab nodes need them there)"
  exit 0
fi

# The cache directory of a previous build of this recipe revision that has the control plane.
cached_dir() {
  local d
  for d in "$K8S_CACHE_ROOT"/k8s-*-"$BUILD_REVISION"/; do
    [ -d "$d" ] || continue
    [ -z "$(missing_bins "${d%/}" "${CONTROL_PLANE_BINS[@]}")" ] && { echo "${d%/}"; return 0; }
  done
  return 1
}

work="$K8S_CACHE_ROOT/src"
dir=$(cached_dir || true)
if [ -n "$dir" ]; then
  mapfile -t todo < <(missing_bins "$dir" "${NODE_BINS[@]}" pause)
  if [ "${#todo[@]}" -eq 0 ]; then say "Kubernetes binaries cached in $dir (control plane, kubelet, kube-proxy, pause)"; exit 0; fi
  # Complete it from the same source tree; without that tree, build everything anew below.
  version=${dir##*/k8s-}; version=${version%-"$BUILD_REVISION"}
  [ -d "$work/kubernetes-$version" ] || { say "source tree of $dir is gone: rebuilding all binaries"; dir=""; }
fi

apt_install "${BUILD_PKGS[@]}"
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  say "adding a deb-src entry for bookworm (needed by apt-get source)"
  cat > /etc/apt/sources.list.d/ambit-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq || die "apt-get update failed after adding deb-src"
fi

mkdir -p "$work"
cd "$work"
if ! ls -d kubernetes-*/ >/dev/null 2>&1; then
  say "fetching Debian's kubernetes source package (apt-get source kubernetes)"
  apt-get source -qq kubernetes >/dev/null || die "apt-get source kubernetes failed"
fi
if [ -n "$dir" ]; then
  srcdir="kubernetes-$version"
else
  srcdir=$(ls -d kubernetes-*/ | head -n1); srcdir=${srcdir%/}
  version=${srcdir#kubernetes-}
  todo=("${CONTROL_PLANE_BINS[@]}" "${NODE_BINS[@]}" pause)
fi
out="$K8S_CACHE_ROOT/k8s-$version-$BUILD_REVISION"
cd "$srcdir"

go_bins=(); for b in "${todo[@]}"; do [ "$b" = pause ] || go_bins+=("$b"); done
if [ "${#go_bins[@]}" -gt 0 ]; then
  # Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, whose map iteration crashes the API server
  # under Go >= 1.18 as soon as a custom resource is stored ("fatal error: fault ... UnsafeIterate").
  # Debian's reflect2 1.0.2 has the fix and the same API; swap its sources into vendor/.
  reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
  reflect2_vendor=vendor/github.com/modern-go/reflect2
  [ -f "$reflect2_src/go_above_118.go" ] || die "golang-github-modern-go-reflect2-dev (>= 1.0.2) is not installed"
  find "$reflect2_vendor" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  find "$reflect2_src" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$reflect2_vendor/" \;
  export GOFLAGS=-mod=vendor GO111MODULE=on GOTOOLCHAIN=local
  what=(); for b in "${go_bins[@]}"; do what+=("cmd/$b"); done
  minutes=$(( ${#go_bins[@]} * 2 + 1 ))
  say "building ${go_bins[*]} $version from $work/$srcdir (about $minutes minutes on 2 cores; log: $work/build.log)"
  t0=$(date +%s)
  make WHAT="${what[*]}" >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; die "Kubernetes build failed; full log: $work/build.log"; }
  mkdir -p "$out"
  for b in "${go_bins[@]}"; do
    install -m 0755 "_output/bin/$b" "$out/$b" 2>/dev/null || install -m 0755 "$(find _output -type f -name "$b" | head -n1)" "$out/$b"
  done
  say "built ${go_bins[*]} in $(( $(date +%s) - t0 ))s"
fi
if printf '%s\n' "${todo[@]}" | grep -qx pause; then
  say "building pause from $srcdir/build/pause/linux/pause.c (gcc -static)"
  mkdir -p "$out"
  gcc -Os -Wall -Werror -static -DVERSION="v$version-ambit" -o "$out/pause.tmp" build/pause/linux/pause.c \
    || die "building pause failed (gcc and libc6-dev are needed)"
  strip "$out/pause.tmp" 2>/dev/null || true
  mv "$out/pause.tmp" "$out/pause"
fi
say "Kubernetes $version binaries ready in $out: $(cd "$out" && ls | tr '\n' ' ')"
