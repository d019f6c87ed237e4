/* The C reading of canonical Postfix `mailq` text: the accelerator of brainycp.queue.summarize.
 *
 * scan(text, start, end) reads the lines of text[start:end] (split on "\n" only) and returns
 *     (messages, held, bounces, bytes, hours, single, multi, last)
 * or None when any line is off the canonical grammar below; then the caller reads the text
 * with its Python paths.
 *   - hours maps an hour key ((wday * 12 + mon) * 100 + day) * 24 + hour (wday 0 = Mon,
 *     mon 0 = Jan, day and hour as printed) to a bytes object of little-endian uint16
 *     values mm * 60 + ss, one per message of that hour, in listing order;
 *   - single maps a reason text to the number of messages (the region's last one aside)
 *     that show exactly one reason line; multi holds a tuple of the reason texts of each
 *     message (the last one aside) with two or more; last is the tuple of the reason texts
 *     of the region's last message (the next region may go on with it).
 *
 * It accepts a strict subset of what the line-by-line reading (brainycp.queue's
 * _postfix_summarize_lines) accepts, and reads it the same way:
 *   - an empty line, or one of spaces only: nothing;
 *   - a header: ID FLAGS " "+ SIZE " "+ WDAY " " MON " "+ DAY " " HH:MM:SS, then the end of
 *     the line or " "+ SENDER " "*, where ID is 5 to 32 ASCII letters and digits (the whole
 *     run), FLAGS [*!#]* (held when it holds "!"), SIZE 1 to 12 digits, DAY 1 or 2 digits,
 *     HH <= 23, MM <= 59, SS <= 60, and no character of the line is whitespace to Python
 *     but " ". The sender runs from its first to its last non-space character; "", "<>" and
 *     "MAILER-DAEMON" are bounces. That is how _POSTFIX_HEADER splits such a line.
 *   - after a header of this region: a line that starts with " ", or with "(" and ends in
 *     ")" (spaces after it allowed). Stripped of its spaces it must neither start nor end
 *     with other whitespace; "(text)" is a reason line (text as stripped[1:-1]), anything
 *     else indented a recipient (not counted);
 *   - the title (-+Queue ID-+ .*) and "Mail queue is empty", anywhere: nothing (as in the
 *     line-by-line reading, they do not end a message);
 *   - the footer (-- N Kbytes in N Request[s]. then spaces): nothing, and only blank lines
 *     may follow it;
 *   - any other line, a region without a message, or one of 4 Gi characters or more: None;
 *     so is a region with more than 16,384 different reason texts, or more than 65,536
 *     reason lines in messages that show two or more (see MAX_DISTINCT_REASONS).
 * It only reads the text, never outside [start, end), and frees what it allocates before it
 * returns; it keeps no state between calls.
 */
#include "_scan.h"

/* Whitespace to Python (str.strip, the regex's \S) other than the space itself. */
INLINE int other_space(Py_UCS4 c) {
    if (c < 128) return c < ' ' && Py_UNICODE_ISSPACE(c);
    return Py_UNICODE_ISSPACE(c);
}

/* The first offset at or after pos (before eol) that is not a space, or eol: eight bytes at
 * a time, since Postfix indents recipients by 41 spaces and reasons to column 78. */
INLINE Py_ssize_t skip_spaces(const text_t *t, Py_ssize_t pos, Py_ssize_t eol) {
    const Py_ssize_t per_word = 8 / t->kind;
    const uint64_t spaces = t->kind == PyUnicode_1BYTE_KIND   ? UINT64_C(0x2020202020202020)
                            : t->kind == PyUnicode_2BYTE_KIND ? UINT64_C(0x0020002000200020)
                                                              : UINT64_C(0x0000002000000020);
    const char *base = (const char *)t->data;
    while (eol - pos >= per_word) {
        uint64_t word;
        memcpy(&word, base + pos * t->kind, 8);
        if (word != spaces) break;
        pos += per_word;
    }
    while (pos < eol && at(t, pos) == ' ') pos++;
    return pos;
}

