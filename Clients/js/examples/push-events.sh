#!/usr/bin/env bash
# A backend pushing chart points to the broker over its HTTP API: one retained point per second
# on metrics/cpu and metrics/memory, as {"t": <ms>, "value": <number>}. Open live-chart.html to
# watch them (README.md). Retained, so a page that reconnects (or a broker restart) loses none.
#
#   BROKER=http://127.0.0.1:8080 TOKEN=... ./push-events.sh
#
# TOKEN (optional): the broker's API key, or a JWT whose publish claim covers metrics/#
# (broker token create --sub backend --publish 'metrics/#' --ttl 1h).
set -euo pipefail
broker=${BROKER:-http://127.0.0.1:8080}
auth=()
if [ -n "${TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $TOKEN"); fi

publish() {  # topic json
  curl -fsS -XPOST "$broker/api/publish?topic=$1&retain=true" \
    -H 'content-type: application/json' "${auth[@]}" -d "$2" >/dev/null \
    || echo "publish to $1 failed (broker down?); retrying next tick" >&2
}

i=0
while true; do
  t=$(date +%s%3N)
  cpu=$(awk -v i="$i" 'BEGIN { printf "%.1f", 50 + 30 * sin(i / 6) + 10 * sin(i / 1.7) }')
  memory=$(awk -v i="$i" 'BEGIN { printf "%.1f", 40 + 5 * sin(i / 3) }')
  publish metrics/cpu "{\"t\":$t,\"value\":$cpu}"
  publish metrics/memory "{\"t\":$t,\"value\":$memory}"
  i=$((i + 1))
  sleep 1
done
