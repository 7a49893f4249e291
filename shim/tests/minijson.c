/* A small recursive-descent JSON reader for the tests. */
#include "minijson.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *p;
    const char *err;
    int depth;
};

static struct mj_value *parse_value(struct parser *ps);

static void skip_ws(struct parser *ps)
{
    while (*ps->p && isspace((unsigned char)*ps->p))
        ps->p++;
}

static struct mj_value *new_value(enum mj_type t)
{
    struct mj_value *v = calloc(1, sizeof *v);
    if (v)
        v->type = t;
    return v;
}

static char *parse_string_raw(struct parser *ps)
{
    if (*ps->p != '"') {
        ps->err = "expected a string";
        return NULL;
    }
    ps->p++;
    size_t cap = 16, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (;;) {
        char c = *ps->p++;
        if (c == '\0') {
            ps->err = "unterminated string";
            free(out);
            return NULL;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            char e = *ps->p++;
            switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned code = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *ps->p++;
                    code <<= 4;
                    if (h >= '0' && h <= '9')
                        code |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f')
                        code |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F')
                        code |= (unsigned)(h - 'A' + 10);
                    else {
                        ps->err = "bad \\u escape";
                        free(out);
                        return NULL;
                    }
                }
                c = code < 0x80 ? (char)code : '?';
                break;
            }
            default:
                ps->err = "bad escape";
                free(out);
                return NULL;
            }
        }
        if (len + 2 > cap) {
            cap *= 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(out);
                return NULL;
            }
            out = n;
        }
        out[len++] = c;
    }
    out[len] = '\0';
    return out;
}

static int append(struct mj_value *v, char *key, struct mj_value *item)
{
    struct mj_value **items = realloc(v->items, (v->count + 1) * sizeof *items);
    if (!items)
        return -1;
    v->items = items;
    if (v->type == MJ_OBJECT) {
        char **keys = realloc(v->keys, (v->count + 1) * sizeof *keys);
        if (!keys)
            return -1;
        v->keys = keys;
        v->keys[v->count] = key;
    }
    v->items[v->count++] = item;
    return 0;
}

static struct mj_value *parse_container(struct parser *ps, int object)
{
    struct mj_value *v = new_value(object ? MJ_OBJECT : MJ_ARRAY);
    if (!v)
        return NULL;
    char close = object ? '}' : ']';
    ps->p++;
    skip_ws(ps);
    if (*ps->p == close) {
        ps->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (object) {
            key = parse_string_raw(ps);
            if (!key)
                goto fail;
            skip_ws(ps);
            if (*ps->p++ != ':') {
                ps->err = "expected ':'";
                free(key);
                goto fail;
            }
        }
        struct mj_value *item = parse_value(ps);
        if (!item || append(v, key, item)) {
            free(key);
            mj_free(item);
            goto fail;
        }
        skip_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            return v;
        }
        ps->err = "expected ',' or a closing bracket";
        goto fail;
    }
fail:
    mj_free(v);
    return NULL;
}

static struct mj_value *parse_value(struct parser *ps)
{
    if (++ps->depth > 64) {
        ps->err = "nested too deeply";
        return NULL;
    }
    struct mj_value *v = NULL;
    skip_ws(ps);
    char c = *ps->p;
    if (c == '{' || c == '[') {
        v = parse_container(ps, c == '{');
    } else if (c == '"') {
        char *s = parse_string_raw(ps);
        if (s) {
            v = new_value(MJ_STRING);
            if (v)
                v->string = s;
            else
                free(s);
        }
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        char *end;
        double d = strtod(ps->p, &end);
        if (end == ps->p) {
            ps->err = "bad number";
        } else {
            ps->p = end;
            v = new_value(MJ_NUMBER);
            if (v)
                v->number = d;
        }
    } else if (!strncmp(ps->p, "true", 4) || !strncmp(ps->p, "false", 5)) {
        v = new_value(MJ_BOOL);
        if (v)
            v->boolean = c == 't';
        ps->p += c == 't' ? 4 : 5;
    } else if (!strncmp(ps->p, "null", 4)) {
        v = new_value(MJ_NULL);
        ps->p += 4;
    } else {
        ps->err = "unexpected character";
    }
    ps->depth--;
    return v;
}

struct mj_value *mj_parse(const char *text, const char **err)
{
    struct parser ps = {text, NULL, 0};
    struct mj_value *v = parse_value(&ps);
    if (v) {
        skip_ws(&ps);
        if (*ps.p) {
            ps.err = "trailing characters";
            mj_free(v);
            v = NULL;
        }
    }
    if (!v && err)
        *err = ps.err ? ps.err : "out of memory";
    return v;
}

void mj_free(struct mj_value *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->count; i++) {
        mj_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    free(v);
}

const struct mj_value *mj_get(const struct mj_value *obj, const char *key)
{
    if (!obj || obj->type != MJ_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (!strcmp(obj->keys[i], key))
            return obj->items[i];
    return NULL;
}
