#!/usr/bin/env bash
# Memory of `latchkey serve` while it proxies large downloads: 100 MiB through
# `/v1/proxy/{connection}/{*path}` (chunked, then with a Content-Length), then four at once,
# each checked byte for byte (SHA-256) against the upstream's own answer. Prints the server's
# peak RSS (VmHWM) after a small request and after the large ones: streaming keeps it flat,
# buffering would add about 100 MiB per download. Then, with LATCHKEY_PROXY_MAX_RESPONSE_BYTES
# set to 1 MiB, checks that a 2 MiB response fails visibly: 502 when its length is declared, a
# body cut short (curl exit 18) when it is chunked.
#
# Usage: bench/proxy_stream.sh      (env: MIB=100, PROFILE=release|debug)
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${MIB:-100}
PROFILE=${PROFILE:-release}
API_KEY=bench-api-key

if [[ $PROFILE == release ]]; then cargo build --quiet --release -p latchkey; else cargo build --quiet -p latchkey; fi
bin=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/latchkey

unset LATCHKEY_MASTER_KEY LATCHKEY_MASTER_KEY_FILE LATCHKEY_BLOCK_PRIVATE_ADDRESSES \
      LATCHKEY_DATA_DIR LATCHKEY_CONNECTORS LATCHKEY_LOG_JSON LATCHKEY_API_KEY_FILE \
      LATCHKEY_PROXY_MAX_RESPONSE_BYTES LATCHKEY_PROXY_MAX_REQUEST_BYTES

work=$(mktemp -d)
up_pid= lk_pid= capped_pid=
cleanup() {
  for pid in $capped_pid $lk_pid $up_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $capped_pid $lk_pid $up_pid; do wait "$pid" 2>/dev/null || true; done
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

up_port=$(free_port)
python3 bench/stream_upstream.py "$up_port" >"$work/upstream.log" 2>&1 &
up_pid=$!
wait_for "the upstream" grep -q ready "$work/upstream.log"

mkdir -p "$work/connectors" "$work/data"
cat >"$work/connectors/stream.yaml" <<YAML
id: stream
name: Stream
base_url: http://127.0.0.1:$up_port
auth:
  - type: api_key
    fields: [{ key: api_key, label: API key }]
    apply: { in: header, name: X-Api-Key }
YAML
lk=("$bin" --data-dir "$work/data" --connectors "$work/connectors" --log warn)
"${lk[@]}" connect stream --id st1 --set "api_key=k" --no-test >/dev/null
lk_port=$(free_port)
LATCHKEY_API_KEY=$API_KEY "${lk[@]}" serve --listen "127.0.0.1:$lk_port" >"$work/serve.log" 2>&1 &
lk_pid=$!
wait_for "latchkey serve" curl -fsS "http://127.0.0.1:$lk_port/healthz"

bytes=$((MIB * 1024 * 1024))
direct=$(curl -fsS "http://127.0.0.1:$up_port/bytes/$bytes" | sha256sum | cut -d' ' -f1)
proxied() { # query
  curl -fsS -H "Authorization: Bearer $API_KEY" \
    "http://127.0.0.1:$lk_port/v1/proxy/st1/bytes/$bytes$1" | sha256sum | cut -d' ' -f1
}
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$lk_pid/status"; }

curl -fsS -o /dev/null -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$lk_port/v1/proxy/st1/bytes/1024"
small=$(hwm)
for query in "" "?sized"; do
  got=$(proxied "$query")
  [[ $got == "$direct" ]] || { echo "proxied body$query differs: $got != $direct" >&2; exit 1; }
done
one=$(hwm)
pids=()
for i in 1 2 3 4; do proxied "" >"$work/par$i" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done
for i in 1 2 3 4; do
  [[ $(cat "$work/par$i") == "$direct" ]] || { echo "parallel download $i differs" >&2; exit 1; }
done
four=$(hwm)

echo "latchkey ($PROFILE) peak RSS (VmHWM): $small kB after a 1 KiB request;" \
     "$one kB after ${MIB} MiB twice (chunked, sized), body intact;" \
     "$four kB after 4 x ${MIB} MiB at once, bodies intact"
# A configured limit: 1 MiB.
capped_port=$(free_port)
LATCHKEY_API_KEY=$API_KEY LATCHKEY_PROXY_MAX_RESPONSE_BYTES=1048576 \
  "${lk[@]}" serve --listen "127.0.0.1:$capped_port" >"$work/capped.log" 2>&1 &
capped_pid=$!
wait_for "latchkey serve (capped)" curl -fsS "http://127.0.0.1:$capped_port/healthz"
capped_url="http://127.0.0.1:$capped_port/v1/proxy/st1/bytes/2097152"
sized=$(curl -sS -H "Authorization: Bearer $API_KEY" -w ' %{http_code}' "$capped_url?sized")
[[ $sized == *'"upstream_response_too_large"'*' 502' ]] || { echo "sized over the limit: $sized" >&2; exit 1; }
set +e
chunked=$(curl -sS -o /dev/null -H "Authorization: Bearer $API_KEY" -w '%{http_code} %{size_download}' "$capped_url" 2>/dev/null)
chunked_exit=$?
set -e
[[ $chunked_exit == 18 ]] || { echo "chunked over the limit: curl exit $chunked_exit ($chunked)" >&2; exit 1; }
echo "limit 1 MiB, 2 MiB response: declared length -> 502 upstream_response_too_large;" \
     "chunked -> status ${chunked% *}, cut after ${chunked#* } bytes, curl exit 18 (incomplete body)"

if grep -qiE "error|panic" "$work/serve.log"; then
  echo "latchkey serve logged errors:" >&2; grep -iE "error|panic" "$work/serve.log" | head >&2
  exit 1
fi
