#!/usr/bin/env bash
# Starts (or stops) a real Kubernetes control plane on loopback for tests:
# etcd + kube-apiserver built by scripts/testbin.sh, a static admin token,
# RBAC on, and a kubeconfig. Several can run side by side (hub + members),
# each in its own directory.
#
#   scripts/control-plane.sh start DIR            # prints DIR/kubeconfig when ready
#   scripts/control-plane.sh stop DIR             # stops it and removes DIR
#   scripts/control-plane.sh stop-apiserver DIR   # stops only kube-apiserver (etcd keeps the data)
#   scripts/control-plane.sh start-apiserver DIR  # starts it again on the same port, waits until ready
#
# Besides DIR/kubeconfig (static admin token), `start` writes
# DIR/kubeconfig-cert (the same admin authenticated by a client certificate
# signed by DIR/certs/client-ca.crt, files referenced by path) and
# DIR/etcd.url (etcd's client URL, for tests that act on storage directly).
# Extra kube-apiserver flags may be given in STELLA_APISERVER_ARGS (split on
# spaces), e.g. "--watch-cache-sizes=podtemplates#0".
#
# A started plane dies with its owner: STELLA_OWNER_PID, else the caller
# ($PPID). A watchdog outside the caller's process group polls the owner and
# runs `stop` (and kwok-cluster.sh stop) once it is gone, so a test that ctest
# kills at its timeout leaves no etcd or apiserver behind.
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

stop_apiserver() {
  if [ -f "$dir/apiserver.pid" ]; then
    pid=$(cat "$dir/apiserver.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/apiserver.pid"
  fi
}

# Starts kube-apiserver with the flags saved in DIR/apiserver.args (one per
# line) and waits until /readyz answers; on failure prints the log tail.
start_apiserver() {
  mapfile -t args <"$dir/apiserver.args"
  "$bin/kube-apiserver" "${args[@]}" >>"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
  local token port
  token=$(cut -d, -f1 "$dir/tokens.csv")
  port=$(cat "$dir/apiserver.port")
  for _ in $(seq 240); do
    if curl -skf -H "Authorization: Bearer $token" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "control-plane.sh: kube-apiserver did not become ready; last log lines:" >&2
  tail -20 "$dir/apiserver.log" >&2
  return 1
}

case "$cmd" in
  stop) stop; exit 0 ;;
  stop-apiserver) stop_apiserver; exit 0 ;;
  start-apiserver)
    [ -f "$dir/apiserver.args" ] || { echo "control-plane.sh: $dir holds no control plane (no apiserver.args)" >&2; exit 2; }
    bin=$(bash "$here/testbin.sh")
    start_apiserver; exit $? ;;
  watch)
    # Internal: the watchdog that `start` launches. $3 = the owner's pid.
    owner=${3:?usage: control-plane.sh watch DIR OWNER_PID}
    while kill -0 "$owner" 2>/dev/null && [ -f "$dir/apiserver.args" ]; do sleep 1; done
    if [ -f "$dir/apiserver.args" ]; then
      echo "control-plane.sh: owner $owner of $dir exited; stopping the plane" >&2
      [ -d "$dir/kwok" ] && bash "$here/kwok-cluster.sh" stop "$dir" >/dev/null 2>&1
      stop
    fi
    exit 0 ;;
  start) ;;
  *) echo "control-plane.sh: unknown command $cmd (start|stop|stop-apiserver|start-apiserver)" >&2; exit 2 ;;
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

# A client CA and an admin client certificate (CN=admin, O=system:masters),
# for clients that authenticate with a certificate instead of a token.
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=stella-test-client-ca" \
  -keyout "$dir/certs/client-ca.key" -out "$dir/certs/client-ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" \
  -keyout "$dir/certs/admin.key" -out "$dir/certs/admin.csr" 2>/dev/null
openssl x509 -req -in "$dir/certs/admin.csr" -CA "$dir/certs/client-ca.crt" -CAkey "$dir/certs/client-ca.key" \
  -CAcreateserial -days 365 -out "$dir/certs/admin.crt" 2>/dev/null
echo "http://127.0.0.1:$etcd_port" >"$dir/etcd.url"
echo "$api_port" >"$dir/apiserver.port"

args=(
  --etcd-servers "http://127.0.0.1:$etcd_port"
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port"
  --cert-dir "$dir/certs" --token-auth-file "$dir/tokens.csv" --client-ca-file "$dir/certs/client-ca.crt"
  --service-account-issuer https://kubernetes.default.svc
  --service-account-key-file "$dir/certs/sa.pub" --service-account-signing-key-file "$dir/certs/sa.key"
  --service-cluster-ip-range 10.96.0.0/16 --authorization-mode RBAC --allow-privileged=true
)
if [ -n "${STELLA_APISERVER_ARGS:-}" ]; then
  # shellcheck disable=SC2206  # deliberate word splitting of the extra flags
  args+=(${STELLA_APISERVER_ARGS})
fi
printf '%s\n' "${args[@]}" >"$dir/apiserver.args"

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

cat >"$dir/kubeconfig-cert" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: certs/apiserver.crt
users:
- name: admin-cert
  user:
    client-certificate: certs/admin.crt
    client-key: certs/admin.key
contexts:
- name: local
  context: {cluster: local, user: admin-cert}
current-context: local
KC

if start_apiserver; then
  owner=${STELLA_OWNER_PID:-$PPID}
  setsid bash "$here/control-plane.sh" watch "$dir" "$owner" </dev/null >>"$dir/watchdog.log" 2>&1 &
  echo "$dir/kubeconfig"
  exit 0
fi
stop
exit 1
