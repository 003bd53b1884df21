#!/usr/bin/env bash
# Installs what the lab needs that npm does not: Debian packages and the Kubernetes
# control-plane binaries. Idempotent: every step checks before it acts.
set -euo pipefail

K8S_CACHE_ROOT="${AMBIT_CACHE_DIR:-$HOME/.cache/ambit}"
say() { printf '[ambit setup] %s\n' "$*" >&2; }
die() { printf '[ambit setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the lab creates network namespaces, veth pairs and nftables tables); re-run with sudo"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 (bookworm) only"

# Debian packages needed at run time by the lab, tests and benchmarks.
RUNTIME_PKGS=(iproute2 nftables etcd-server curl dnsutils tcpdump conntrack procps psmisc util-linux)
BUILD_PKGS=(golang-go rsync make dpkg-dev golang-github-modern-go-reflect2-dev)
# Bump when the build recipe changes, so cached binaries of an older recipe are rebuilt.
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

apt_install "${RUNTIME_PKGS[@]}"
# `ambit image build` (debootstrap) and its test (a throwaway containerd with runc; skopeo reads the archives).
IMAGE_PKGS=(debootstrap containerd runc skopeo)
containerd_was_missing=$(missing_pkgs containerd | sed '/^$/d' | wc -l)
apt_install "${IMAGE_PKGS[@]}"
# Debian's containerd package starts a system containerd under systemd; nothing of ambit uses it
# (the test and the lab run their own), so one this script brought in is stopped again.
if [ "$containerd_was_missing" = 1 ] && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
# etcd-server's package starts a system etcd on 2379; the lab runs its own per cluster.
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi

if [ -n "${AMBIT_K8S_BIN_DIR:-}" ]; then
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$AMBIT_K8S_BIN_DIR/$b" ] || die "AMBIT_K8S_BIN_DIR=$AMBIT_K8S_BIN_DIR has no executable $b"
  done
  say "using Kubernetes binaries from AMBIT_K8S_BIN_DIR=$AMBIT_K8S_BIN_DIR"
  exit 0
fi

# Find the cache directory for the Debian kubernetes source version.
have_cache() {
  local d
  for d in "$K8S_CACHE_ROOT"/k8s-*-"$BUILD_REVISION"/; do
    [ -x "$d/kube-apiserver" ] && [ -x "$d/kube-controller-manager" ] && [ -x "$d/kube-scheduler" ] && { echo "${d%/}"; return 0; }
  done
  return 1
}
if dir=$(have_cache); then say "Kubernetes binaries cached in $dir"; exit 0; fi

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

work="$K8S_CACHE_ROOT/src"
mkdir -p "$work"
cd "$work"
if ! ls -d kubernetes-*/ >/dev/null 2>&1; then
  say "fetching Debian's kubernetes source package (apt-get source kubernetes)"
  apt-get source -qq kubernetes >/dev/null || die "apt-get source kubernetes failed"
fi
srcdir=$(ls -d kubernetes-*/ | head -n1); srcdir=${srcdir%/}
version=${srcdir#kubernetes-}
say "building kube-apiserver, kube-controller-manager, kube-scheduler $version (about 4 minutes on 2 cores)"
cd "$srcdir"
# Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, whose map iteration crashes the API server
# under Go >= 1.18 as soon as a custom resource is stored ("fatal error: fault ... UnsafeIterate").
# Debian's reflect2 1.0.2 has the fix and the same API; swap its sources into vendor/.
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
reflect2_vendor=vendor/github.com/modern-go/reflect2
[ -f "$reflect2_src/go_above_118.go" ] || die "golang-github-modern-go-reflect2-dev (>= 1.0.2) is not installed"
find "$reflect2_vendor" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
find "$reflect2_src" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$reflect2_vendor/" \;
export GOFLAGS=-mod=vendor GO111MODULE=on GOTOOLCHAIN=local
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; die "Kubernetes build failed; full log: $work/build.log"; }
out="$K8S_CACHE_ROOT/k8s-$version-$BUILD_REVISION"
mkdir -p "$out"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  install -m 0755 "_output/bin/$b" "$out/$b" 2>/dev/null || install -m 0755 "$(find _output -type f -name "$b" | head -n1)" "$out/$b"
done
say "Kubernetes $version binaries ready in $out"
