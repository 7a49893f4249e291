/* The shim <-> daemon control protocol (docs/shim-protocol.md): encode and decode. */
#include "tlproto.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* 28 bytes: u16 family, u16 port, u32 flowinfo, 16 address bytes, u32 scope_id. AF_INET
 * and AF_UNSPEC carry the IPv4 address in the first 4 address bytes, zeros elsewhere. */
static void put_addr(uint8_t *p, const struct tl_addr *a)
{
    memset(p, 0, TL_ADDR_SIZE);
    put16(p, a->family);
    put16(p + 2, a->port);
    if (a->family == TL_AF_INET6) {
        put32(p + 4, a->flowinfo);
        memcpy(p + 8, a->ip6, 16);
        put32(p + 24, a->scope_id);
    } else {
        memcpy(p + 8, &a->ip, 4); /* already network order */
    }
}

static int get_addr(const uint8_t *p, struct tl_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = get16(p);
    a->port = get16(p + 2);
    if (a->family == TL_AF_INET6) {
        a->flowinfo = get32(p + 4);
        memcpy(a->ip6, p + 8, 16);
        a->scope_id = get32(p + 24);
        return TL_OK;
    }
    if (a->family != TL_AF_UNSPEC && a->family != TL_AF_INET)
        return TL_E_VALUE;
    memcpy(&a->ip, p + 8, 4);
    for (int i = 4; i < 8; i++)
        if (p[i])
            return TL_E_VALUE;
    for (int i = 12; i < TL_ADDR_SIZE; i++)
        if (p[i])
            return TL_E_VALUE;
    return TL_OK;
}

static void put_header(uint8_t *p, int op, uint16_t flags, uint32_t seq, uint32_t status,
                       uint32_t length)
{
    put32(p, TL_MAGIC);
    p[4] = TL_VERSION;
    p[5] = (uint8_t)op;
    put16(p + 6, flags);
    put32(p + 8, seq);
    put32(p + 12, status);
    put32(p + 16, length);
}

int tl_request_has_fd(int op)
{
    return op != TL_SOCKET && op != TL_LIST;
}

int tl_reply_has_fd(int op)
{
    return op == TL_SOCKET || op == TL_ACCEPT;
}

/* Body length of a request, payload included. */
static ssize_t request_body_len(const struct tl_request *r)
{
    switch (r->op) {
    case TL_SOCKET:
    case TL_LISTEN:
    case TL_SHUTDOWN:
        return 4;
    case TL_BIND:
    case TL_CONNECT:
        return TL_ADDR_SIZE;
    case TL_GETSOCKOPT:
        return 12;
    case TL_SETSOCKOPT:
        if (r->value_len > TL_MAX_OPTVAL)
            return TL_E_SPACE;
        return 8 + (ssize_t)r->value_len;
    case TL_SENDTO:
        if (r->payload_len > TL_MAX_PAYLOAD)
            return TL_E_SPACE;
        return 2 * TL_ADDR_SIZE + 4 + (ssize_t)r->payload_len;
    case TL_GETSOCKNAME:
    case TL_GETPEERNAME:
    case TL_DETACH:
    case TL_LIST:
    case TL_ADOPT:
        return 0;
    default:
        return TL_E_SPACE;
    }
}

static ssize_t encode_request(const struct tl_request *r, uint8_t *buf, size_t cap,
                              int with_payload)
{
    ssize_t body = request_body_len(r);
    if (body < 0)
        return body;
    size_t total = TL_HEADER_SIZE + (size_t)body;
    size_t written = total;
    if (!with_payload && r->op == TL_SENDTO)
        written -= r->payload_len;
    if (written > cap)
        return TL_E_SPACE;
    put_header(buf, r->op, 0, r->seq, 0, (uint32_t)body);
    uint8_t *b = buf + TL_HEADER_SIZE;
    switch (r->op) {
    case TL_SOCKET:
        b[0] = r->kind;
        b[1] = r->family;
        b[2] = b[3] = 0;
        break;
    case TL_BIND:
    case TL_CONNECT:
        put_addr(b, &r->addr);
        break;
    case TL_LISTEN:
        put32(b, (uint32_t)r->backlog);
        break;
    case TL_SHUTDOWN:
        put32(b, r->how);
        break;
    case TL_GETSOCKOPT:
        put32(b, (uint32_t)r->level);
        put32(b + 4, (uint32_t)r->name);
        put32(b + 8, r->optlen);
        break;
    case TL_SETSOCKOPT:
        put32(b, (uint32_t)r->level);
        put32(b + 4, (uint32_t)r->name);
        if (r->value_len)
            memcpy(b + 8, r->value, r->value_len);
        break;
    case TL_SENDTO:
        put_addr(b, &r->addr);
        put_addr(b + TL_ADDR_SIZE, &r->src);
        put32(b + 2 * TL_ADDR_SIZE, r->msg_flags);
        if (with_payload && r->payload_len)
            memcpy(b + 2 * TL_ADDR_SIZE + 4, r->payload, r->payload_len);
        break;
    default:
        break;
    }
    return (ssize_t)written;
}

