#!/bin/sh
# The client: runs programs under the shim (`tcplab run -- CMD`), whose sockets live
# on the stack daemon reached through the shared volume /run/tcplab.
set -eu
/opt/tcplab/docker/build-shim.sh || true
exec "$@"
