#!/usr/bin/env bash
# Starts the local services the tests talk to, where they are not already running.
# Redis on 127.0.0.1:6379 (or CONTENTMILL_TEST_REDIS_PORT). Installs redis-server with apt when it is missing
# and we are root; otherwise says what to install.
set -euo pipefail

port="${CONTENTMILL_TEST_REDIS_PORT:-6379}"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if listening "$port"; then
  echo "services: redis already listening on 127.0.0.1:$port"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "services: installing redis-server with apt-get"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "services: redis-server is not installed; install Redis (e.g. 'apt-get install redis-server')" >&2
      exit 1
    fi
  fi
  echo "services: starting redis-server on 127.0.0.1:$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no
  for _ in $(seq 1 50); do listening "$port" && break; sleep 0.1; done
  listening "$port" || { echo "services: redis did not start on port $port" >&2; exit 1; }
fi

# PostgreSQL on 127.0.0.1:5432 with trust auth for the ledger tests (database "test").
if listening 5432; then
  echo "services: postgresql already listening on 127.0.0.1:5432"
else
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "services: installing postgresql with apt-get"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "services: PostgreSQL is not installed; install it (e.g. 'apt-get install postgresql')" >&2
      exit 1
    fi
  fi
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "services: starting postgresql $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 100); do listening 5432 && break; sleep 0.1; done
  listening 5432 || { echo "services: postgresql did not start on port 5432" >&2; exit 1; }
fi
