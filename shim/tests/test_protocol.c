/* The C side of the shim protocol against the shared vectors (docs/shim-vectors.json).
 * Built and run under AddressSanitizer by `make -C shim test`. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tlproto.h"
#include "minijson.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                           \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

/* hex -> freshly malloc'd bytes (exactly the length, so ASan sees any over-read). */
static uint8_t *from_hex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    uint8_t *out = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    *len = n;
    return out;
}

static long num(const struct mj_value *obj, const char *key, long dflt)
{
    const struct mj_value *v = mj_get(obj, key);
    return v && v->type == MJ_NUMBER ? (long)v->number : dflt;
}

static const char *str(const struct mj_value *obj, const char *key)
{
    const struct mj_value *v = mj_get(obj, key);
    return v && v->type == MJ_STRING ? v->string : NULL;
}

static int op_by_name(const char *name)
{
    for (int op = 1; op <= TL_OP_MAX; op++)
        if (name && !strcmp(tl_op_name(op), name))
            return op;
    return 0;
}

static struct tl_addr addr_of(const struct mj_value *obj)
{
    struct tl_addr a;
    memset(&a, 0, sizeof a);
    if (!obj)
        return a;
    a.family = (uint16_t)num(obj, "family", 0);
    a.port = (uint16_t)num(obj, "port", 0);
    if (a.family == TL_AF_INET6) {
        inet_pton(AF_INET6, str(obj, "ip"), a.ip6);
        a.flowinfo = (uint32_t)num(obj, "flowinfo", 0);
        a.scope_id = (uint32_t)num(obj, "scope_id", 0);
    } else {
        inet_pton(AF_INET, str(obj, "ip"), &a.ip);
    }
    return a;
}

static int addr_eq(struct tl_addr a, struct tl_addr b)
{
    return a.family == b.family && a.port == b.port && a.ip == b.ip &&
           !memcmp(a.ip6, b.ip6, 16) && a.flowinfo == b.flowinfo && a.scope_id == b.scope_id;
}

/* Owned byte strings that a vector's fields point at. */
struct blobs {
    uint8_t *p[40];
    int n;
};

static const uint8_t *blob(struct blobs *b, const struct mj_value *obj, const char *key,
                           uint32_t *len)
{
    const char *hex = str(obj, key);
    size_t n = 0;
    uint8_t *bytes = from_hex(hex ? hex : "", &n);
    b->p[b->n++] = bytes;
    *len = (uint32_t)n;
    return bytes;
}

static void free_blobs(struct blobs *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->p[i]);
}

static void check_request(const struct mj_value *vec, const char *name)
{
    const struct mj_value *f = mj_get(vec, "fields");
    struct blobs bl = {{0}, 0};
    struct tl_request r;
    memset(&r, 0, sizeof r);
    r.op = (uint8_t)op_by_name(str(vec, "op"));
    r.seq = (uint32_t)num(vec, "seq", 0);
    r.kind = (uint8_t)num(f, "kind", 0);
    r.family = (uint8_t)num(f, "family", 0);
    r.addr = addr_of(mj_get(f, "addr"));
    r.backlog = (int32_t)num(f, "backlog", 0);
    r.how = (uint32_t)num(f, "how", 0);
    r.level = (int32_t)num(f, "level", 0);
    r.name = (int32_t)num(f, "name", 0);
    r.optlen = (uint32_t)num(f, "optlen", 0);
    r.value = blob(&bl, f, "value", &r.value_len);
    r.msg_flags = (uint32_t)num(f, "msg_flags", 0);
    r.payload = blob(&bl, f, "payload", &r.payload_len);
    r.src = addr_of(mj_get(f, "src"));

    size_t len;
    uint8_t *want = from_hex(str(vec, "hex"), &len);
    uint8_t *got = malloc(TL_MAX_MESSAGE);
    ssize_t n = tl_encode_request(&r, got, TL_MAX_MESSAGE);
    CHECK(n == (ssize_t)len && !memcmp(got, want, len), "%s: encoding differs", name);
    CHECK(tl_encode_request(&r, got, len - 1) == TL_E_SPACE, "%s: short buffer accepted", name);

    /* head + payload gives the same bytes */
    ssize_t h = tl_encode_request_head(&r, got, TL_MAX_MESSAGE);
    if (r.op == TL_SENDTO) {
        memcpy(got + h, r.payload, r.payload_len);
        h += r.payload_len;
    }
    CHECK(h == (ssize_t)len && !memcmp(got, want, len), "%s: head encoding differs", name);

    struct tl_request d;
    int rc = tl_decode_request(want, len, (int)num(vec, "fds", 0), &d);
    CHECK(rc == TL_OK, "%s: decode failed: %s", name, tl_error_name(rc));
    if (rc == TL_OK) {
        CHECK(d.op == r.op && d.seq == r.seq && d.kind == r.kind && d.family == r.family && addr_eq(d.addr, r.addr) &&
                  d.backlog == r.backlog && d.how == r.how && d.level == r.level &&
                  d.name == r.name && d.optlen == r.optlen && d.msg_flags == r.msg_flags &&
                  addr_eq(d.src, r.src),
              "%s: decoded fields differ", name);
        CHECK(d.value_len == r.value_len && !memcmp(d.value ? d.value : (const uint8_t *)"",
                                                     r.value, r.value_len),
              "%s: decoded value differs", name);
        CHECK(d.payload_len == r.payload_len &&
                  !memcmp(d.payload ? d.payload : (const uint8_t *)"", r.payload, r.payload_len),
              "%s: decoded payload differs", name);
    }
    /* the wrong number of descriptors is always refused */
    int fds = (int)num(vec, "fds", 0);
    CHECK(tl_decode_request(want, len, fds + 1, &d) == TL_E_FDS, "%s: extra fd accepted", name);
    free(got);
    free(want);
    free_blobs(&bl);
}

