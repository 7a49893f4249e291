#!/bin/sh
# blackout.sh IFACE [SECONDS]   cut IFACE for SECONDS (default 3): every packet in and out
# of it is dropped (nftables), then the wire works again. Needs NET_ADMIN (the peer has it).
#
#   tcplab lab exec peer /opt/tcplab/labs/06-retransmission/blackout.sh lab0 3
set -eu
dev="${1:?usage: blackout.sh IFACE [SECONDS]}"
secs="${2:-3}"
table="lab06_blackout"
cleanup() { nft delete table inet "$table" 2>/dev/null || true; }
cleanup
trap cleanup EXIT INT TERM
nft add table inet "$table"
nft add chain inet "$table" in "{ type filter hook prerouting priority -10; }"
nft add chain inet "$table" out "{ type filter hook postrouting priority -10; }"
nft add rule inet "$table" in iifname "$dev" counter drop
nft add rule inet "$table" out oifname "$dev" counter drop
echo "blackout: $dev is cut for $secs s"
sleep "$secs"
dropped="$(nft list table inet "$table" | awk '/counter/ { n += $(NF-3) } END { print n + 0 }')"
echo "blackout: $dev works again ($dropped packets dropped)"
