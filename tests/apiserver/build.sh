#!/usr/bin/env bash
# Builds herald-test-apiserver (kube-apiserver + embedded etcd, kubectl, kube-proxy, kubelet,
# kube-controller-manager, kube-scheduler) into
# a cache directory outside the repository, keyed by a hash of the sources,
# and prints that directory (which also holds a symlink per component) as the only
# line on stdout. A warm cache makes this a no-op.
set -euo pipefail
export LC_ALL=C # stable glob order for the hash

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# Stamp the k8s.io/kubernetes version from go.mod, which the server and kubectl
# report (the default is a placeholder).
k8s="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' go.mod)" # e.g. v1.35.4
minor="${k8s#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
done

# build.sh is hashed too, as it holds the build flags.
hash="$(cat go.mod go.sum build.sh *.go | sha256sum | cut -c1-16)"
out="${HERALD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}/apiserver-$hash"
bin="$out/herald-test-apiserver"

if [[ ! -x "$bin" ]]; then
  mkdir -p "$out"
  echo "build.sh: building $bin (a cold build takes minutes)" >&2
  # Build under a temporary name, so an interrupted build leaves nothing
  # that looks finished; concurrent builds each use their own name.
  tmp="$out/.herald-test-apiserver.$$"
  trap 'rm -f "$tmp"' EXIT
  CGO_ENABLED=0 go build -trimpath -buildvcs=false \
    -ldflags "$ldflags" -o "$tmp" . >&2
  mv -f "$tmp" "$bin"
  echo "build.sh: built $bin" >&2
  # Older builds are 100+ MiB each: keep the two built last (another clone or branch on this
  # machine may use the other one), remove the rest.
  ls -1dt "$(dirname "$out")"/apiserver-* 2>/dev/null | tail -n +3 | xargs -r rm -rf
fi
for tool in kubectl kube-proxy kubelet kube-controller-manager kube-scheduler; do
  if [[ ! -L "$out/$tool" ]]; then
    ln -sfn herald-test-apiserver "$out/$tool.$$"
    mv -fT "$out/$tool.$$" "$out/$tool"
  fi
done
echo "$out"