ssize_t tl_encode_request(const struct tl_request *r, uint8_t *buf, size_t cap)
{
    return encode_request(r, buf, cap, 1);
}

ssize_t tl_encode_request_head(const struct tl_request *r, uint8_t *buf, size_t cap)
{
    return encode_request(r, buf, cap, 0);
}

ssize_t tl_encode_reply(const struct tl_reply *r, const struct tl_option *opts, uint8_t *buf,
                        size_t cap)
{
    size_t body = 0;
    if (r->status == 0) {
        switch (r->op) {
        case TL_ACCEPT:
            body = 2 * TL_ADDR_SIZE;
            break;
        case TL_GETSOCKNAME:
        case TL_GETPEERNAME:
            body = TL_ADDR_SIZE;
            break;
        case TL_GETSOCKOPT:
            if (r->value_len > TL_MAX_OPTVAL)
                return TL_E_SPACE;
            body = r->value_len;
            break;
        case TL_SENDTO:
            body = 4;
            break;
        case TL_DETACH:
            if (r->noptions > TL_MAX_DETACH_OPTIONS)
                return TL_E_SPACE;
            body = TL_ADDR_SIZE + 4;
            for (uint32_t i = 0; i < r->noptions; i++) {
                if (opts[i].len > TL_MAX_OPTVAL)
                    return TL_E_SPACE;
                body += 12 + opts[i].len;
            }
            break;
        case TL_LIST:
            if (r->data_len > TL_MAX_LIST_CHUNK)
                return TL_E_SPACE;
            body = r->data_len;
            break;
        case TL_PKTINFO:
            if (r->want & ~(TL_WANT_IP_PKTINFO | TL_WANT_IPV6_PKTINFO))
                return TL_E_SPACE;
            body = 2 * TL_ADDR_SIZE + 8;
            break;
        default:
            break;
        }
    }
    if (TL_HEADER_SIZE + body > cap)
        return TL_E_SPACE;
    uint16_t flags = (r->op == TL_LIST && r->status == 0) ? r->flags : 0;
    put_header(buf, r->op, flags, r->seq, r->status, (uint32_t)body);
    uint8_t *b = buf + TL_HEADER_SIZE;
    if (r->status == 0) {
        switch (r->op) {
        case TL_ACCEPT:
            put_addr(b, &r->local);
            put_addr(b + TL_ADDR_SIZE, &r->peer);
            break;
        case TL_GETSOCKNAME:
        case TL_GETPEERNAME:
            put_addr(b, &r->addr);
            break;
        case TL_GETSOCKOPT:
            if (r->value_len)
                memcpy(b, r->value, r->value_len);
            break;
        case TL_SENDTO:
            put32(b, r->sent);
            break;
        case TL_DETACH:
            put_addr(b, &r->addr);
            put32(b + TL_ADDR_SIZE, r->noptions);
            b += TL_ADDR_SIZE + 4;
            for (uint32_t i = 0; i < r->noptions; i++) {
                put32(b, (uint32_t)opts[i].level);
                put32(b + 4, (uint32_t)opts[i].name);
                put32(b + 8, opts[i].len);
                if (opts[i].len)
                    memcpy(b + 12, opts[i].value, opts[i].len);
                b += 12 + opts[i].len;
            }
            break;
        case TL_LIST:
            if (r->data_len)
                memcpy(b, r->data, r->data_len);
            break;
        case TL_PKTINFO:
            put_addr(b, &r->src);
            put_addr(b + TL_ADDR_SIZE, &r->dst);
            b += TL_ADDR_SIZE;
            put32(b + TL_ADDR_SIZE, r->ifindex);
            b[TL_ADDR_SIZE + 4] = r->want;
            b[TL_ADDR_SIZE + 5] = b[TL_ADDR_SIZE + 6] = b[TL_ADDR_SIZE + 7] = 0;
            break;
        default:
            break;
        }
    }
    return (ssize_t)(TL_HEADER_SIZE + body);
}

