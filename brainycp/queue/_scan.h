/* What the compiled queue readers (_eximscan.c, _pfscan.c) share: reading a str of any kind
 * in place, Python's whitespace, tables keyed by slices of the text, and the key strings
 * brainycp.queue.identity defines (sender keys, domain keys). Everything here only reads
 * the text. */
#ifndef BRAINYCP_SCAN_H
#define BRAINYCP_SCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A str read in place. Each reader is inlined into one copy per string kind, with t a
 * constant there, so that at() compiles to a plain load. */
typedef struct {
    PyObject *obj;
    int kind;
    const void *data;
} text_t;

#define INLINE static inline __attribute__((always_inline))

INLINE Py_UCS4 at(const text_t *t, Py_ssize_t i) {
    switch (t->kind) {
    case PyUnicode_1BYTE_KIND: return ((const Py_UCS1 *)t->data)[i];
    case PyUnicode_2BYTE_KIND: return ((const Py_UCS2 *)t->data)[i];
    default: return ((const Py_UCS4 *)t->data)[i];
    }
}

INLINE int is_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }

INLINE int is_alnum(Py_UCS4 c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* str.strip()'s and the regular expressions' \s. */
INLINE int is_space(Py_UCS4 c) { return Py_UNICODE_ISSPACE(c); }

/* The offset of the next "\n" at or after pos, or end. memchr finds the byte 0x0A in any
 * kind; in 2- and 4-byte text a hit is a newline only when the character holding it is "\n"
 * (U+010A, for one, also holds that byte), else the search goes on after it. */
INLINE Py_ssize_t next_newline(const text_t *t, Py_ssize_t pos, Py_ssize_t end) {
    const char *base = (const char *)t->data;
    const char *from = base + pos * t->kind, *stop = base + end * t->kind;
    for (;;) {
        const char *hit = memchr(from, '\n', (size_t)(stop - from));
        if (hit == NULL) return end;
        Py_ssize_t offset = (Py_ssize_t)(hit - base);
        if (t->kind == PyUnicode_1BYTE_KIND) return offset;
        if (at(t, offset / t->kind) == '\n') return offset / t->kind; /* either byte order */
        from = hit + 1;
    }
}

/* The line [*start, *end) without the whitespace str.strip() removes. */
INLINE void strip(const text_t *t, Py_ssize_t *start, Py_ssize_t *end) {
    while (*start < *end && is_space(at(t, *start))) (*start)++;
    while (*end > *start && is_space(at(t, *end - 1))) (*end)--;
}

INLINE int has_ascii(const text_t *t, Py_ssize_t pos, Py_ssize_t end, const char *word) {
    size_t n = strlen(word);
    if (end - pos < (Py_ssize_t)n) return 0;
    for (size_t i = 0; i < n; i++)
        if (at(t, pos + (Py_ssize_t)i) != (Py_UCS4)(unsigned char)word[i]) return 0;
    return 1;
}

/* ------------------------------------------------------------------ key strings
 * A key is a slice of the text read through canon(): EXACT keys as they are; sender and
 * domain keys with lone surrogates as U+FFFD and ASCII letters folded to lower case from
 * fold_from on (a sender: after its last "@"; a domain: all of it). That is what
 * identity.sender_key and identity.domain_key give. */
enum { EXACT = 0, CANON = 1 };

INLINE Py_UCS4 canon(Py_UCS4 c, int fold) {
    if (c >= 0xD800 && c <= 0xDFFF) return 0xFFFD;
    if (fold && c >= 'A' && c <= 'Z') return c + 32;
    return c;
}

typedef struct {
    Py_ssize_t start, len, fold_from; /* fold_from relative to start; len: no folding */
    uint64_t hash;
    int64_t value, stamp;
    PyObject *obj; /* the key's str once built (owned), or NULL */
} slot_t;

typedef struct {
    slot_t *slots;
    size_t mask, used;
    int mode;
    uint64_t seed;
} table_t;

static int table_init(table_t *tb, int mode, uint64_t seed, int bits) {
    size_t size = (size_t)1 << bits;
    tb->slots = PyMem_Calloc(size, sizeof(slot_t));
    if (tb->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < size; i++) tb->slots[i].start = -1;
    tb->mask = size - 1;
    tb->used = 0;
    tb->mode = mode;
    tb->seed = seed;
    return 0;
}

static void table_free(table_t *tb) {
    if (tb->slots == NULL) return;
    for (size_t i = 0; i <= tb->mask; i++) Py_CLEAR(tb->slots[i].obj);
    PyMem_Free(tb->slots);
    tb->slots = NULL;
}

INLINE Py_UCS4 key_char(const text_t *t, const slot_t *k, int mode, Py_ssize_t i) {
    Py_UCS4 c = at(t, k->start + i);
    return mode == EXACT ? c : canon(c, i >= k->fold_from);
}

/* A keyed hash (seeded per reading, so that a listing cannot be built to collide), mixed
 * with the finaliser of MurmurHash3. Three characters (21 bits each) go in per multiply. */
INLINE uint64_t key_hash(const text_t *t, const slot_t *k, int mode, uint64_t seed) {
    uint64_t h = seed ^ (uint64_t)k->len;
    Py_ssize_t i = 0;
    for (; i + 3 <= k->len; i += 3) {
        uint64_t word = (uint64_t)key_char(t, k, mode, i)
            | (uint64_t)key_char(t, k, mode, i + 1) << 21
            | (uint64_t)key_char(t, k, mode, i + 2) << 42;
        h = (h ^ word) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    for (; i < k->len; i++) h = (h ^ key_char(t, k, mode, i)) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

INLINE int keys_equal(const text_t *t, const slot_t *a, const slot_t *b, int mode) {
    if (a->len != b->len || a->hash != b->hash) return 0;
    const char *base = (const char *)t->data;
    /* The same characters are the same key; other characters may be only in canon(). */
    if (memcmp(base + a->start * t->kind, base + b->start * t->kind, (size_t)(a->len * t->kind))
        == 0)
        return 1;
    if (mode == EXACT) return 0;
    for (Py_ssize_t i = 0; i < a->len; i++)
        if (key_char(t, a, mode, i) != key_char(t, b, mode, i)) return 0;
    return 1;
}

static int table_grow(table_t *tb) {
    size_t old_size = tb->mask + 1, size = old_size * 2;
    slot_t *old = tb->slots, *slots = PyMem_Calloc(size, sizeof(slot_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < size; i++) slots[i].start = -1;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i].start < 0) continue;
        size_t j = (size_t)old[i].hash & (size - 1);
        while (slots[j].start >= 0) j = (j + 1) & (size - 1);
        slots[j] = old[i];
    }
    PyMem_Free(old);
    tb->slots = slots;
    tb->mask = size - 1;
    return 0;
}

/* The slot of the key text[start:start+len] (fold_from relative, len: none), created with
 * value 0 and stamp -1 when new; NULL with an exception set when out of memory. */
INLINE slot_t *table_find(table_t *tb, const text_t *t, Py_ssize_t start, Py_ssize_t len,
                          Py_ssize_t fold_from) {
    slot_t probe = {start, len, fold_from, 0, 0, -1, NULL};
    probe.hash = key_hash(t, &probe, tb->mode, tb->seed);
    size_t j = (size_t)probe.hash & tb->mask;
    while (tb->slots[j].start >= 0) {
        slot_t *k = &tb->slots[j];
        if (keys_equal(t, k, &probe, tb->mode)) {
            /* The key's latest occurrence: the next comparison reads text still in cache. */
            k->start = probe.start;
            k->fold_from = probe.fold_from;
            return k;
        }
        j = (j + 1) & tb->mask;
    }
    if ((tb->used + 1) * 2 > tb->mask + 1) {
        if (table_grow(tb) < 0) return NULL;
        j = (size_t)probe.hash & tb->mask;
        while (tb->slots[j].start >= 0) j = (j + 1) & tb->mask;
    }
    tb->slots[j] = probe;
    tb->used++;
    return &tb->slots[j];
}

/* The str of a slot's key (a new reference), built once and kept in the slot. */
static PyObject *slot_str(const text_t *t, slot_t *k, int mode) {
    if (k->obj == NULL) {
        int same = 1;
        if (mode != EXACT)
            for (Py_ssize_t i = 0; i < k->len && same; i++)
                same = key_char(t, k, mode, i) == at(t, k->start + i);
        if (same) {
            k->obj = PyUnicode_Substring(t->obj, k->start, k->start + k->len);
        } else {
            Py_UCS4 *buf = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(k->len ? k->len : 1));
            if (buf == NULL) return PyErr_NoMemory();
            for (Py_ssize_t i = 0; i < k->len; i++) buf[i] = key_char(t, k, mode, i);
            k->obj = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, k->len);
            PyMem_Free(buf);
        }
        if (k->obj == NULL) return NULL;
    }
    Py_INCREF(k->obj);
    return k->obj;
}

