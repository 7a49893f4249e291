#!/bin/sh
# The client: runs programs under the shim (`tcplab run -- CMD`), whose sockets live on
# the stack daemon, reached through the shared volume /run/tcplab. The client has no
# network of its own. Started last (after the stack is healthy), so it says what to try.
set -eu
/opt/tcplab/docker/build-shim.sh || true
if [ $# -gt 0 ]; then
    exec "$@"
fi
cat <<'TEXT'
client: the lab is up. In another terminal, try:
client:   docker compose exec peer ping 10.0.0.2
client:   docker compose exec peer curl -s http://10.0.0.2/
client:   docker compose exec client tcplab run -- curl -s http://peer/
client: (docker-compose works the same; the capture is out/stack.pcap; docs/lab.md has more)
TEXT
trap 'exit 0' TERM INT
sleep infinity &
wait $!
