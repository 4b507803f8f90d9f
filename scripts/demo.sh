#!/usr/bin/env bash
# Set up, serve the demo site on loopback, crawl it, and show what was stored.
# Works with no internet beyond the package index: the site is served on 127.0.0.2-5.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/crawler ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
fi

work=$(mktemp -d)
trap 'kill "$site_pid" 2>/dev/null || true; wait "$site_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

.venv/bin/python scripts/demo_site.py --hosts 4 --pages 25 --port 8765 \
  --seeds-file "$work/seeds.txt" --ready-file "$work/ready" >/dev/null &
site_pid=$!
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "demo site did not start" >&2; exit 1; }

db=${DB:-demo.db}
rm -f "$db" "$db-wal" "$db-shm"
.venv/bin/crawler crawl --db "$db" --seeds-file "$work/seeds.txt" --per-host 2 --concurrency 16
.venv/bin/crawler stats --db "$db"

echo
echo "Sample query: pages per host and status"
.venv/bin/python - "$db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
query = "SELECT host, status, count(*) FROM pages GROUP BY host, status ORDER BY host, status"
print(query)
for host, status, n in db.execute(query):
    print(f"  {host:<28} {status!s:>4} {n:>4}")
PY
echo "The crawl is in $db: try  sqlite3 $db 'SELECT url, status FROM pages LIMIT 5'"