static void check_reply(const struct mj_value *vec, const char *name)
{
    const struct mj_value *f = mj_get(vec, "fields");
    struct blobs bl = {{0}, 0};
    struct tl_reply r;
    struct tl_option opts[TL_MAX_DETACH_OPTIONS];
    memset(&r, 0, sizeof r);
    r.op = (uint8_t)op_by_name(str(vec, "op"));
    r.seq = (uint32_t)num(vec, "seq", 0);
    r.status = (uint32_t)num(vec, "status", 0);
    r.flags = (uint16_t)num(vec, "flags", 0);
    r.addr = addr_of(mj_get(f, "addr"));
    r.local = addr_of(mj_get(f, "local"));
    r.peer = addr_of(mj_get(f, "peer"));
    r.value = blob(&bl, f, "value", &r.value_len);
    r.sent = (uint32_t)num(f, "sent", 0);
    r.data = blob(&bl, f, "data", &r.data_len);
    r.src = addr_of(mj_get(f, "src"));
    r.dst = addr_of(mj_get(f, "dst"));
    r.ifindex = (uint32_t)num(f, "ifindex", 0);
    r.want = (uint8_t)num(f, "want", 0);
    const struct mj_value *ol = mj_get(f, "options");
    if (ol) {
        r.noptions = (uint32_t)ol->count;
        for (size_t i = 0; i < ol->count && i < TL_MAX_DETACH_OPTIONS; i++) {
            opts[i].level = (int32_t)num(ol->items[i], "level", 0);
            opts[i].name = (int32_t)num(ol->items[i], "name", 0);
            opts[i].value = blob(&bl, ol->items[i], "value", &opts[i].len);
        }
    }
    size_t len;
    uint8_t *want = from_hex(str(vec, "hex"), &len);
    uint8_t *got = malloc(TL_MAX_MESSAGE);
    ssize_t n = tl_encode_reply(&r, opts, got, TL_MAX_MESSAGE);
    CHECK(n == (ssize_t)len && !memcmp(got, want, len), "%s: encoding differs", name);
    CHECK(tl_encode_reply(&r, opts, got, len - 1) == TL_E_SPACE, "%s: short buffer accepted",
          name);

    struct tl_reply d;
    int rc = tl_decode_reply(want, len, (int)num(vec, "fds", 0), &d);
    CHECK(rc == TL_OK, "%s: decode failed: %s", name, tl_error_name(rc));
    if (rc == TL_OK) {
        CHECK(d.op == r.op && d.seq == r.seq && d.status == r.status && d.flags == r.flags &&
                  addr_eq(d.addr, r.addr) && addr_eq(d.local, r.local) &&
                  addr_eq(d.peer, r.peer) && d.sent == r.sent && d.noptions == r.noptions &&
                  addr_eq(d.src, r.src) && addr_eq(d.dst, r.dst) && d.ifindex == r.ifindex && d.want == r.want,
              "%s: decoded fields differ", name);
        CHECK(d.value_len == r.value_len &&
                  !memcmp(d.value ? d.value : (const uint8_t *)"", r.value, r.value_len),
              "%s: decoded value differs", name);
        CHECK(d.data_len == r.data_len &&
                  !memcmp(d.data ? d.data : (const uint8_t *)"", r.data, r.data_len),
              "%s: decoded data differs", name);
        for (uint32_t i = 0; i < d.noptions && i < r.noptions; i++) {
            int32_t level, oname;
            const uint8_t *value;
            uint32_t vlen;
            CHECK(tl_reply_option(&d, i, &level, &oname, &value, &vlen) == TL_OK &&
                      level == opts[i].level && oname == opts[i].name && vlen == opts[i].len &&
                      !memcmp(value, opts[i].value, vlen),
                  "%s: option %u differs", name, i);
        }
        /* Re-encoding what was decoded gives the same bytes. */
        struct tl_option back[TL_MAX_DETACH_OPTIONS];
        for (uint32_t i = 0; i < d.noptions; i++)
            tl_reply_option(&d, i, &back[i].level, &back[i].name, &back[i].value, &back[i].len);
        n = tl_encode_reply(&d, back, got, TL_MAX_MESSAGE);
        CHECK(n == (ssize_t)len && !memcmp(got, want, len), "%s: re-encoding differs", name);
    }
    free(got);
    free(want);
    free_blobs(&bl);
}

