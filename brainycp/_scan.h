/* What the queue parser's C readers (_eximscan.c, _pfscan.c) share: reading a str of any
 * kind in place, character classes, and finding line ends. Everything here only reads. */
#ifndef BRAINYCP_SCAN_H
#define BRAINYCP_SCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    int kind;
    const void *data;
} text_t;

/* Every reader is inlined into one copy of the loop per string kind (see scan_kind), so
 * that `at` compiles to a plain load. */
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

/* The arguments (text: str, start: int, end: int) of a scan, with 0 <= start <= end <=
 * len(text); -1 with an exception set otherwise. */
static int parse_region(PyObject *args, PyObject **text, Py_ssize_t *start, Py_ssize_t *end) {
    if (!PyArg_ParseTuple(args, "Unn:scan", text, start, end)) return -1;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(*text) < 0) return -1;
#endif
    if (*start < 0 || *end > PyUnicode_GET_LENGTH(*text) || *start > *end) {
        PyErr_SetString(PyExc_ValueError, "scan: start and end must satisfy 0 <= start <= end <= len(text)");
        return -1;
    }
    return 0;
}

#endif
