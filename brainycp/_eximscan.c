/* The C reading of canonical `exim -bp` text: the accelerator of brainycp.queue.summarize.
 *
 * scan(text, start, end) reads the lines of text[start:end] and returns
 *     (messages, frozen, bounces, ages, sizes)
 * where ages and sizes map each age token (" 5m", "25m", "100d") and each size field (the
 * five characters Exim prints, " 2.1K") to the number of headers that show it; or None when
 * any line is not canonical, and then the caller reads the text with its Python paths.
 *
 * It accepts a strict subset of what the line-by-line reading (brainycp.queue's
 * _exim_summarize_lines) accepts, and reads it the same way:
 *   - an empty line: nothing;
 *   - a header: AGE " " SIZE " " ID " <" REST, where AGE is [ 0-9][0-9][smhd] or
 *     [0-9]{3}d, SIZE is five ASCII characters (the caller converts them, and gives up when
 *     they are not a size), ID is 6-6-2 or 6-11-4 ASCII letters and digits, and REST ends in
 *     its last ">", alone or followed by " *** frozen ***". The sender is REST up to that
 *     ">": empty means a bounce. That is exactly how the line's regular expression splits it.
 *   - after a header of this slice: a line that starts with a tab or four spaces (a
 *     recipient, a delivered one or a note: none of them counts);
 *   - any other line: None.
 * It only reads the text, never past end, and allocates one table, freed before it returns.
 */
#include "_scan.h"

#define AGE_SLOTS 1440 /* [ 0-9][0-9][smhd]: 11 * 10 * 4 = 440, then [0-9]{3}d: 1000 */
/* Distinct size fields of one region, in an open-addressing table of 2^bits slots kept at
 * most half full: it starts at 64 slots and doubles as needed, up to 2^15 (Exim prints a few
 * thousand different size fields at most). A region with more is left to Python. */
#define SIZE_MIN_BITS 6
#define SIZE_MAX_BITS 15

static const char FROZEN[] = " *** frozen ***";
#define FROZEN_LEN 15

typedef struct {
    uint64_t key; /* 0: empty slot */
    Py_ssize_t count;
} size_slot;

typedef struct {
    size_slot *slots;
    int bits;
    Py_ssize_t capacity, used;
} size_table;

INLINE int unit_index(Py_UCS4 c) {
    switch (c) {
    case 's': return 0;
    case 'm': return 1;
    case 'h': return 2;
    case 'd': return 3;
    default: return -1;
    }
}

static const char UNITS[] = "smhd";

INLINE int alnum_run(const text_t *t, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t eol) {
    if (pos + n > eol) return 0;
    for (Py_ssize_t i = pos; i < pos + n; i++)
        if (!is_alnum(at(t, i))) return 0;
    return 1;
}

/* The end of an Exim id at pos followed by " <" (the offset of the sender's first character),
 * or -1. The two shapes cannot both be followed by " <" at the same place. */
INLINE Py_ssize_t after_id(const text_t *t, Py_ssize_t p, Py_ssize_t eol) {
    if (!alnum_run(t, p, 6, eol) || p + 7 > eol || at(t, p + 6) != '-') return -1;
    Py_ssize_t q = p + 7;
    /* 6-6-2 */
    if (alnum_run(t, q, 6, eol) && q + 6 < eol && at(t, q + 6) == '-' && alnum_run(t, q + 7, 2, eol)
        && q + 11 <= eol && at(t, q + 9) == ' ' && at(t, q + 10) == '<')
        return q + 11;
    /* 6-11-4 */
    if (alnum_run(t, q, 11, eol) && q + 11 < eol && at(t, q + 11) == '-'
        && alnum_run(t, q + 12, 4, eol) && q + 18 <= eol && at(t, q + 16) == ' '
        && at(t, q + 17) == '<')
        return q + 18;
    return -1;
}

static size_slot *size_find(size_table *table, uint64_t key) {
    uint64_t h = (key * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - table->bits);
    for (;;) {
        size_slot *slot = &table->slots[h];
        if (slot->key == key || slot->key == 0) return slot;
        h = (h + 1) & (uint64_t)(table->capacity - 1);
    }
}