static int decode_any(const char *direction, const uint8_t *buf, size_t len, int fds)
{
    if (!strcmp(direction, "request")) {
        struct tl_request r;
        return tl_decode_request(buf, len, fds, &r);
    }
    struct tl_reply r;
    return tl_decode_reply(buf, len, fds, &r);
}

/* Every prefix and many one-byte mutations of a valid message: the decoder must answer
 * without reading outside the buffer (each copy is malloc'd to its exact size). */
static void fuzz(const struct mj_value *vec, unsigned *seed)
{
    size_t len;
    uint8_t *orig = from_hex(str(vec, "hex"), &len);
    const char *dir = str(vec, "direction");
    int fds = (int)num(vec, "fds", 0);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, orig, cut);
        int rc = decode_any(dir, copy, cut, fds);
        CHECK(rc != TL_OK || cut == len, "%s: prefix of %zu bytes accepted", str(vec, "name"),
              cut);
        free(copy);
    }
    for (int i = 0; i < 300; i++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, orig, len);
        *seed = *seed * 1103515245u + 12345u;
        copy[(*seed >> 8) % len] = (uint8_t)(*seed >> 20);
        (void)decode_any(dir, copy, len, fds);
        free(copy);
    }
    free(orig);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../docs/shim-vectors.json";
    char *text = read_file(path);
    if (!text) {
        perror(path);
        return 2;
    }
    const char *err = NULL;
    struct mj_value *doc = mj_parse(text, &err);
    free(text);
    if (!doc) {
        fprintf(stderr, "%s: JSON error: %s\n", path, err);
        return 2;
    }
    CHECK(num(doc, "version", 0) == TL_VERSION, "version");
    CHECK((unsigned long)num(doc, "magic", 0) == TL_MAGIC, "magic");
    CHECK(num(doc, "header_size", 0) == TL_HEADER_SIZE, "header size");
    CHECK(num(doc, "max_message", 0) == TL_MAX_MESSAGE, "max message");
    const struct mj_value *ops = mj_get(doc, "ops");
    CHECK(ops && ops->count == TL_OP_MAX, "op count");
    for (size_t i = 0; ops && i < ops->count; i++)
        CHECK(op_by_name(ops->keys[i]) == (int)ops->items[i]->number, "op %s", ops->keys[i]);

    const struct mj_value *msgs = mj_get(doc, "messages");
    const struct mj_value *bad = mj_get(doc, "invalid");
    CHECK(msgs && msgs->count >= 30 && bad && bad->count >= 30, "vector counts");
    unsigned seed = 12345;
    for (size_t i = 0; msgs && i < msgs->count; i++) {
        const struct mj_value *v = msgs->items[i];
        const char *name = str(v, "name");
        if (!strcmp(str(v, "direction"), "request"))
            check_request(v, name);
        else
            check_reply(v, name);
        fuzz(v, &seed);
    }
    for (size_t i = 0; bad && i < bad->count; i++) {
        const struct mj_value *v = bad->items[i];
        size_t len;
        uint8_t *buf = from_hex(str(v, "hex"), &len);
        int rc = decode_any(str(v, "direction"), buf, len, (int)num(v, "fds", 0));
        CHECK(!strcmp(tl_error_name(rc), str(v, "error")), "%s: got %s, want %s",
              str(v, "name"), tl_error_name(rc), str(v, "error"));
        free(buf);
    }
    printf("test_protocol: %d checks, %d failed (%zu vectors, %zu invalid)\n", checks, failures,
           msgs ? msgs->count : 0, bad ? bad->count : 0);
    mj_free(doc);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
