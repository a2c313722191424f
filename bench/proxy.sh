#!/usr/bin/env bash
# Proxy overhead: wrk against a fixed-response upstream directly (the baseline) and through
# `latchkey serve`'s proxy with an API key applied, in the same run. Prints requests/s and
# latency for each and the ratio, and latchkey's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
cargo build --quiet --release -p latchkey
bin=target/release/latchkey
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); lk_port=$(free_port)
python3 bench/upstream.py "$up_port" > "$work/upstream.log" &
up_pid=$!
trap 'kill $up_pid ${lk_pid:-} 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/connectors"
cat > "$work/connectors/bench.yaml" <<YAML
id: bench
name: Bench
base_url: http://127.0.0.1:$up_port
auth:
  - type: api_key
    apply: { in: header, name: X-Api-Key }
YAML
export LATCHKEY_DATA_DIR="$work/data" LATCHKEY_CONNECTORS="$work/connectors" LATCHKEY_LOG=warn
$bin connect bench --id b1 --set api_key=bench-key-0123 --no-test >/dev/null
LATCHKEY_API_KEY=bench-api-key $bin serve --listen "127.0.0.1:$lk_port" 2>"$work/serve.log" &
lk_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$lk_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 100); do grep -q ready "$work/upstream.log" && break; sleep 0.1; done

run() { # name url connections extra-args...
  local name=$1 url=$2 conns=$3; shift 3
  local out; out=$(wrk -t1 -c"$conns" -d"${DURATION:-10}s" --latency "$@" "$url")
  if grep -q "Non-2xx" <<<"$out"; then echo "$name: non-2xx responses"; echo "$out"; exit 1; fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
  echo "$rps" > "$work/$name.rps"
}
for conns in 32 1; do
  run "direct-c$conns" "http://127.0.0.1:$up_port/items/1" "$conns"
  run "proxy-c$conns" "http://127.0.0.1:$lk_port/v1/proxy/b1/items/1" "$conns" -H 'Authorization: Bearer bench-api-key'
  python3 -c "import sys; d,p=(float(open(f).read()) for f in sys.argv[1:]); print(f'proxy/direct throughput at {sys.argv[1].split(\"-c\")[-1][:-4]} connections: {p/d:.2f}')" "$work/direct-c$conns.rps" "$work/proxy-c$conns.rps"
done
echo "latchkey peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$lk_pid/status)"
