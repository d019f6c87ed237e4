/* The compiled reader of `exim -bp` listings: brainycp/queue/exim.py's grammar, in one pass.
 *
 * scan(text, start, end, senders, domains, records, size_of, seed) reads the lines of
 * text[start:end] as exim.py's read_exim does and returns
 *     (messages, frozen, bounces, unparsed, bytes, ages, senders, domains, records)
 * - ages: {age token: messages} ("5m", "3h"), converted by the caller;
 * - senders: {sender key: messages} without bounces (the caller adds them as "<>"), or None;
 * - domains: {domain key: messages, a message counted once per domain}, or None;
 * - records: [(id, age token, size, raw sender or None, (pending recipients...), frozen)],
 *   or None.
 * size_of(token) gives the bytes of a size column, or None when it is no size (or over
 * 1 TiB: the header is junk); it is called once per distinct column. seed keys the hashes.
 * It only reads the text, never past end, and frees what it allocates before it returns.
 */
#include "_scan.h"

typedef struct {
    Py_ssize_t age_start, age_end;
    Py_ssize_t size_start, size_end; /* size_start -1: a blank size column */
    Py_ssize_t id_start, id_end;
    Py_ssize_t sender_start, sender_end; /* sender_start -1: no sender shown */
    int frozen;
} header_t;

INLINE int alnum_run(const text_t *t, Py_ssize_t p, Py_ssize_t n, Py_ssize_t end) {
    if (p + n > end) return 0;
    for (Py_ssize_t i = p; i < p + n; i++)
        if (!is_alnum(at(t, i))) return 0;
    return 1;
}

INLINE int is_unit(Py_UCS4 c) { return c == 's' || c == 'm' || c == 'h' || c == 'd'; }

/* The rest of a header after its sender's ">" (login allowed) or after its id:
 * [" (login)"] [" *** frozen ***"] and spaces to the end. */
INLINE int tail_reads(const text_t *t, Py_ssize_t p, Py_ssize_t end, int login, int *frozen) {
    if (login && p + 1 < end && at(t, p) == ' ' && at(t, p + 1) == '(') {
        Py_ssize_t k = p + 2;
        while (k < end && at(t, k) != '(' && at(t, k) != ')') k++;
        if (k >= end || at(t, k) != ')') return 0;
        p = k + 1;
    }
    *frozen = has_ascii(t, p, end, " *** frozen ***");
    if (*frozen) p += 15;
    while (p < end && at(t, p) == ' ') p++;
    return p == end;
}

/* The id at p (6-6-2 or 6-11-4): its length, or 0. */
INLINE Py_ssize_t id_length(const text_t *t, Py_ssize_t p, Py_ssize_t end) {
    if (!alnum_run(t, p, 6, end) || p + 6 >= end || at(t, p + 6) != '-') return 0;
    if (alnum_run(t, p + 7, 6, end) && p + 13 < end && at(t, p + 13) == '-'
        && alnum_run(t, p + 14, 2, end))
        return 16;
    if (alnum_run(t, p + 7, 11, end) && p + 18 < end && at(t, p + 18) == '-'
        && alnum_run(t, p + 19, 4, end))
        return 23;
    return 0;
}

/* Read the line [pos, end) as exim.HEADER would (fullmatch); 1 when it is a header. The
 * sender runs to the last ">" after which the rest of the line still reads, as the
 * expression's greedy ".*" finds it. */
INLINE int header_at(const text_t *t, Py_ssize_t pos, Py_ssize_t end, header_t *h) {
    Py_ssize_t p = pos;
    while (p < end && p - pos < 4 && at(t, p) == ' ') p++;
    if (p - pos > 3) return 0;
    h->age_start = p;
    while (p < end && is_digit(at(t, p))) p++;
    if (p == h->age_start || p >= end || !is_unit(at(t, p))) return 0;
    h->age_end = ++p;
    if (p >= end || at(t, p) != ' ') return 0;
    while (p < end && at(t, p) == ' ') p++;
    h->size_start = -1;
    Py_ssize_t q = p;
    while (q < end && is_digit(at(t, q))) q++;
    if (q > p) {
        if (q + 1 < end && at(t, q) == '.' && is_digit(at(t, q + 1)))
            for (q++; q < end && is_digit(at(t, q));) q++;
        if (q < end && (at(t, q) == 'K' || at(t, q) == 'M' || at(t, q) == 'G')) q++;
        if (q < end && at(t, q) == ' ') {
            h->size_start = p;
            h->size_end = q;
            for (p = q; p < end && at(t, p) == ' ';) p++;
        }
    }
    Py_ssize_t length = id_length(t, p, end);
    if (length == 0) return 0;
    h->id_start = p;
    h->id_end = q = p + length;
    h->sender_start = -1;
    if (q + 1 < end && at(t, q) == ' ' && at(t, q + 1) == '<') {
        for (Py_ssize_t r = end - 1; r >= q + 2; r--) {
            if (at(t, r) == '>' && tail_reads(t, r + 1, end, 1, &h->frozen)) {
                h->sender_start = q + 2;
                h->sender_end = r;
                return 1;
            }
        }
    }
    return tail_reads(t, q, end, 0, &h->frozen);
}

/* An indented line that starts like a header (" 5m ") without being one: junk. */
INLINE int headerish(const text_t *t, Py_ssize_t p, Py_ssize_t end) {
    Py_ssize_t q = p;
    while (q < end && q - p < 4 && at(t, q) == ' ') q++;
    if (q == p || q - p > 3) return 0;
    Py_ssize_t digits = q;
    while (q < end && is_digit(at(t, q))) q++;
    return q > digits && q + 1 < end && is_unit(at(t, q)) && at(t, q + 1) == ' ';
}

