#!/usr/bin/env bash
# Starts (or stops) a real Kubernetes control plane on loopback for tests:
# etcd + kube-apiserver built by scripts/testbin.sh, a static admin token,
# RBAC on, and a kubeconfig. Several can run side by side (hub + members),
# each in its own directory.
#
#   scripts/control-plane.sh start DIR   # prints DIR/kubeconfig when ready
#   scripts/control-plane.sh stop DIR    # stops it and removes DIR
set -euo pipefail

cmd=${1:?usage: control-plane.sh start|stop DIR}
dir=${2:?usage: control-plane.sh start|stop DIR}
here=$(cd "$(dirname "$0")" && pwd)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stop() {
  for p in apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      pid=$(cat "$dir/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "control-plane.sh: unknown command $cmd (start|stop)" >&2; exit 2 ;;
esac

bin=$(bash "$here/testbin.sh")
mkdir -p "$dir/etcd" "$dir/certs"
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

"$bin/etcd" --data-dir "$dir/etcd" --name default \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --log-level warn >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

# Service-account signing key and a static admin token.
openssl genrsa -out "$dir/certs/sa.key" 2048 2>/dev/null
openssl rsa -in "$dir/certs/sa.key" -pubout -out "$dir/certs/sa.pub" 2>/dev/null
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"

"$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$dir/certs" --token-auth-file "$dir/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$dir/certs/sa.pub" --service-account-signing-key-file "$dir/certs/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 --authorization-mode RBAC --allow-privileged=true \
  >"$dir/apiserver.log" 2>&1 &
echo $! >"$dir/apiserver.pid"

cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC

for _ in $(seq 240); do
  if curl -skf -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then
    echo "$dir/kubeconfig"
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then break; fi
  sleep 0.5
done
echo "control-plane.sh: kube-apiserver did not become ready; last log lines:" >&2
tail -20 "$dir/apiserver.log" >&2
stop
exit 1
