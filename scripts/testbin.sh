#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries the operator's tests run
# against (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl of the same release), plus kwok and helm, from their Go modules (nothing prebuilt can be fetched
# here), and caches them by version. Prints the directory holding them.
#
#   scripts/testbin.sh            # build what is missing, print the bin dir
#
# k8s.io/kubernetes pins every staging module at v0.0.0 with a replace to a
# local path, so it cannot be `go install`-ed: a throwaway module requires it
# and replaces each staging module (read from that release's own go.mod) with
# its published v0.N.M version. Cold builds take many minutes on 2 cores; the
# cache makes later runs instant.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.35.4}
KWOK_VERSION=${KWOK_VERSION:-0.7.0}
HELM_VERSION=${HELM_VERSION:-3.21.4}
cache=${STELLA_CACHE:-$HOME/.cache/stella}/testbin/k8s-${K8S_VERSION}
mkdir -p "$cache"
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

have_all() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm; do
    [ -x "$cache/$b" ] || return 1
  done
}
if have_all; then echo "$cache"; exit 0; fi
# One build at a time: a second caller (another test, another make) waits
# here and then finds the binaries the first one built.
exec 9>"$cache/.build.lock"
flock 9
if have_all; then echo "$cache"; exit 0; fi
# The Go toolchain of the machine image lives here when not on PATH.
[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "testbin: the Go toolchain is required (go not found)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Kubernetes components -------------------------------------------------
k8s_mod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
staging_minor="0.${K8S_VERSION#1.}"
mkdir -p "$work/k8s"
{
  echo "module stella.local/testbin"
  echo
  grep -E '^go [0-9]' "$k8s_mod"
  echo
  echo "require k8s.io/kubernetes v${K8S_VERSION}"
  echo
  # Every "k8s.io/X => ./staging/src/k8s.io/X" becomes "k8s.io/X => k8s.io/X v0.N.M".
  grep -Eo 'k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$k8s_mod" |
    awk -v v="v${staging_minor}" '{print "replace " $1 " => " $1 " " v}'
} > "$work/k8s/go.mod"
cat > "$work/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
(
  cd "$work/k8s"
  go mod tidy -e >&2
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$cache/$cmd" ] || go build -o "$cache/$cmd" "k8s.io/kubernetes/cmd/$cmd" >&2
  done
)

# --- etcd: the version this Kubernetes release pins --------------------------
etcd_version=$(grep -Eo 'go\.etcd\.io/etcd/server/v3 v[0-9.]+' "$k8s_mod" | awk '{print $2}')
if [ ! -x "$cache/etcd" ]; then
  mkdir -p "$work/etcd"
  cat > "$work/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$work/etcd" && go mod init stella.local/etcd >&2 && go get "go.etcd.io/etcd/server/v3@${etcd_version}" >&2 &&
     go mod tidy >&2 && go build -o "$cache/etcd" . >&2)
fi

# --- kwok and helm: plain go install ---------------------------------------
[ -x "$cache/kwok" ] || GOBIN="$cache" go install "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}" >&2
[ -x "$cache/helm" ] || GOBIN="$cache" go install "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}" >&2

have_all || { echo "testbin: some binaries are missing in $cache" >&2; exit 1; }
echo "$cache"
