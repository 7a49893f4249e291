#!/bin/sh
# wire.sh stack|peer: bring up `lab0`, the lab's wire between the stack container and
# the peer(s), a VXLAN segment carried over the docker network.
#
# Docker's firewall drops packets on an internal network whose addresses lie outside its
# subnet, so the lab's own addresses (10.0.0.0/24 behind the stack, 10.0.1.0/24 on the
# wire) travel inside VXLAN (UDP 4789) between the containers' docker addresses.
# Also removes the docker default route: nothing in the lab should go anywhere else,
# and "Network is unreachable" is a clearer answer than a silent drop.
#
# Environment (set by docker-compose.yml):
#   TCPLAB_WIRE_VNI TCPLAB_WIRE_STACK TCPLAB_WIRE_PEER TCPLAB_WIRE_PREFIXLEN
#   TCPLAB_STACK_UNDERLAY  the stack container's docker address
#   TCPLAB_PEER_UNDERLAY   the peer's docker address (stack side: several, space-separated)
#   TCPLAB_STACK_NET       the stack's subnet, routed via the stack container (10.0.0.0/24)
#   TCPLAB_WIRE6_STACK TCPLAB_WIRE6_PEER  the wire's IPv6 addresses (/64); unset: no IPv6
#   TCPLAB_STACK_NET6      the stack's IPv6 subnet, routed via the stack (fd00:0:0:1::/64)
set -eu
role="$1"
VNI="${TCPLAB_WIRE_VNI:-42}"
LEN="${TCPLAB_WIRE_PREFIXLEN:-24}"
PORT=4789

dev_of() { ip -o -4 addr show | awk -v a="$1" '{ split($4, p, "/"); if (p[1] == a) { print $2; exit } }'; }

ip link del lab0 2>/dev/null || true
case "$role" in
stack)
    local_ip="$TCPLAB_STACK_UNDERLAY"
    under="$(dev_of "$local_ip")"
    [ -n "$under" ] || { echo "wire: no interface has $local_ip" >&2; exit 1; }
    ip link add lab0 type vxlan id "$VNI" dstport "$PORT" dev "$under" local "$local_ip"
    for p in $TCPLAB_PEER_UNDERLAY; do
        bridge fdb append 00:00:00:00:00:00 dev lab0 dst "$p"
    done
    ip addr add "$TCPLAB_WIRE_STACK/$LEN" dev lab0
    wire6="${TCPLAB_WIRE6_STACK:-}"
    ;;
peer)
    local_ip="$TCPLAB_PEER_UNDERLAY"
    under="$(dev_of "$local_ip")"
    [ -n "$under" ] || { echo "wire: no interface has $local_ip" >&2; exit 1; }
    ip link add lab0 type vxlan id "$VNI" dstport "$PORT" dev "$under" local "$local_ip" \
        remote "$TCPLAB_STACK_UNDERLAY"
    ip addr add "$TCPLAB_WIRE_PEER/$LEN" dev lab0
    wire6="${TCPLAB_WIRE6_PEER:-}"
    ;;
*)
    echo "usage: wire.sh stack|peer" >&2
    exit 2
    ;;
esac
# IPv6 on the same wire (RFC 4291 ULA-style fd00::/8 addresses, nodad: the two ends are
# known, and DAD would hold the address back for a second). Only where the container has
# IPv6 (docker-compose.yml turns it on; disable_ipv6=1 otherwise).
if [ -n "$wire6" ] && [ -e /proc/sys/net/ipv6/conf/lab0/disable_ipv6 ]; then
    echo 0 >/proc/sys/net/ipv6/conf/lab0/disable_ipv6 2>/dev/null || true
    ip -6 addr add "$wire6/64" dev lab0 nodad || wire6=""
else
    wire6=""
fi
ip link set lab0 up
ip route del default 2>/dev/null || true
while ip -6 route del default 2>/dev/null; do :; done
if [ "$role" = peer ]; then
    ip route replace "${TCPLAB_STACK_NET:-10.0.0.0/24}" via "$TCPLAB_WIRE_STACK" dev lab0
    if [ -n "$wire6" ]; then
        ip -6 route replace "${TCPLAB_STACK_NET6:-fd00:0:0:1::/64}" via "$TCPLAB_WIRE6_STACK" dev lab0
    fi
fi
echo "wire: lab0 $(ip -o addr show dev lab0 | awk '$3 != "inet6" || $4 !~ /^fe80/ { printf "%s ", $4 }')over $under (VXLAN $VNI)" >&2