/* Common header checks; on success body and blen describe the body. */
static int split_header(const uint8_t *buf, size_t len, uint8_t *op, uint16_t *flags,
                        uint32_t *seq, uint32_t *status, const uint8_t **body, uint32_t *blen)
{
    if (len < TL_HEADER_SIZE)
        return TL_E_SHORT;
    if (get32(buf) != TL_MAGIC)
        return TL_E_MAGIC;
    if (buf[4] != TL_VERSION)
        return TL_E_VERSION;
    uint32_t length = get32(buf + 16);
    if (length > TL_MAX_BODY || (size_t)length != len - TL_HEADER_SIZE)
        return TL_E_LENGTH;
    if (buf[5] < 1 || buf[5] > TL_OP_MAX)
        return TL_E_OP;
    *op = buf[5];
    *flags = get16(buf + 6);
    *seq = get32(buf + 8);
    *status = get32(buf + 12);
    *body = buf + TL_HEADER_SIZE;
    *blen = length;
    return TL_OK;
}

int tl_decode_request(const uint8_t *buf, size_t len, int nfds, struct tl_request *out)
{
    uint8_t op;
    uint16_t flags;
    uint32_t seq, status, blen;
    const uint8_t *b;
    int rc = split_header(buf, len, &op, &flags, &seq, &status, &b, &blen);
    if (rc)
        return rc;
    if (op == TL_ACCEPT || op == TL_PKTINFO) /* records of their own, not requests */
        return TL_E_OP;
    if (flags != 0 || status != 0)
        return TL_E_FLAGS;
    if (nfds != (tl_request_has_fd(op) ? 1 : 0))
        return TL_E_FDS;
    memset(out, 0, sizeof *out);
    out->op = op;
    out->seq = seq;
    switch (op) {
    case TL_SOCKET:
        if (blen != 4)
            return TL_E_BODY;
        if ((b[0] != TL_KIND_TCP && b[0] != TL_KIND_UDP) ||
            (b[1] != TL_AF_INET && b[1] != TL_AF_INET6) || b[2] || b[3])
            return TL_E_VALUE;
        out->kind = b[0];
        out->family = b[1];
        break;
    case TL_BIND:
    case TL_CONNECT:
        if (blen != TL_ADDR_SIZE)
            return TL_E_BODY;
        if (get_addr(b, &out->addr))
            return TL_E_VALUE;
        if (op == TL_BIND && out->addr.family != TL_AF_INET &&
            out->addr.family != TL_AF_INET6)
            return TL_E_VALUE;
        break;
    case TL_LISTEN:
        if (blen != 4)
            return TL_E_BODY;
        out->backlog = (int32_t)get32(b);
        break;
    case TL_SHUTDOWN:
        if (blen != 4)
            return TL_E_BODY;
        out->how = get32(b);
        if (out->how > 2)
            return TL_E_VALUE;
        break;
    case TL_GETSOCKOPT:
        if (blen != 12)
            return TL_E_BODY;
        out->level = (int32_t)get32(b);
        out->name = (int32_t)get32(b + 4);
        out->optlen = get32(b + 8);
        break;
    case TL_SETSOCKOPT:
        if (blen < 8 || blen > 8 + TL_MAX_OPTVAL)
            return TL_E_BODY;
        out->level = (int32_t)get32(b);
        out->name = (int32_t)get32(b + 4);
        out->value = b + 8;
        out->value_len = blen - 8;
        break;
    case TL_SENDTO:
        if (blen < 2 * TL_ADDR_SIZE + 4)
            return TL_E_BODY;
        if (get_addr(b, &out->addr) ||
            (out->addr.family != TL_AF_INET && out->addr.family != TL_AF_INET6))
            return TL_E_VALUE;
        if (get_addr(b + TL_ADDR_SIZE, &out->src))
            return TL_E_VALUE;
        out->msg_flags = get32(b + 2 * TL_ADDR_SIZE);
        out->payload = b + 2 * TL_ADDR_SIZE + 4;
        out->payload_len = blen - 2 * TL_ADDR_SIZE - 4;
        break;
    default:
        if (blen != 0)
            return TL_E_BODY;
        break;
    }
    return TL_OK;
}