/* Whether text[pos:pos+n] (inside the line) is the ASCII string s. */
INLINE int has_ascii(const text_t *t, Py_ssize_t pos, Py_ssize_t eol, const char *s, Py_ssize_t n) {
    if (eol - pos < n) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (at(t, pos + i) != (Py_UCS4)(unsigned char)s[i]) return 0;
    return 1;
}

static const char WEEKDAYS[] = "MonTueWedThuFriSatSun";
static const char MONTHS[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

/* The index of the three ASCII letters at pos in names (count names of three), or -1. */
INLINE int name_index(const text_t *t, Py_ssize_t pos, const char *names, int count) {
    Py_UCS4 a = at(t, pos), b = at(t, pos + 1), c = at(t, pos + 2);
    for (int i = 0; i < count; i++)
        if (a == (Py_UCS4)names[3 * i] && b == (Py_UCS4)names[3 * i + 1] && c == (Py_UCS4)names[3 * i + 2])
            return i;
    return -1;
}

typedef struct {
    int32_t hour_key;
    uint16_t mmss;
    int held, bounce;
    int64_t size;
} header_t;

/* Reads one header line [pos, eol); 0 when it is not canonical. */
INLINE int read_header(const text_t *t, Py_ssize_t pos, Py_ssize_t eol, header_t *h) {
    Py_ssize_t p = pos;
    while (p < eol && is_alnum(at(t, p))) p++;
    if (p - pos < 5 || p - pos > 32) return 0;
    int held = 0;
    for (; p < eol; p++) {
        Py_UCS4 c = at(t, p);
        if (c == '!') held = 1;
        else if (c != '*' && c != '#') break;
    }
    if (p >= eol || at(t, p) != ' ') return 0;
    while (p < eol && at(t, p) == ' ') p++;
    Py_ssize_t digits = p;
    int64_t size = 0;
    while (p < eol && is_digit(at(t, p))) {
        if (p - digits >= 12) return 0;
        size = size * 10 + (int64_t)(at(t, p) - '0');
        p++;
    }
    if (p == digits || p >= eol || at(t, p) != ' ') return 0;
    while (p < eol && at(t, p) == ' ') p++;
    /* WDAY " " MON " " */
    if (eol - p < 8 || at(t, p + 3) != ' ' || at(t, p + 7) != ' ') return 0;
    int wday = name_index(t, p, WEEKDAYS, 7), mon = name_index(t, p + 4, MONTHS, 12);
    if (wday < 0 || mon < 0) return 0;
    p += 8;
    while (p < eol && at(t, p) == ' ') p++;
    /* DAY " " HH:MM:SS */
    if (p >= eol || !is_digit(at(t, p))) return 0;
    int day = (int)(at(t, p++) - '0');
    if (p < eol && is_digit(at(t, p))) day = day * 10 + (int)(at(t, p++) - '0');
    if (eol - p < 9 || at(t, p) != ' ') return 0;
    p++;
    Py_UCS4 c[8];
    for (int i = 0; i < 8; i++) c[i] = at(t, p + i);
    if (!is_digit(c[0]) || !is_digit(c[1]) || c[2] != ':' || !is_digit(c[3]) || !is_digit(c[4])
        || c[5] != ':' || !is_digit(c[6]) || !is_digit(c[7]))
        return 0;
    int hh = (int)((c[0] - '0') * 10 + (c[1] - '0'));
    int mm = (int)((c[3] - '0') * 10 + (c[4] - '0'));
    int ss = (int)((c[6] - '0') * 10 + (c[7] - '0'));
    if (hh > 23 || mm > 59 || ss > 60) return 0;
    p += 8;
    /* end of line, or spaces, then the sender up to its last non-space character */
    int bounce = 1;
    if (p < eol) {
        if (at(t, p) != ' ') return 0;
        while (p < eol && at(t, p) == ' ') p++;
        if (p < eol) {
            Py_ssize_t q = eol - 1;
            while (at(t, q) == ' ') q--; /* stops at p at the latest */
            for (Py_ssize_t i = p; i <= q; i++)
                if (other_space(at(t, i))) return 0;
            Py_ssize_t n = q - p + 1;
            bounce = (n == 2 && has_ascii(t, p, eol, "<>", 2))
                     || (n == 13 && has_ascii(t, p, eol, "MAILER-DAEMON", 13));
        }
    }
    h->hour_key = (int32_t)((((wday * 12 + mon) * 100 + day) * 24) + hh);
    h->mmss = (uint16_t)(mm * 60 + ss);
    h->held = held;
    h->bounce = bounce;
    h->size = size;
    return 1;
}

/* -+Queue ID-+ .* */
INLINE int is_title(const text_t *t, Py_ssize_t pos, Py_ssize_t eol) {
    Py_ssize_t p = pos;
    while (p < eol && at(t, p) == '-') p++;
    if (p == pos || !has_ascii(t, p, eol, "Queue ID-", 9)) return 0;
    p += 9;
    while (p < eol && at(t, p) == '-') p++;
    return p < eol && at(t, p) == ' ';
}

INLINE Py_ssize_t skip_digits(const text_t *t, Py_ssize_t p, Py_ssize_t eol) {
    while (p < eol && is_digit(at(t, p))) p++;
    return p;
}

/* -- [0-9]+ Kbytes in [0-9]+ Requests?\. then spaces */
INLINE int is_footer(const text_t *t, Py_ssize_t pos, Py_ssize_t eol) {
    if (!has_ascii(t, pos, eol, "-- ", 3)) return 0;
    Py_ssize_t p = skip_digits(t, pos + 3, eol);
    if (p == pos + 3 || !has_ascii(t, p, eol, " Kbytes in ", 11)) return 0;
    Py_ssize_t q = skip_digits(t, p + 11, eol);
    if (q == p + 11 || !has_ascii(t, q, eol, " Request", 8)) return 0;
    q += 8;
    if (q < eol && at(t, q) == 's') q++;
    if (q >= eol || at(t, q) != '.') return 0;
    for (q++; q < eol; q++)
        if (at(t, q) != ' ') return 0;
    return 1;
}

/* ---- growable tables (PyMem), all owned by one scan_state ---- */

/* A distinct reason text of the region: its first span, and how many messages show it as
 * their only reason. The str is made once, when the result is built. */
typedef struct {
    Py_ssize_t start, len, single;
    uint64_t hash;
    PyObject *text;
} reason_entry;

typedef struct {
    int32_t key;
    Py_ssize_t count;
} hour_entry;

typedef struct {
    PyObject *text;
    const void *data;
    int kind;
    Py_ssize_t messages, held, bounces;
    int64_t bytes;
    /* hours: distinct keys in order of first sight, an index table over them, and one
     * (index << 12 | mmss) per message */
    hour_entry *hours;
    Py_ssize_t hours_used, hours_cap;
    uint32_t *hour_index; /* 0: empty, else index + 1 */
    Py_ssize_t hour_index_cap;
    uint32_t *arrivals;
    Py_ssize_t arrivals_used, arrivals_cap;
    /* the distinct reason texts, and an index table over them */
    reason_entry *reasons;
    Py_ssize_t reasons_used, reasons_cap;
    uint32_t *reason_index;
    Py_ssize_t reason_index_cap;
    /* the reasons (indices into reasons) of the message being read */
    uint32_t *current;
    Py_ssize_t current_used, current_cap;
    /* the reasons of each message with two or more, one after the other, and where each
     * message's run ends */
    uint32_t *multi;
    Py_ssize_t multi_used, multi_cap;
    Py_ssize_t *multi_ends;
    Py_ssize_t multi_ends_used, multi_ends_cap;
} scan_state;

static int grow(void **items, Py_ssize_t *cap, size_t item_size, Py_ssize_t need) {
    if (need <= *cap) return 0;
    Py_ssize_t cap2 = *cap ? *cap : 16;
    while (cap2 < need) cap2 *= 2;
    void *moved = PyMem_Realloc(*items, (size_t)cap2 * item_size);
    if (moved == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = moved;
    *cap = cap2;
    return 0;
}

static uint32_t *new_index(Py_ssize_t cap) {
    uint32_t *index = PyMem_Calloc((size_t)cap, sizeof(uint32_t));
    if (index == NULL) PyErr_NoMemory();
    return index;
}

INLINE uint64_t mix(uint64_t h) { return h * UINT64_C(0x9E3779B97F4A7C15); }

/* The index of an hour key, added on first sight; -1 on memory errors. */
static Py_ssize_t hour_slot(scan_state *s, int32_t key) {
    if (2 * (s->hours_used + 1) > s->hour_index_cap) {
        Py_ssize_t cap = s->hour_index_cap ? 2 * s->hour_index_cap : 256;
        uint32_t *index = new_index(cap);
        if (index == NULL) return -1;
        for (Py_ssize_t i = 0; i < s->hours_used; i++) {
            size_t h = (size_t)(mix((uint64_t)s->hours[i].key) >> 32) & (size_t)(cap - 1);
            while (index[h]) h = (h + 1) & (size_t)(cap - 1);
            index[h] = (uint32_t)(i + 1);
        }
        PyMem_Free(s->hour_index);
        s->hour_index = index;
        s->hour_index_cap = cap;
    }
    size_t mask = (size_t)(s->hour_index_cap - 1);
    size_t h = (size_t)(mix((uint64_t)key) >> 32) & mask;
    while (s->hour_index[h]) {
        Py_ssize_t i = (Py_ssize_t)s->hour_index[h] - 1;
        if (s->hours[i].key == key) return i;
        h = (h + 1) & mask;
    }
    if (grow((void **)&s->hours, &s->hours_cap, sizeof(hour_entry), s->hours_used + 1) < 0) return -1;
    Py_ssize_t i = s->hours_used++;
    s->hours[i] = (hour_entry){key, 0};
    s->hour_index[h] = (uint32_t)(i + 1);
    return i;
}

INLINE uint64_t mix_word(uint64_t h, const unsigned char *bytes) {
    uint64_t word;
    memcpy(&word, bytes, 8);
    h = (h ^ word) * UINT64_C(0xff51afd7ed558ccd);
    return h ^ (h >> 29);
}

/* A hash of a span's bytes, eight at a time in four independent lanes (reasons are long, up to
 * a few hundred characters; one chain of multiplications would wait on itself). */
static uint64_t span_hash(const scan_state *s, Py_ssize_t start, Py_ssize_t len) {
    const unsigned char *bytes = (const unsigned char *)s->data + start * s->kind;
    size_t n = (size_t)(len * s->kind);
    uint64_t h0 = UINT64_C(0x9E3779B97F4A7C15) ^ n, h1 = UINT64_C(0xc2b2ae3d27d4eb4f);
    uint64_t h2 = UINT64_C(0x165667b19e3779f9), h3 = UINT64_C(0x27d4eb2f165667c5);
    for (; n >= 32; n -= 32, bytes += 32) {
        h0 = mix_word(h0, bytes);
        h1 = mix_word(h1, bytes + 8);
        h2 = mix_word(h2, bytes + 16);
        h3 = mix_word(h3, bytes + 24);
    }
    for (; n >= 8; n -= 8, bytes += 8) h0 = mix_word(h0, bytes);
    unsigned char tail[8] = {0};
    memcpy(tail, bytes, n);
    h0 = mix_word(h0, tail);
    uint64_t h = h0 ^ (h1 << 16 | h1 >> 48) ^ (h2 << 32 | h2 >> 32) ^ (h3 << 48 | h3 >> 16);
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    return h ^ (h >> 32);
}

static int same_span(const scan_state *s, Py_ssize_t a, Py_ssize_t b, Py_ssize_t len) {
    const char *base = (const char *)s->data;
    return memcmp(base + a * s->kind, base + b * s->kind, (size_t)(len * s->kind)) == 0;
}

/* The index of the reason text[start:start+len], added on first sight; -1 on memory errors. */
static Py_ssize_t reason_slot(scan_state *s, Py_ssize_t start, Py_ssize_t len) {
    if (2 * (s->reasons_used + 1) > s->reason_index_cap) {
        Py_ssize_t cap = s->reason_index_cap ? 2 * s->reason_index_cap : 64;
        uint32_t *index = new_index(cap);
        if (index == NULL) return -1;
        for (Py_ssize_t i = 0; i < s->reasons_used; i++) {
            size_t h = (size_t)(mix(s->reasons[i].hash) >> 32) & (size_t)(cap - 1);
            while (index[h]) h = (h + 1) & (size_t)(cap - 1);
            index[h] = (uint32_t)(i + 1);
        }
        PyMem_Free(s->reason_index);
        s->reason_index = index;
        s->reason_index_cap = cap;
    }
    uint64_t hash = span_hash(s, start, len);
    size_t mask = (size_t)(s->reason_index_cap - 1);
    size_t h = (size_t)(mix(hash) >> 32) & mask;
    while (s->reason_index[h]) {
        Py_ssize_t i = (Py_ssize_t)s->reason_index[h] - 1;
        reason_entry *e = &s->reasons[i];
        if (e->hash == hash && e->len == len && same_span(s, e->start, start, len)) {
            e->start = start; /* the latest copy: the next comparison finds it in cache */
            return i;
        }
        h = (h + 1) & mask;
    }
    if (grow((void **)&s->reasons, &s->reasons_cap, sizeof(reason_entry), s->reasons_used + 1) < 0)
        return -1;
    Py_ssize_t i = s->reasons_used++;
    s->reasons[i] = (reason_entry){start, len, 0, hash, NULL};
    s->reason_index[h] = (uint32_t)(i + 1);
    return i;
}

/* What one region may hold of reasons: the distinct texts (each becomes a str) and the
 * reason lines of messages with two or more (each a tuple item). Past either, the region
 * goes to Python, which keeps only a class mask per message: a panel that prints millions
 * of different reason lines costs the C reading no more memory than this. Real queues stay
 * far below (a region of 4 Mi characters holds a few thousand messages). */
#define MAX_DISTINCT_REASONS 16384
#define MAX_LISTED_REASONS 65536

/* 1: added; 0: past a limit above (the region goes to Python); -1: an error. */
static int add_reason(scan_state *s, Py_ssize_t start, Py_ssize_t len) {
    if (s->reasons_used >= MAX_DISTINCT_REASONS
        || s->multi_used + s->current_used >= MAX_LISTED_REASONS)
        return 0;
    Py_ssize_t slot = reason_slot(s, start, len);
    if (slot < 0) return -1;
    if (grow((void **)&s->current, &s->current_cap, sizeof(uint32_t), s->current_used + 1) < 0) return -1;
    s->current[s->current_used++] = (uint32_t)slot;
    return 1;
}

/* A header ends the message above it: count its reasons. */
static int end_message(scan_state *s) {
    if (s->current_used == 1) {
        s->reasons[s->current[0]].single++;
    } else if (s->current_used > 1) {
        if (grow((void **)&s->multi, &s->multi_cap, sizeof(uint32_t), s->multi_used + s->current_used) < 0
            || grow((void **)&s->multi_ends, &s->multi_ends_cap, sizeof(Py_ssize_t), s->multi_ends_used + 1) < 0)
            return -1;
        memcpy(s->multi + s->multi_used, s->current, (size_t)s->current_used * sizeof(uint32_t));
        s->multi_used += s->current_used;
        s->multi_ends[s->multi_ends_used++] = s->multi_used;
    }
    s->current_used = 0;
    return 0;
}

static int add_header(scan_state *s, const header_t *h) {
    if (s->messages && end_message(s) < 0) return -1;
    Py_ssize_t slot = hour_slot(s, h->hour_key);
    if (slot < 0) return -1;
    if (grow((void **)&s->arrivals, &s->arrivals_cap, sizeof(uint32_t), s->arrivals_used + 1) < 0)
        return -1;
    s->arrivals[s->arrivals_used++] = ((uint32_t)slot << 12) | h->mmss; /* mmss <= 3600 < 4096 */
    s->hours[slot].count++;
    s->messages++;
    s->held += h->held;
    s->bounces += h->bounce;
    s->bytes += h->size;
    return 0;
}

/* The loop over the lines; kind is a constant in each of its three callers.
 * 1: read; 0: not canonical; -1: an error (exception set). */
INLINE int scan_kind(int kind, scan_state *s, Py_ssize_t start, Py_ssize_t end) {
    const text_t t = {kind, s->data};
    int after_footer = 0;
    Py_ssize_t pos = start;
    while (pos < end) {
        Py_ssize_t eol = next_newline(&t, pos, end);
        if (eol > pos) {
            Py_UCS4 first = at(&t, pos);
            if (first == ' ' || first == '(') {
                Py_ssize_t p = skip_spaces(&t, pos, eol), q = eol - 1;
                if (p <= q) { /* not a line of spaces only */
                    if (after_footer || !s->messages) return 0;
                    while (at(&t, q) == ' ') q--; /* stops at p at the latest */
                    Py_UCS4 a = at(&t, p), b = at(&t, q);
                    if (other_space(a) || other_space(b)) return 0;
                    if (a == '(' && b == ')') {
                        int added = add_reason(s, p + 1, q - p - 1);
                        if (added <= 0) return added;
                    } else if (first == '(') {
                        return 0; /* an unparsed line to the line-by-line reading */
                    }
                }
            } else if (after_footer) {
                return 0;
            } else {
                header_t h;
                if (read_header(&t, pos, eol, &h)) {
                    if (add_header(s, &h) < 0) return -1;
                } else if (first == '-' && is_footer(&t, pos, eol)) {
                    after_footer = 1;
                } else if (!(first == '-' && is_title(&t, pos, eol))
                           && !(eol - pos == 19 && has_ascii(&t, pos, eol, "Mail queue is empty", 19))) {
                    return 0;
                }
            }
        }
        pos = eol + 1;
    }
    return s->messages > 0;
}

static int scan_ucs1(scan_state *s, Py_ssize_t start, Py_ssize_t end) {
    return scan_kind(PyUnicode_1BYTE_KIND, s, start, end);
}
static int scan_ucs2(scan_state *s, Py_ssize_t start, Py_ssize_t end) {
    return scan_kind(PyUnicode_2BYTE_KIND, s, start, end);
}
static int scan_ucs4(scan_state *s, Py_ssize_t start, Py_ssize_t end) {
    return scan_kind(PyUnicode_4BYTE_KIND, s, start, end);
}

static PyObject *build_hours(const scan_state *s) {
    PyObject *hours = PyDict_New();
    PyObject **buffers = PyMem_Calloc((size_t)(s->hours_used ? s->hours_used : 1), sizeof(PyObject *));
    Py_ssize_t *fill = PyMem_Calloc((size_t)(s->hours_used ? s->hours_used : 1), sizeof(Py_ssize_t));
    if (hours == NULL || buffers == NULL || fill == NULL) {
        if (hours != NULL) PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < s->hours_used; i++) {
        buffers[i] = PyBytes_FromStringAndSize(NULL, 2 * s->hours[i].count);
        if (buffers[i] == NULL) goto fail;
    }
    for (Py_ssize_t i = 0; i < s->arrivals_used; i++) {
        uint32_t slot = s->arrivals[i] >> 12, mmss = s->arrivals[i] & 0xFFF;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(buffers[slot]) + 2 * fill[slot]++;
        out[0] = (unsigned char)(mmss & 0xFF);
        out[1] = (unsigned char)(mmss >> 8);
    }
    for (Py_ssize_t i = 0; i < s->hours_used; i++) {
        PyObject *key = PyLong_FromLong(s->hours[i].key);
        int rc = key == NULL ? -1 : PyDict_SetItem(hours, key, buffers[i]);
        Py_XDECREF(key);
        if (rc < 0) goto fail;
    }
    goto done;
fail:
    Py_CLEAR(hours);
done:
    if (buffers != NULL)
        for (Py_ssize_t i = 0; i < s->hours_used; i++) Py_XDECREF(buffers[i]);
    PyMem_Free(buffers);
    PyMem_Free(fill);
    return hours;
}

/* The str of a reason, made on first use. */
static PyObject *reason_text(scan_state *s, uint32_t slot) {
    reason_entry *e = &s->reasons[slot];
    if (e->text == NULL) e->text = PyUnicode_Substring(s->text, e->start, e->start + e->len);
    return e->text;
}

/* A tuple of the reasons items[0:n]. */
static PyObject *reason_tuple(scan_state *s, const uint32_t *items, Py_ssize_t n) {
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = reason_text(s, items[i]);
        if (text == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(text));
    }
    return tuple;
}

static PyObject *build_single(scan_state *s) {
    PyObject *single = PyDict_New();
    if (single == NULL) return NULL;
    for (Py_ssize_t i = 0; i < s->reasons_used; i++) {
        if (!s->reasons[i].single) continue;
        PyObject *text = reason_text(s, (uint32_t)i);
        PyObject *count = text == NULL ? NULL : PyLong_FromSsize_t(s->reasons[i].single);
        int rc = count == NULL ? -1 : PyDict_SetItem(single, text, count);
        Py_XDECREF(count);
        if (rc < 0) {
            Py_DECREF(single);
            return NULL;
        }
    }
    return single;
}

static PyObject *build_multi(scan_state *s) {
    PyObject *multi = PyList_New(s->multi_ends_used);
    if (multi == NULL) return NULL;
    Py_ssize_t from = 0;
    for (Py_ssize_t i = 0; i < s->multi_ends_used; i++) {
        PyObject *tuple = reason_tuple(s, s->multi + from, s->multi_ends[i] - from);
        if (tuple == NULL) {
            Py_DECREF(multi);
            return NULL;
        }
        PyList_SET_ITEM(multi, i, tuple);
        from = s->multi_ends[i];
    }
    return multi;
}

static PyObject *build_result(scan_state *s) {
    PyObject *result = PyTuple_New(8);
    if (result == NULL) return NULL;
    /* One at a time: nothing runs with an exception set. */
    for (int i = 0; i < 8; i++) {
        PyObject *item;
        switch (i) {
        case 0: item = PyLong_FromSsize_t(s->messages); break;
        case 1: item = PyLong_FromSsize_t(s->held); break;
        case 2: item = PyLong_FromSsize_t(s->bounces); break;
        case 3: item = PyLong_FromLongLong((long long)s->bytes); break;
        case 4: item = build_hours(s); break;
        case 5: item = build_single(s); break;
        case 6: item = build_multi(s); break;
        default: item = reason_tuple(s, s->current, s->current_used); break;
        }
        if (item == NULL) {
            Py_DECREF(result); /* its slots not yet set are NULL */
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, item);
    }
    return result;
}

static void free_state(scan_state *s) {
    PyMem_Free(s->hours);
    PyMem_Free(s->hour_index);
    PyMem_Free(s->arrivals);
    for (Py_ssize_t i = 0; i < s->reasons_used; i++) Py_XDECREF(s->reasons[i].text);
    PyMem_Free(s->reasons);
    PyMem_Free(s->reason_index);
    PyMem_Free(s->current);
    PyMem_Free(s->multi);
    PyMem_Free(s->multi_ends);
}

static PyObject *scan(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *text;
    Py_ssize_t start, end;
    if (parse_region(args, &text, &start, &end) < 0) return NULL;
    /* The tables index reasons with 32 bits; the caller's regions are a few MiB. */
    if ((size_t)(end - start) >= (size_t)UINT32_MAX) Py_RETURN_NONE;
    scan_state s;
    memset(&s, 0, sizeof s);
    s.text = text;
    s.data = PyUnicode_DATA(text);
    s.kind = PyUnicode_KIND(text);
    int rc;
    switch (s.kind) {
    case PyUnicode_1BYTE_KIND: rc = scan_ucs1(&s, start, end); break;
    case PyUnicode_2BYTE_KIND: rc = scan_ucs2(&s, start, end); break;
    default: rc = scan_ucs4(&s, start, end); break;
    }
    PyObject *result = rc < 0 ? NULL : rc == 0 ? Py_NewRef(Py_None) : build_result(&s);
    free_state(&s);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(text, start, end) -> (messages, held, bounces, bytes, hours, single, multi, last) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "brainycp._pfscan",
    "The C reading of canonical Postfix mailq text (see brainycp.queue).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pfscan(void) { return PyModule_Create(&module); }
