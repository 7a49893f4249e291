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
client:   tcplab lab exec peer ping 10.0.0.2
client:   tcplab lab exec peer curl -s http://10.0.0.2/
client:   tcplab lab exec client tcplab run -- curl -s http://peer/
client: (tcplab lab exec is docker exec into this project's container; without tcplab
client:  installed: docker compose exec SERVICE CMD, or docker-compose exec SERVICE CMD;
client:  the capture is out/stack.pcap; docs/lab.md has more)
TEXT
trap 'exit 0' TERM INT
sleep infinity &
wait $!