/* A stripped indented line that is no pending recipient: delivered ("D ", "+D ") or a note. */
INLINE int not_pending(const text_t *t, Py_ssize_t s, Py_ssize_t e) {
    return has_ascii(t, s, e, "D ") || has_ascii(t, s, e, "+D ") || has_ascii(t, s, e, "***");
}

/* Bytes of a size column (cached per distinct column); -1: junk; -2: an exception is set. */
INLINE int64_t size_bytes(table_t *sizes, const text_t *t, const header_t *h, PyObject *size_of) {
    slot_t *k = table_find(sizes, t, h->size_start, h->size_end - h->size_start, 0);
    if (k == NULL) return -2;
    if (k->stamp < 0) {
        PyObject *token = slot_str(t, k, EXACT);
        PyObject *value = token ? PyObject_CallOneArg(size_of, token) : NULL;
        Py_XDECREF(token);
        if (value == NULL) return -2;
        k->value = value == Py_None ? -1 : PyLong_AsLongLong(value);
        Py_DECREF(value);
        if (k->value == -1 && PyErr_Occurred()) return -2;
        k->stamp = 0;
    }
    return k->value;
}

typedef struct {
    Py_ssize_t start, end;
    PyObject *size_of;
    table_t ages, sizes;
    people_t people;
    header_t head;
    int64_t head_size;
} reader_t;

/* The record of the message just read: (id, age token, size, sender, recipients, frozen). */
static int add_record(const text_t *t, reader_t *r) {
    const header_t *h = &r->head;
    slot_t *age = table_find(&r->ages, t, h->age_start, h->age_end - h->age_start, 0);
    if (age == NULL) return -1;
    PyObject *sender = h->sender_start < 0
        ? (Py_INCREF(Py_None), Py_None)
        : PyUnicode_Substring(t->obj, h->sender_start, h->sender_end);
    PyObject *record = Py_BuildValue(
        "(NNLNNO)", PyUnicode_Substring(t->obj, h->id_start, h->id_end),
        slot_str(t, age, EXACT), (long long)r->head_size, sender,
        spans_tuple(t, &r->people.recipients), h->frozen ? Py_True : Py_False);
    return people_add_record(&r->people, record);
}

static void reader_free(reader_t *r) {
    table_free(&r->ages);
    table_free(&r->sizes);
    people_free(&r->people);
}

/* The reading itself, inlined once per string kind. */
INLINE PyObject *read_text(const text_t *t, reader_t *r) {
    people_t *p = &r->people;
    int64_t messages = 0, frozen = 0, bounces = 0, unparsed = 0;
    sum_t bytes = {0, NULL};
    int seen = 0, in_message = 0;
    for (Py_ssize_t pos = r->start; pos < r->end;) {
        Py_ssize_t line = pos, le = next_newline(t, pos, r->end);
        pos = le + 1;
        if (le > line && at(t, le - 1) == '\r') le--;
        if (le == line) continue;
        Py_UCS4 first = at(t, line);
        header_t h;
        if ((first == ' ' || is_digit(first)) && header_at(t, line, le, &h)) {
            if (in_message && p->want_records && add_record(t, r) < 0) goto fail;
            in_message = 0;
            p->recipients.count = 0;
            seen = 1;
            int64_t size = h.size_start < 0 ? 0 : size_bytes(&r->sizes, t, &h, r->size_of);
            if (size == -2) goto fail;
            if (size == -1) {
                unparsed++;
                continue;
            }
            in_message = 1;
            r->head = h;
            r->head_size = size;
            slot_t *age = table_find(&r->ages, t, h.age_start, h.age_end - h.age_start, 0);
            if (age == NULL || sum_add(&bytes, (uint64_t)size) < 0) goto fail;
            age->value++;
            frozen += h.frozen;
            if (h.sender_start >= 0 && h.sender_end == h.sender_start)
                bounces++;
            else if (h.sender_start >= 0
                     && people_add_sender(p, t, h.sender_start, h.sender_end, messages) < 0)
                goto fail;
            messages++;
            continue;
        }
        Py_ssize_t s = line, e = le;
        strip(t, &s, &e);
        if (s == e) continue;
        if ((first == ' ' || first == '\t') && seen && !headerish(t, line, le)) {
            if (in_message && !not_pending(t, s, e)
                && people_add_recipient(p, t, s, e, messages - 1) < 0)
                goto fail;
            continue;
        }
        unparsed++;
    }
    if (in_message && p->want_records && add_record(t, r) < 0) goto fail;
    return Py_BuildValue("(LLLLNNNNO)", (long long)messages, (long long)frozen,
                         (long long)bounces, (long long)unparsed, sum_take(&bytes),
                         table_counts(t, &r->ages), table_counts(t, &p->senders),
                         table_counts(t, &p->domains), p->records ? p->records : Py_None);
fail:
    Py_XDECREF(bytes.high);
    return NULL;
}

DEFINE_READ_BY_KIND(reader_t, read_text)

static PyObject *scan(PyObject *self, PyObject *args) {
    reader_t r = {0};
    PyObject *text, *out = NULL;
    unsigned long long seed;
    people_t *p = &r.people;
    if (!PyArg_ParseTuple(args, "UnnpppOK:scan", &text, &r.start, &r.end, &p->want_senders,
                          &p->want_domains, &p->want_records, &r.size_of, &seed)
        || check_region(text, r.start, r.end) < 0)
        return NULL;
    if (table_init(&r.ages, EXACT, seed, 6) == 0 && table_init(&r.sizes, EXACT, seed, 8) == 0
        && people_init(p, seed) == 0)
        out = read_by_kind(text, &r);
    reader_free(&r);
    return out;
}

SCAN_MODULE(_eximscan, "Read an exim -bp listing in one pass (see the module's file).",
            "The compiled reader of exim -bp listings.")
