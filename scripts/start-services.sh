#!/usr/bin/env bash
# Starts the local PostgreSQL and Redis that the test suite needs, when they are installed
# but not running (a fresh machine or CI may have them stopped). Waits until both answer.
set -euo pipefail

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and is not installed here" >&2
  fi
fi

if ! redis_ready; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  else
    echo "Redis is not running on 127.0.0.1:6379 and is not installed here" >&2
  fi
fi

for _ in $(seq 1 60); do
  if pg_ready && redis_ready; then exit 0; fi
  sleep 0.5
done
echo "PostgreSQL or Redis did not come up in 30 s" >&2
exit 1
