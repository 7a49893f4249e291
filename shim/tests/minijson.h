/* A small JSON reader for the tests (just enough for docs/shim-vectors.json). */
#ifndef MINIJSON_H
#define MINIJSON_H

#include <stddef.h>

enum mj_type { MJ_NULL, MJ_BOOL, MJ_NUMBER, MJ_STRING, MJ_ARRAY, MJ_OBJECT };

struct mj_value {
    enum mj_type type;
    double number;
    int boolean;
    char *string;            /* MJ_STRING; NUL-terminated */
    size_t count;            /* MJ_ARRAY, MJ_OBJECT */
    char **keys;             /* MJ_OBJECT */
    struct mj_value **items; /* MJ_ARRAY, MJ_OBJECT */
};

/* Parse text; NULL on a syntax error (with *err set to a message). */
struct mj_value *mj_parse(const char *text, const char **err);
void mj_free(struct mj_value *v);
/* Object member by key, or NULL. */
const struct mj_value *mj_get(const struct mj_value *obj, const char *key);

#endif