/* Doubles the table; -1 when it may not grow or memory is short (the region goes to Python). */
static int size_grow(size_table *table) {
    if (table->bits >= SIZE_MAX_BITS) return -1;
    size_table bigger = {NULL, table->bits + 1, table->capacity * 2, table->used};
    bigger.slots = PyMem_Calloc((size_t)bigger.capacity, sizeof(size_slot));
    if (bigger.slots == NULL) return -1;
    for (Py_ssize_t i = 0; i < table->capacity; i++)
        if (table->slots[i].key) *size_find(&bigger, table->slots[i].key) = table->slots[i];
    PyMem_Free(table->slots);
    *table = bigger;
    return 0;
}

static int size_add(size_table *table, uint64_t key) {
    size_slot *slot = size_find(table, key);
    if (slot->key == key) {
        slot->count++;
        return 0;
    }
    if (2 * (table->used + 1) > table->capacity) {
        if (size_grow(table) < 0) return -1;
        slot = size_find(table, key);
    }
    slot->key = key;
    slot->count = 1;
    table->used++;
    return 0;
}

/* Reads one header line [pos, eol); 0 when it is not canonical. */
INLINE int read_header(const text_t *t, Py_ssize_t pos, Py_ssize_t eol, Py_ssize_t *ages,
                       size_table *sizes, Py_ssize_t *frozen, Py_ssize_t *bounces) {
    if (eol - pos < 4) return 0;
    Py_UCS4 c0 = at(t, pos), c1 = at(t, pos + 1), c2 = at(t, pos + 2);
    Py_ssize_t age_slot, p;
    int unit = unit_index(c2);
    if ((c0 == ' ' || is_digit(c0)) && is_digit(c1) && unit >= 0) {
        age_slot = ((c0 == ' ' ? 10 : (Py_ssize_t)(c0 - '0')) * 10 + (c1 - '0')) * 4 + unit;
        p = pos + 3;
    } else if (is_digit(c0) && is_digit(c1) && is_digit(c2) && at(t, pos + 3) == 'd') {
        age_slot = 440 + (c0 - '0') * 100 + (c1 - '0') * 10 + (c2 - '0');
        p = pos + 4;
    } else {
        return 0;
    }
    /* " " SIZE(5) " " */
    if (p + 7 > eol || at(t, p) != ' ' || at(t, p + 6) != ' ') return 0;
    uint64_t key = 1;
    for (Py_ssize_t i = p + 1; i < p + 6; i++) {
        Py_UCS4 c = at(t, i);
        if (c == 0 || c > 127) return 0;
        key = (key << 7) | c;
    }
    Py_ssize_t rest = after_id(t, p + 7, eol);
    if (rest < 0) return 0;
    /* The sender ends at the last ">" of the line; after it, nothing or the frozen mark. */
    Py_ssize_t gt = eol - 1;
    while (gt >= rest && at(t, gt) != '>') gt--;
    if (gt < rest) return 0;
    Py_ssize_t tail = eol - gt - 1;
    int is_frozen = 0;
    if (tail == FROZEN_LEN) {
        for (Py_ssize_t i = 0; i < FROZEN_LEN; i++)
            if (at(t, gt + 1 + i) != (Py_UCS4)(unsigned char)FROZEN[i]) return 0;
        is_frozen = 1;
    } else if (tail != 0) {
        return 0;
    }
    if (size_add(sizes, key) < 0) return 0;
    ages[age_slot]++;
    *frozen += is_frozen;
    *bounces += gt == rest;
    return 1;
}

static PyObject *age_token(Py_ssize_t slot) {
    char token[4];
    if (slot < 440) {
        Py_ssize_t first = slot / 40, second = slot / 4 % 10;
        token[0] = first == 10 ? ' ' : (char)('0' + first);
        token[1] = (char)('0' + second);
        token[2] = UNITS[slot % 4];
        return PyUnicode_FromStringAndSize(token, 3);
    }
    slot -= 440;
    token[0] = (char)('0' + slot / 100);
    token[1] = (char)('0' + slot / 10 % 10);
    token[2] = (char)('0' + slot % 10);
    token[3] = 'd';
    return PyUnicode_FromStringAndSize(token, 4);
}

static PyObject *size_token(uint64_t key) {
    char token[5];
    for (int i = 4; i >= 0; i--) {
        token[i] = (char)(key & 0x7F);
        key >>= 7;
    }
    return PyUnicode_FromStringAndSize(token, 5);
}

static int count_into(PyObject *dict, PyObject *key, Py_ssize_t count) {
    if (key == NULL) return -1;
    PyObject *value = PyLong_FromSsize_t(count);
    int rc = value == NULL ? -1 : PyDict_SetItem(dict, key, value);
    Py_XDECREF(value);
    Py_DECREF(key);
    return rc;
}

