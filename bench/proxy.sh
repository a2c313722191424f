#!/usr/bin/env bash
# Proxy overhead of `latchkey serve`: wrk against a fixed-response upstream directly (the
# baseline), through `/v1/proxy/{connection}/{*path}` with an API-key header applied, and through
# a connection whose connector applies the same header from a `before_action` script (the cost of
# one hook), in the same run, at 32 connections (throughput) and 1 connection (latency added).
# A second server on the same data, started with `--operation-log false`, gives the cost of
# writing the operation log (`proxy-nolog` against `proxy`), and a third with `--otlp-endpoint`
# (to a second fixed-response server standing in for the collector) the cost of also exporting
# every operation as an OpenTelemetry span (`proxy-otlp` against `proxy`). The bar is nginx (one worker) as a
# reverse proxy that injects the same header statically (`nginx`): the proxy's ratio to it is
# what the issue's goal is measured in.
# Prints requests/s and p50/p99 latency for each with the proxy/direct ratio, and the peak RSS of
# the latchkey process. Fails on any non-2xx response or socket error.
#
# Usage: bench/proxy.sh            (env: DURATION=15 seconds per run, WARMUP=3, CONNS="1 32 256",
#                                  LATCHKEY_BIN=a latchkey binary to measure instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-1 32 256}
API_KEY=bench-api-key
UPSTREAM_KEY=bench-upstream-key-0123

if [ -n "${LATCHKEY_BIN:-}" ]; then
  bin=$(realpath "$LATCHKEY_BIN")
else
  cargo build --quiet --release -p latchkey
  bin=$PWD/target/release/latchkey
fi
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get install -y -q wrk nginx-light >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q wrk nginx-light >/dev/null; }
fi

# Nothing from the caller's environment may change what is measured.
unset LATCHKEY_MASTER_KEY LATCHKEY_MASTER_KEY_FILE LATCHKEY_BLOCK_PRIVATE_ADDRESSES \
      LATCHKEY_DATA_DIR LATCHKEY_CONNECTORS LATCHKEY_LOG_JSON LATCHKEY_API_KEY_FILE