int tl_decode_reply(const uint8_t *buf, size_t len, int nfds, struct tl_reply *out)
{
    uint8_t op;
    uint16_t flags;
    uint32_t seq, status, blen;
    const uint8_t *b;
    int rc = split_header(buf, len, &op, &flags, &seq, &status, &b, &blen);
    if (rc)
        return rc;
    if ((flags & ~TL_FLAG_MORE) || (flags && (op != TL_LIST || status != 0)))
        return TL_E_FLAGS;
    if (nfds != ((status == 0 && tl_reply_has_fd(op)) ? 1 : 0))
        return TL_E_FDS;
    memset(out, 0, sizeof *out);
    out->op = op;
    out->seq = seq;
    out->status = status;
    out->flags = flags;
    if (status != 0)
        return blen == 0 ? TL_OK : TL_E_BODY;
    switch (op) {
    case TL_ACCEPT:
        if (blen != 2 * TL_ADDR_SIZE)
            return TL_E_BODY;
        if (get_addr(b, &out->local) || get_addr(b + TL_ADDR_SIZE, &out->peer))
            return TL_E_VALUE;
        break;
    case TL_GETSOCKNAME:
    case TL_GETPEERNAME:
        if (blen != TL_ADDR_SIZE)
            return TL_E_BODY;
        if (get_addr(b, &out->addr))
            return TL_E_VALUE;
        break;
    case TL_GETSOCKOPT:
        if (blen > TL_MAX_OPTVAL)
            return TL_E_BODY;
        out->value = b;
        out->value_len = blen;
        break;
    case TL_SENDTO:
        if (blen != 4)
            return TL_E_BODY;
        out->sent = get32(b);
        break;
    case TL_DETACH: {
        if (blen < TL_ADDR_SIZE + 4)
            return TL_E_BODY;
        if (get_addr(b, &out->addr))
            return TL_E_VALUE;
        uint32_t count = get32(b + TL_ADDR_SIZE);
        if (count > TL_MAX_DETACH_OPTIONS)
            return TL_E_VALUE;
        const uint8_t *p = b + TL_ADDR_SIZE + 4;
        uint32_t left = blen - TL_ADDR_SIZE - 4;
        out->options_raw = p;
        out->options_len = left;
        for (uint32_t i = 0; i < count; i++) {
            if (left < 12)
                return TL_E_BODY;
            uint32_t vlen = get32(p + 8);
            if (vlen > TL_MAX_OPTVAL || left - 12 < vlen)
                return TL_E_BODY;
            p += 12 + vlen;
            left -= 12 + vlen;
        }
        if (left != 0)
            return TL_E_BODY;
        out->noptions = count;
        break;
    }
    case TL_LIST:
        if (blen > TL_MAX_LIST_CHUNK)
            return TL_E_BODY;
        out->data = b;
        out->data_len = blen;
        break;
    case TL_PKTINFO:
        if (blen != 2 * TL_ADDR_SIZE + 8)
            return TL_E_BODY;
        if (get_addr(b, &out->src) || get_addr(b + TL_ADDR_SIZE, &out->dst))
            return TL_E_VALUE;
        b += TL_ADDR_SIZE;
        out->ifindex = get32(b + TL_ADDR_SIZE);
        out->want = b[TL_ADDR_SIZE + 4];
        if ((out->want & ~(TL_WANT_IP_PKTINFO | TL_WANT_IPV6_PKTINFO)) || b[TL_ADDR_SIZE + 5] ||
            b[TL_ADDR_SIZE + 6] || b[TL_ADDR_SIZE + 7])
            return TL_E_VALUE;
        break;
    default:
        if (blen != 0)
            return TL_E_BODY;
        break;
    }
    return TL_OK;
}

int tl_reply_option(const struct tl_reply *r, uint32_t index, int32_t *level, int32_t *name,
                    const uint8_t **value, uint32_t *len)
{
    if (index >= r->noptions)
        return TL_E_BODY;
    const uint8_t *p = r->options_raw;
    for (uint32_t i = 0;; i++) {
        uint32_t vlen = get32(p + 8);
        if (i == index) {
            *level = (int32_t)get32(p);
            *name = (int32_t)get32(p + 4);
            *len = vlen;
            *value = p + 12;
            return TL_OK;
        }
        p += 12 + vlen;
    }
}

const char *tl_error_name(int err)
{
    switch (err) {
    case TL_OK:
        return "ok";
    case TL_E_SHORT:
        return "short";
    case TL_E_MAGIC:
        return "magic";
    case TL_E_VERSION:
        return "version";
    case TL_E_LENGTH:
        return "length";
    case TL_E_OP:
        return "op";
    case TL_E_FLAGS:
        return "flags";
    case TL_E_BODY:
        return "body";
    case TL_E_FDS:
        return "fds";
    case TL_E_VALUE:
        return "value";
    case TL_E_SPACE:
        return "space";
    default:
        return "?";
    }
}

const char *tl_op_name(int op)
{
    static const char *const names[] = {
        "?",          "SOCKET",      "BIND",       "LISTEN",     "ACCEPT",
        "CONNECT",    "SHUTDOWN",    "GETSOCKNAME", "GETPEERNAME", "GETSOCKOPT",
        "SETSOCKOPT", "SENDTO",      "DETACH",     "LIST",       "ADOPT",      "PKTINFO",
    };
    if (op < 1 || op > TL_OP_MAX)
        return "?";
    return names[op];
}
