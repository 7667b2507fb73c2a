#!/usr/bin/env bash
# Durable score posts over HTTP: run.py on a fresh SQLite file, wrk with 50 keep-alive
# connections posting scores for 5,000 players. Prints wrk's figures. Needs Debian's wrk.
#   bash bench/bench_http.sh [seconds]
#   CONNS=1 THREADS=1 bash bench/bench_http.sh 5     # one client: the commit latency alone
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench_http: install wrk (apt-get install wrk)" >&2; exit 2; }
duration=${1:-10}
workdir=$(mktemp -d)
port=18888
secret=$(printf 'b%.0s' $(seq 1 40))
run=(.venv/bin/python run.py --database-url "sqlite:///$workdir/bench.db" --jwt-secret "$secret")

"${run[@]}" --port "$port" --log-level warning >"$workdir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

admin=$("${run[@]}" token admin --role admin)
feeder=$("${run[@]}" token feeder --role server)
curl -sf -X POST "http://127.0.0.1:$port/api/boards" -H "Authorization: Bearer $admin" \
  -H 'Content-Type: application/json' -d '{"id": "b", "title": "Bench", "operator": "set"}' >/dev/null

cat >"$workdir/post.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = '{"score": ' .. counter .. ', "user_id": "u' .. (counter % 5000) .. '"}'
  return wrk.format("POST", "/api/boards/b/scores",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $feeder"}, body)
end
LUA
echo "durable score posts, SQLite, ${CONNS:-50} keep-alive connections, ${duration}s"
wrk -t${THREADS:-2} -c${CONNS:-50} -d"${duration}s" -s "$workdir/post.lua" "http://127.0.0.1:$port/"