work=$(mktemp -d)
up_pid= lk_pid= nolog_pid= otlp_pid= collector_pid= nginx_pid=
cleanup() {
  for pid in $lk_pid $nolog_pid $otlp_pid $collector_pid $nginx_pid $up_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $lk_pid $nolog_pid $otlp_pid $collector_pid $nginx_pid $up_pid; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() { # description command...
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; exit 1
}

# 1. The upstream.
up_port=$(free_port)
python3 bench/upstream.py "$up_port" >"$work/upstream.log" 2>&1 &
up_pid=$!
wait_for "the upstream" grep -q ready "$work/upstream.log"

# 2. A connector, a connection, and latchkey serve.
mkdir -p "$work/connectors" "$work/data"
cat >"$work/connectors/bench.yaml" <<YAML
id: bench
name: Bench
base_url: http://127.0.0.1:$up_port
auth:
  - type: api_key
    fields: [{ key: api_key, label: API key }]
    apply: { in: header, name: X-Api-Key }
YAML
cat >"$work/connectors/bench-script.yaml" <<YAML
id: bench-script
name: Bench (script)
base_url: http://127.0.0.1:$up_port
auth:
  - type: custom
    fields: [{ key: api_key, label: API key }]
scripts: |
  function before_action() {
    method_request_headers['X-Api-Key'] = method_auth_value;
  }
YAML
lk=("$bin" --data-dir "$work/data" --connectors "$work/connectors" --log warn)
"${lk[@]}" connect bench --id b1 --set "api_key=$UPSTREAM_KEY" --no-test >/dev/null
"${lk[@]}" connect bench-script --id s1 --set "api_key=$UPSTREAM_KEY" --no-test >/dev/null
lk_port=$(free_port)
LATCHKEY_API_KEY=$API_KEY "${lk[@]}" serve --listen "127.0.0.1:$lk_port" >"$work/serve.log" 2>&1 &
lk_pid=$!
wait_for "latchkey serve" curl -fsS "http://127.0.0.1:$lk_port/healthz"
nolog_port=$(free_port)
LATCHKEY_API_KEY=$API_KEY "${lk[@]}" serve --listen "127.0.0.1:$nolog_port" --operation-log false \
  >"$work/serve-nolog.log" 2>&1 &
nolog_pid=$!
wait_for "latchkey serve --operation-log false" curl -fsS "http://127.0.0.1:$nolog_port/healthz"
# The collector: it answers 200 to every export (the exporter ignores a body it cannot decode).
collector_port=$(free_port)
python3 bench/upstream.py "$collector_port" >"$work/collector.log" 2>&1 &
collector_pid=$!
wait_for "the collector" grep -q ready "$work/collector.log"
otlp_port=$(free_port)
LATCHKEY_API_KEY=$API_KEY "${lk[@]}" serve --listen "127.0.0.1:$otlp_port" \
  --otlp-endpoint "http://127.0.0.1:$collector_port" >"$work/serve-otlp.log" 2>&1 &
otlp_pid=$!
wait_for "latchkey serve --otlp-endpoint" curl -fsS "http://127.0.0.1:$otlp_port/healthz"

# nginx, one worker, as a reverse proxy injecting the upstream's key (keep-alive both ways).
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream api { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header X-Api-Key $UPSTREAM_KEY;
    }
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
wait_for "nginx" curl -fsS "http://127.0.0.1:$nginx_port/items/0"

direct_url="http://127.0.0.1:$up_port/items/42?fields=all"
nginx_url="http://127.0.0.1:$nginx_port/items/42?fields=all"
proxy_url="http://127.0.0.1:$lk_port/v1/proxy/b1/items/42?fields=all"
script_url="http://127.0.0.1:$lk_port/v1/proxy/s1/items/42?fields=all"
nolog_url="http://127.0.0.1:$nolog_port/v1/proxy/b1/items/42?fields=all"
otlp_url="http://127.0.0.1:$otlp_port/v1/proxy/b1/items/42?fields=all"

# 3. Check that the proxy answers 200 and applied the credential (the first request the upstream
#    sees is this one).
status=$(curl -sS -o "$work/check.body" -w '%{http_code}' -H "Authorization: Bearer $API_KEY" "$proxy_url")
if [[ $status != 200 ]]; then
  echo "proxy check: status $status: $(cat "$work/check.body")" >&2; exit 1
fi
if ! grep -qx "x-api-key: $UPSTREAM_KEY" "$work/upstream.log"; then
  echo "proxy check: the upstream did not receive X-Api-Key: $UPSTREAM_KEY" >&2
  cat "$work/upstream.log" >&2; exit 1
fi
status=$(curl -sS -o "$work/check.body" -w '%{http_code}' -H "Authorization: Bearer $API_KEY" "$script_url&check=1")
if [[ $status != 200 ]] || [[ $(grep -cx "x-api-key: $UPSTREAM_KEY" "$work/upstream.log") != 2 ]]; then
  echo "scripted proxy check failed: status $status: $(cat "$work/check.body")" >&2; exit 1
fi
rss_idle=$(awk '/^VmRSS/ {print $2}' "/proc/$lk_pid/status")

# 4. The runs. The direct run sends the upstream's key itself, so both requests carry the same
#    header to the upstream.
direct_hdr=(-H "X-Api-Key: $UPSTREAM_KEY")
proxy_hdr=(-H "Authorization: Bearer $API_KEY")
results=$work/results.tsv
run() { # name connections url headers...
  local name=$1 conns=$2 url=$3; shift 3
  local out
  if ((WARMUP > 0)); then wrk -t1 -c"$conns" -d"${WARMUP}s" "$@" "$url" >/dev/null; fi
  out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url")
  echo "$out" >"$work/$name.wrk"
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "$name: wrk reported non-2xx responses or socket errors:" >&2
    echo "$out" >&2
    exit 1
  fi
  awk -v name="$name" -v conns="$conns" '
    function us(v) {
      if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6
      return v + 0
    }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /requests in/ { n = $1 }
    END { printf "%s\t%s\t%s\t%s\t%s\t%s\n", name, conns, rps, p50, p99, n }' <<<"$out" >>"$results"
}
for c in $CONNS; do
  run direct "$c" "$direct_url" "${direct_hdr[@]}"
  run nginx "$c" "$nginx_url" "${proxy_hdr[@]}"
  run proxy "$c" "$proxy_url" "${proxy_hdr[@]}"
  run proxy-nolog "$c" "$nolog_url" "${proxy_hdr[@]}"
  run proxy-otlp "$c" "$otlp_url" "${proxy_hdr[@]}"
  run proxy-script "$c" "$script_url" "${proxy_hdr[@]}"
done
rss_peak=$(awk '/^VmHWM/ {print $2}' "/proc/$lk_pid/status")

# 5. Report.
echo "wrk -t1 -d${DURATION}s (after a ${WARMUP}s warm-up), $(nproc) cores shared by wrk, the upstream and latchkey"
python3 - "$results" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
fmt = lambda us: f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"
print("| run | connections | requests/s | p50 | p99 | requests/s ratio | p50 ratio | p99 ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
base = {}
for name, conns, rps, p50, p99, n in rows:
    rps, p50, p99 = float(rps), float(p50), float(p99)
    if name == "direct":
        base[conns] = (rps, p50, p99)
    b = base[conns]
    print(f"| {name} | {conns} | {rps:,.0f} | {fmt(p50)} | {fmt(p99)} | "
          f"{rps / b[0]:.2f} | {p50 / b[1]:.2f} | {p99 / b[2]:.2f} |")
runs = {(name, conns): (float(rps), float(p50)) for name, conns, rps, p50, p99, n in rows}
p99s = {(name, conns): float(p99) for name, conns, rps, p50, p99, n in rows}
for conns in sorted({c for _, c in runs}, key=int):
    if ("nginx", conns) in runs and ("proxy", conns) in runs:
        (nrps, _), (prps, _) = runs["nginx", conns], runs["proxy", conns]
        print(f"proxy vs nginx at {conns} connection(s): requests/s {prps / nrps:.2f}x, "
              f"p99 {(p99s['proxy', conns] - p99s['nginx', conns]) / 1000:+.2f} ms")
    if ("proxy", conns) in runs and conns == "1":
        print(f"latency added by the proxy at 1 connection: p50 +{runs['proxy', conns][1] - base[conns][1]:.0f} µs")
    if ("proxy-nolog", conns) in runs:
        (prps, pp50), (nrps, np50) = runs["proxy", conns], runs["proxy-nolog", conns]
        print(f"operation log at {conns} connection(s): requests/s {prps / nrps:.2f}x of the proxy "
              f"without it, p50 {pp50 - np50:+.0f} µs")
    if ("proxy-otlp", conns) in runs:
        (prps, pp50), (orps, op50) = runs["proxy", conns], runs["proxy-otlp", conns]
        print(f"OTLP export at {conns} connection(s): requests/s {orps / prps:.2f}x of the proxy "
              f"without it, p50 {op50 - pp50:+.0f} µs")
    if ("proxy-script", conns) in runs:
        (prps, pp50), (srps, sp50) = runs["proxy", conns], runs["proxy-script", conns]
        print(f"before_action hook at {conns} connection(s): p50 +{sp50 - pp50:.0f} µs over the plain proxy, "
              f"requests/s {srps / prps:.2f}x of the plain proxy")
PY
echo "latchkey RSS: $rss_idle kB idle before the runs, peak $rss_peak kB (VmHWM) after the runs"
if grep -qiE "error|panic" "$work/serve.log"; then
  echo "latchkey serve logged errors:" >&2; grep -iE "error|panic" "$work/serve.log" | head >&2
  exit 1
fi
