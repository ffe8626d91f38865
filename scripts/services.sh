#!/usr/bin/env bash
# Starts the PostgreSQL server the tests use (127.0.0.1:5432, database `test`) if it is not up.
set -euo pipefail
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$version" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
  sleep 1
done
echo "services: PostgreSQL is not reachable on 127.0.0.1:5432 (the PostgreSQL tests will fail)" >&2