/* {key: value} of every slot, or None when the table was not kept. */
static PyObject *table_counts(const text_t *t, table_t *tb) {
    if (tb->slots == NULL) Py_RETURN_NONE;
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (size_t i = 0; i <= tb->mask; i++) {
        slot_t *k = &tb->slots[i];
        if (k->start < 0) continue;
        PyObject *key = slot_str(t, k, tb->mode);
        PyObject *value = key ? PyLong_FromLongLong(k->value) : NULL;
        int failed = value == NULL || PyDict_SetItem(out, key, value) < 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* Count a key once per message (the message's number is the stamp). */
INLINE int count_once(table_t *tb, const text_t *t, Py_ssize_t start, Py_ssize_t len,
                      Py_ssize_t fold_from, int64_t message) {
    slot_t *k = table_find(tb, t, start, len, fold_from);
    if (k == NULL) return -1;
    if (k->stamp != message) {
        k->stamp = message;
        k->value++;
    }
    return 0;
}

/* The domain of a recipient line's stripped text [s, e), as identity.recipient_domain reads
 * it: angle brackets stripped, after the last "@", with a local part and a domain; counted
 * once per message. */
INLINE int count_domain(table_t *tb, const text_t *t, Py_ssize_t s, Py_ssize_t e,
                        int64_t message) {
    while (s < e && (at(t, s) == '<' || at(t, s) == '>')) s++;
    while (e > s && (at(t, e - 1) == '<' || at(t, e - 1) == '>')) e--;
    Py_ssize_t a = e - 1;
    while (a >= s && at(t, a) != '@') a--;
    if (a <= s || a + 1 >= e) return 0;
    return count_once(tb, t, a + 1, e - a - 1, 0, message);
}

/* A sender's key: folded after its last "@". */
INLINE int count_sender(table_t *tb, const text_t *t, Py_ssize_t s, Py_ssize_t e,
                        int64_t message) {
    Py_ssize_t a = e - 1;
    while (a >= s && at(t, a) != '@') a--;
    return count_once(tb, t, s, e - s, a >= s ? a + 1 - s : e - s, message);
}

/* ------------------------------------------------------------------ big sums
 * Sums that could pass 2^63 on a hostile listing spill into a Python int. */
typedef struct {
    uint64_t low;
    PyObject *high; /* NULL while 0 */
} sum_t;

INLINE int sum_add(sum_t *s, uint64_t value) {
    if (s->low + value < s->low || s->low + value > ((uint64_t)1 << 62)) {
        PyObject *part = PyLong_FromUnsignedLongLong(s->low);
        if (part == NULL) return -1;
        PyObject *total = s->high ? PyNumber_Add(s->high, part) : (Py_INCREF(part), part);
        Py_DECREF(part);
        if (total == NULL) return -1;
        Py_XSETREF(s->high, total);
        s->low = 0;
    }
    s->low += value;
    return 0;
}

/* The sum as a Python int (a new reference); clears it. */
static PyObject *sum_take(sum_t *s) {
    PyObject *low = PyLong_FromUnsignedLongLong(s->low);
    if (low == NULL || s->high == NULL) return low;
    PyObject *total = PyNumber_Add(s->high, low);
    Py_DECREF(low);
    Py_CLEAR(s->high);
    return total;
}

/* ------------------------------------------------------------------ spans
 * A growable list of [start, end) spans: the pending recipients of the message being read. */
typedef struct {
    Py_ssize_t *items;
    Py_ssize_t count, capacity;
} spans_t;

INLINE int spans_add(spans_t *s, Py_ssize_t start, Py_ssize_t end) {
    if (s->count + 2 > s->capacity) {
        Py_ssize_t capacity = s->capacity ? s->capacity * 2 : 32;
        Py_ssize_t *items = PyMem_Realloc(s->items, sizeof(Py_ssize_t) * (size_t)capacity);
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->items = items;
        s->capacity = capacity;
    }
    s->items[s->count++] = start;
    s->items[s->count++] = end;
    return 0;
}

/* A tuple of the spans' texts (a new reference). */
static PyObject *spans_tuple(const text_t *t, const spans_t *s) {
    PyObject *out = PyTuple_New(s->count / 2);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < s->count / 2; i++) {
        PyObject *item = PyUnicode_Substring(t->obj, s->items[2 * i], s->items[2 * i + 1]);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

/* ------------------------------------------------------------------ people
 * What a reader keeps, when asked, of the messages' people: sender and recipient-domain
 * counts, and a record per message (the recipients of the message being read). */
typedef struct {
    int want_senders, want_domains, want_records;
    table_t senders, domains;
    PyObject *records;
    spans_t recipients;
} people_t;

/* The tables and the record list asked for; -1 with an exception set. */
static int people_init(people_t *p, uint64_t seed) {
    if (p->want_senders && table_init(&p->senders, CANON, seed, 10) < 0) return -1;
    if (p->want_domains && table_init(&p->domains, CANON, seed, 10) < 0) return -1;
    if (p->want_records && (p->records = PyList_New(0)) == NULL) return -1;
    return 0;
}

static void people_free(people_t *p) {
    table_free(&p->senders);
    table_free(&p->domains);
    PyMem_Free(p->recipients.items);
    Py_CLEAR(p->records);
}

/* The sender [s, e) of message number `message`, counted when asked for; -1: an exception. */
INLINE int people_add_sender(people_t *p, const text_t *t, Py_ssize_t s, Py_ssize_t e,
                             int64_t message) {
    return p->want_senders ? count_sender(&p->senders, t, s, e, message) : 0;
}

/* A pending recipient [s, e) of message number `message`: its domain counted and the
 * recipient kept for the record, when asked for; -1 with an exception set. */
INLINE int people_add_recipient(people_t *p, const text_t *t, Py_ssize_t s, Py_ssize_t e,
                                int64_t message) {
    if (p->want_domains && count_domain(&p->domains, t, s, e, message) < 0) return -1;
    if (p->want_records && spans_add(&p->recipients, s, e) < 0) return -1;
    return 0;
}

/* Appends record (a new reference, stolen; NULL when building it failed) to the records;
 * -1 with an exception set. */
static int people_add_record(people_t *p, PyObject *record) {
    if (record == NULL) return -1;
    int failed = PyList_Append(p->records, record);
    Py_DECREF(record);
    return failed;
}

/* The arguments (text: str, start: int, end: int, ...) of a scan, with 0 <= start <= end <=
 * len(text); -1 with an exception set otherwise. */
static int check_region(PyObject *text, Py_ssize_t start, Py_ssize_t end) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return -1;
#endif
    if (start < 0 || end > PyUnicode_GET_LENGTH(text) || start > end) {
        PyErr_SetString(PyExc_ValueError,
                        "scan: start and end must satisfy 0 <= start <= end <= len(text)");
        return -1;
    }
    return 0;
}

/* Defines read_by_kind(text, r): READ(&t, r) with a text_t t whose kind is a constant in
 * each branch, so that READ (an INLINE function) is compiled once per kind. */
#define DEFINE_READ_BY_KIND(READER, READ)                                                  \
    static PyObject *read_by_kind(PyObject *text, READER *r) {                             \
        switch (PyUnicode_KIND(text)) {                                                    \
        case PyUnicode_1BYTE_KIND: {                                                       \
            const text_t t = {text, PyUnicode_1BYTE_KIND, PyUnicode_DATA(text)};           \
            return READ(&t, r);                                                            \
        }                                                                                  \
        case PyUnicode_2BYTE_KIND: {                                                       \
            const text_t t = {text, PyUnicode_2BYTE_KIND, PyUnicode_DATA(text)};           \
            return READ(&t, r);                                                            \
        }                                                                                  \
        default: {                                                                         \
            const text_t t = {text, PyUnicode_4BYTE_KIND, PyUnicode_DATA(text)};           \
            return READ(&t, r);                                                            \
        }                                                                                  \
        }                                                                                  \
    }

/* The module NAME (a bare word) holding its one function scan; SCAN_DOC is scan's docstring,
 * DOC the module's. */
#define SCAN_MODULE(NAME, SCAN_DOC, DOC)                                                   \
    static PyMethodDef methods[] = {                                                       \
        {"scan", scan, METH_VARARGS, SCAN_DOC},                                            \
        {NULL, NULL, 0, NULL},                                                             \
    };                                                                                     \
    static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, #NAME, DOC, -1, methods};   \
    PyMODINIT_FUNC PyInit_##NAME(void) { return PyModule_Create(&module); }

#endif
