/* The shim <-> daemon control protocol: encode and decode, no I/O.
 *
 * Specified in docs/shim-protocol.md; docs/shim-vectors.json holds the test vectors
 * that this code (shim/tests/test_protocol.c) and stack/ipc/protocol.py are both
 * tested against. All integers on the wire are big-endian.
 */
#ifndef TLPROTO_H
#define TLPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TL_MAGIC 0x544C4142u /* "TLAB" */
#define TL_VERSION 4
#define TL_HEADER_SIZE 20
#define TL_ADDR_SIZE 28 /* family, port, flowinfo, 16 address bytes, scope_id */
#define TL_MAX_OPTVAL 256
#define TL_MAX_PAYLOAD 65507
#define TL_MAX_BODY (2 * TL_ADDR_SIZE + 4 + TL_MAX_PAYLOAD)
#define TL_MAX_MESSAGE (TL_HEADER_SIZE + TL_MAX_BODY)
#define TL_MAX_LIST_CHUNK 60000
#define TL_MAX_DETACH_OPTIONS 32
/* The largest reply the shim ever asks for (DETACH with every option at full size). */
#define TL_MAX_SHIM_REPLY \
    (TL_HEADER_SIZE + TL_ADDR_SIZE + 4 + TL_MAX_DETACH_OPTIONS * (12 + TL_MAX_OPTVAL))

#define TL_FLAG_MORE 0x0001

#define TL_AF_UNSPEC 0
#define TL_AF_INET 2
#define TL_AF_INET6 10
#define TL_KIND_TCP 1
#define TL_KIND_UDP 2

enum tl_op {
    TL_SOCKET = 1,
    TL_BIND = 2,
    TL_LISTEN = 3,
    TL_ACCEPT = 4,
    TL_CONNECT = 5,
    TL_SHUTDOWN = 6,
    TL_GETSOCKNAME = 7,
    TL_GETPEERNAME = 8,
    TL_GETSOCKOPT = 9,
    TL_SETSOCKOPT = 10,
    TL_SENDTO = 11,
    TL_DETACH = 12,
    TL_LIST = 13,
    TL_ADOPT = 14,
    TL_PKTINFO = 15,
    TL_OP_MAX = 15
};

/* Decoder results (negative); the names are the "error" strings of the vectors. */
enum tl_err {
    TL_OK = 0,
    TL_E_SHORT = -1,
    TL_E_MAGIC = -2,
    TL_E_VERSION = -3,
    TL_E_LENGTH = -4,
    TL_E_OP = -5,
    TL_E_FLAGS = -6,
    TL_E_BODY = -7,
    TL_E_FDS = -8,
    TL_E_VALUE = -9,
    TL_E_SPACE = -10 /* encoder: buffer too small or a field too long */
};

struct tl_addr {
    uint16_t family;   /* TL_AF_UNSPEC, TL_AF_INET or TL_AF_INET6 */
    uint16_t port;     /* host order */
    uint32_t ip;       /* AF_INET: network order, like sin_addr.s_addr */
    uint8_t ip6[16];   /* AF_INET6: like sin6_addr */
    uint32_t flowinfo; /* AF_INET6, host order (sin6_flowinfo is network order) */
    uint32_t scope_id; /* AF_INET6 */
};

struct tl_request {
    uint8_t op;
    uint32_t seq;
    uint8_t kind;           /* SOCKET */
    uint8_t family;         /* SOCKET: TL_AF_INET or TL_AF_INET6 */
    struct tl_addr addr;    /* BIND CONNECT SENDTO */
    int32_t backlog;        /* LISTEN */
    uint32_t how;           /* SHUTDOWN */
    int32_t level, name;    /* GETSOCKOPT SETSOCKOPT */
    uint32_t optlen;        /* GETSOCKOPT */
    const uint8_t *value;   /* SETSOCKOPT */
    uint32_t value_len;
    uint32_t msg_flags;     /* SENDTO */
    const uint8_t *payload; /* SENDTO */
    uint32_t payload_len;
    struct tl_addr src;     /* SENDTO: the source asked for (IP_PKTINFO), AF_UNSPEC: none */
};

struct tl_option {
    int32_t level, name;
    uint32_t len;
    const uint8_t *value;
};

struct tl_reply {
    uint8_t op;
    uint32_t seq;
    uint32_t status; /* 0 or a Linux errno */
    uint16_t flags;
    struct tl_addr addr;        /* GETSOCKNAME GETPEERNAME DETACH */
    struct tl_addr local, peer; /* ACCEPT */
    const uint8_t *value;       /* GETSOCKOPT */
    uint32_t value_len;
    uint32_t sent;              /* SENDTO */
    uint32_t noptions;          /* DETACH: entries at options_raw */
    const uint8_t *options_raw;
    uint32_t options_len;
    const uint8_t *data; /* LIST */
    uint32_t data_len;
    struct tl_addr src;  /* PKTINFO: where it came from (IPv6 sources; else AF_UNSPEC) */
    struct tl_addr dst;  /* PKTINFO: where the datagram was sent */
    uint32_t ifindex;    /* PKTINFO: the interface it came in on */
    uint8_t want;        /* PKTINFO: TL_WANT_* bits, the control messages asked for */
};

/* PKTINFO is not a request (version 3): the record held by the small sealed file that
 * rides (SCM_RIGHTS) with each datagram to a UDP socket that asked for IP_PKTINFO or
 * IPV6_RECVPKTINFO, or that came from an IPv6 source (docs/shim-protocol.md 5.5). */
#define TL_PKTINFO_RECORD_SIZE (TL_HEADER_SIZE + 2 * TL_ADDR_SIZE + 8)
#define TL_WANT_IP_PKTINFO 0x01   /* struct in_pktinfo */
#define TL_WANT_IPV6_PKTINFO 0x02 /* struct in6_pktinfo */

/* ACCEPT is not a request (version 2): an ACCEPT reply with seq 0 and the connection
 * attached is the record a listener's own stream carries per waiting connection. */
#define TL_ACCEPT_RECORD_SIZE (TL_HEADER_SIZE + 2 * TL_ADDR_SIZE)

/* Does a request for `op` carry a descriptor? (Every op but SOCKET and LIST.) */
int tl_request_has_fd(int op);
/* Does a successful reply to `op` carry a descriptor? (SOCKET and ACCEPT.) */
int tl_reply_has_fd(int op);

/* Encode into buf[0..cap); returns the length or TL_E_SPACE. */
ssize_t tl_encode_request(const struct tl_request *r, uint8_t *buf, size_t cap);
/* Encode everything but a SENDTO payload (the caller sends it as a second iovec);
 * the header's length counts the payload. For other ops, same as tl_encode_request. */
ssize_t tl_encode_request_head(const struct tl_request *r, uint8_t *buf, size_t cap);
/* DETACH replies take r->noptions entries from opts (ignored for other ops). */
ssize_t tl_encode_reply(const struct tl_reply *r, const struct tl_option *opts, uint8_t *buf,
                        size_t cap);

/* Decode; pointers in *out point into buf. `nfds` is how many descriptors arrived. */
int tl_decode_request(const uint8_t *buf, size_t len, int nfds, struct tl_request *out);
int tl_decode_reply(const uint8_t *buf, size_t len, int nfds, struct tl_reply *out);

/* The index-th option of a decoded DETACH reply; 0 or TL_E_BODY. */
int tl_reply_option(const struct tl_reply *r, uint32_t index, int32_t *level, int32_t *name,
                    const uint8_t **value, uint32_t *len);

const char *tl_error_name(int err);
const char *tl_op_name(int op);

#endif