static PyObject *build_result(Py_ssize_t messages, Py_ssize_t frozen, Py_ssize_t bounces,
                              const Py_ssize_t *ages, const size_table *sizes) {
    PyObject *age_dict = PyDict_New();
    PyObject *size_dict = PyDict_New();
    if (age_dict == NULL || size_dict == NULL) goto fail;
    for (Py_ssize_t i = 0; i < AGE_SLOTS; i++)
        if (ages[i] && count_into(age_dict, age_token(i), ages[i]) < 0) goto fail;
    for (Py_ssize_t i = 0; i < sizes->capacity; i++) {
        const size_slot *slot = &sizes->slots[i];
        if (slot->key && count_into(size_dict, size_token(slot->key), slot->count) < 0) goto fail;
    }
    return Py_BuildValue("(nnnNN)", messages, frozen, bounces, age_dict, size_dict);
fail:
    Py_XDECREF(age_dict);
    Py_XDECREF(size_dict);
    return NULL;
}

/* The loop over the lines; kind is a constant in each of its three callers. */
INLINE int scan_kind(int kind, const void *data, Py_ssize_t start, Py_ssize_t end,
                     Py_ssize_t *ages, size_table *sizes, Py_ssize_t *counts) {
    const text_t t = {kind, data};
    Py_ssize_t messages = 0, frozen = 0, bounces = 0;
    Py_ssize_t pos = start;
    while (pos < end) {
        Py_ssize_t eol = next_newline(&t, pos, end);
        if (eol > pos) {
            Py_UCS4 first = at(&t, pos);
            if (messages && (first == '\t' || (eol - pos >= 4 && first == ' ' && at(&t, pos + 1) == ' '
                                               && at(&t, pos + 2) == ' ' && at(&t, pos + 3) == ' '))) {
                /* a recipient line of the message above */
            } else if (read_header(&t, pos, eol, ages, sizes, &frozen, &bounces)) {
                messages++;
            } else {
                return 0;
            }
        }
        pos = eol + 1;
    }
    counts[0] = messages;
    counts[1] = frozen;
    counts[2] = bounces;
    return messages > 0;
}

static int scan_ucs1(const void *d, Py_ssize_t s, Py_ssize_t e, Py_ssize_t *a, size_table *z, Py_ssize_t *c) {
    return scan_kind(PyUnicode_1BYTE_KIND, d, s, e, a, z, c);
}
static int scan_ucs2(const void *d, Py_ssize_t s, Py_ssize_t e, Py_ssize_t *a, size_table *z, Py_ssize_t *c) {
    return scan_kind(PyUnicode_2BYTE_KIND, d, s, e, a, z, c);
}
static int scan_ucs4(const void *d, Py_ssize_t s, Py_ssize_t e, Py_ssize_t *a, size_table *z, Py_ssize_t *c) {
    return scan_kind(PyUnicode_4BYTE_KIND, d, s, e, a, z, c);
}

static PyObject *scan(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *text;
    Py_ssize_t start, end;
    if (parse_region(args, &text, &start, &end) < 0) return NULL;
    Py_ssize_t ages[AGE_SLOTS];
    memset(ages, 0, sizeof ages);
    size_table sizes = {NULL, SIZE_MIN_BITS, (Py_ssize_t)1 << SIZE_MIN_BITS, 0};
    sizes.slots = PyMem_Calloc((size_t)sizes.capacity, sizeof(size_slot));
    if (sizes.slots == NULL) return PyErr_NoMemory();
    Py_ssize_t counts[3] = {0, 0, 0};
    const void *data = PyUnicode_DATA(text);
    int ok;
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND: ok = scan_ucs1(data, start, end, ages, &sizes, counts); break;
    case PyUnicode_2BYTE_KIND: ok = scan_ucs2(data, start, end, ages, &sizes, counts); break;
    default: ok = scan_ucs4(data, start, end, ages, &sizes, counts); break;
    }
    PyObject *result = ok ? build_result(counts[0], counts[1], counts[2], ages, &sizes) : Py_NewRef(Py_None);
    PyMem_Free(sizes.slots);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(text, start, end) -> (messages, frozen, bounces, ages, sizes) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "brainycp._eximscan",
    "The C reading of canonical exim -bp text (see brainycp.queue).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__eximscan(void) { return PyModule_Create(&module); }
