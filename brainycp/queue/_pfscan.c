/* The compiled reader of Postfix `mailq` listings: brainycp/queue/postfix.py's grammar, in
 * one pass.
 *
 * scan(text, start, end, senders, domains, records, hour_of, reason_of, now, bounds, seed)
 * reads the lines of text[start:end] as postfix.py's read_postfix does and returns
 *     (messages, held, bounces, unparsed, bytes, buckets, arrival_count, arrival_sum,
 *      arrival_min, reasons, senders, domains, records)
 * - buckets: the age histogram (bounds: the 8 finite arrival bounds, now - 7d ... now - 5m,
 *   ascending), arrival_count/arrival_sum: the arrivals not after now and their sum,
 *   arrival_min: the earliest arrival or None; reasons: messages per deferral class;
 * - senders: {sender key: messages} without null senders (the caller adds them as "<>"),
 *   or None; domains: {domain key: messages, once per message}, or None;
 * - records: [(id, arrival, size, raw sender, (pending recipients...), held)], or None.
 * hour_of(key) gives the epoch of an arrival hour (key: tokens.hour_key) or None for a date
 * that does not exist; reason_of(text) the class index of a reason (-1: none). Both are
 * called once per distinct hour and reason text. seed keys the hashes.
 * It only reads the text, never past end, and frees what it allocates before it returns.
 */
#include "_scan.h"

#define BUCKETS 9
#define CLASSES 7
#define MAX_MESSAGE_BYTES ((int64_t)1 << 40)
#define REASON_TEXTS_KEPT 65536 /* beyond, a hostile listing's reasons are classified uncached */

static const char *const WEEKDAYS[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

typedef struct {
    Py_ssize_t id_start, id_end, size_start, size_end;
    Py_ssize_t sender_start, sender_end; /* sender_start -1: none shown */
    int held, weekday, month, day, hh, mm, ss;
} header_t;

INLINE int name_at(const text_t *t, Py_ssize_t p, Py_ssize_t end, const char *const *names,
                   int count) {
    for (int i = 0; i < count; i++)
        if (has_ascii(t, p, end, names[i])) return i;
    return -1;
}

INLINE int two_digits(const text_t *t, Py_ssize_t p, Py_ssize_t end) {
    if (p + 2 > end || !is_digit(at(t, p)) || !is_digit(at(t, p + 1))) return -1;
    return (int)(at(t, p) - '0') * 10 + (int)(at(t, p + 1) - '0');
}

INLINE Py_ssize_t skip_spaces(const text_t *t, Py_ssize_t p, Py_ssize_t end) {
    while (p < end && at(t, p) == ' ') p++;
    return p;
}

/* The sender part after the time: nothing but spaces (no sender), or spaces, a sender that
 * starts and ends with a non-whitespace character, and only spaces after it. */
INLINE int sender_reads(const text_t *t, Py_ssize_t p, Py_ssize_t end, header_t *h) {
    h->sender_start = -1;
    Py_ssize_t q = skip_spaces(t, p, end);
    if (q == end) return 1;
    if (q == p || is_space(at(t, q))) return 0;
    Py_ssize_t e = end;
    while (e > q && is_space(at(t, e - 1))) e--;
    if (skip_spaces(t, e, end) != end) return 0;
    h->sender_start = q;
    h->sender_end = e;
    return 1;
}

/* Read the line [pos, end) as postfix.HEADER would (fullmatch); 1 when it is a header. */
INLINE int header_at(const text_t *t, Py_ssize_t pos, Py_ssize_t end, header_t *h) {
    Py_ssize_t p = pos;
    while (p < end && is_alnum(at(t, p))) p++;
    if (p - pos < 5 || p - pos > 32) return 0;
    h->id_start = pos;
    h->id_end = p;
    h->held = 0;
    for (; p < end && (at(t, p) == '*' || at(t, p) == '!' || at(t, p) == '#'); p++)
        h->held |= at(t, p) == '!';
    if (p >= end || at(t, p) != ' ') return 0;
    h->size_start = p = skip_spaces(t, p, end);
    while (p < end && is_digit(at(t, p))) p++;
    if (p == h->size_start || p >= end || at(t, p) != ' ') return 0;
    h->size_end = p;
    p = skip_spaces(t, p, end);
    if ((h->weekday = name_at(t, p, end, WEEKDAYS, 7)) < 0 || p + 3 >= end || at(t, p + 3) != ' ')
        return 0;
    p += 4;
    if ((h->month = name_at(t, p, end, MONTHS, 12)) < 0 || p + 3 >= end || at(t, p + 3) != ' ')
        return 0;
    p = skip_spaces(t, p + 3, end);
    Py_ssize_t day = p;
    while (p < end && is_digit(at(t, p)) && p - day < 3) p++;
    if (p == day || p - day > 2 || p >= end || at(t, p) != ' ') return 0;
    h->day = (int)(at(t, day) - '0');
    if (p - day == 2) h->day = h->day * 10 + (int)(at(t, day + 1) - '0');
    p++;
    if ((h->hh = two_digits(t, p, end)) < 0 || p + 2 >= end || at(t, p + 2) != ':'
        || (h->mm = two_digits(t, p + 3, end)) < 0 || p + 5 >= end || at(t, p + 5) != ':'
        || (h->ss = two_digits(t, p + 6, end)) < 0)
        return 0;
    return sender_reads(t, p + 8, end, h);
}

/* Bytes of a size column, or -1 when it is over MAX_MESSAGE_BYTES. */
INLINE int64_t size_of(const text_t *t, const header_t *h) {
    Py_ssize_t p = h->size_start;
    while (p < h->size_end - 1 && at(t, p) == '0') p++;
    if (h->size_end - p > 13) return -1;
    int64_t value = 0;
    for (; p < h->size_end; p++) value = value * 10 + (int64_t)(at(t, p) - '0');
    return value > MAX_MESSAGE_BYTES ? -1 : value;
}

INLINE int is_title(const text_t *t, Py_ssize_t p, Py_ssize_t end) {
    Py_ssize_t q = p;
    while (q < end && at(t, q) == '-') q++;
    if (q == p || !has_ascii(t, q, end, "Queue ID")) return 0;
    p = q += 8;
    while (q < end && at(t, q) == '-') q++;
    return q > p && q < end && at(t, q) == ' ';
}

INLINE int is_footer(const text_t *t, Py_ssize_t p, Py_ssize_t end) {
    if (!has_ascii(t, p, end, "-- ")) return 0;
    Py_ssize_t q = p += 3;
    while (q < end && is_digit(at(t, q))) q++;
    if (q == p || !has_ascii(t, q, end, " Kbytes in ")) return 0;
    p = q += 11;
    while (q < end && is_digit(at(t, q))) q++;
    if (q == p || !has_ascii(t, q, end, " Request")) return 0;
    q += 8;
    if (q < end && at(t, q) == 's') q++;
    if (q >= end || at(t, q) != '.') return 0;
    for (q++; q < end; q++)
        if (!is_space(at(t, q))) return 0;
    return 1;
}

typedef struct {
    Py_ssize_t start, end;
    double now, bounds[BUCKETS - 1];
    table_t hours, reasons;
    people_t people;
    PyObject *hour_of, *reason_of;
    header_t head;
    int64_t arrival, size;
    int mask;
} reader_t;

/* The start of an arrival hour (cached per hour), -1 for a date that does not exist; -2
 * with an exception set. The hour table's keys are the hour keys, written as slot lengths. */
INLINE int64_t hour_start(reader_t *r, const header_t *h) {
    int64_t key = (((int64_t)h->weekday * 12 + h->month) * 100 + h->day) * 24 + h->hh;
    size_t j = (size_t)((uint64_t)key * 0x9E3779B97F4A7C15ULL >> 20) & r->hours.mask;
    while (r->hours.slots[j].start >= 0) {
        if (r->hours.slots[j].len == key) return r->hours.slots[j].value;
        j = (j + 1) & r->hours.mask;
    }
    PyObject *start = PyObject_CallFunction(r->hour_of, "L", (long long)key);
    if (start == NULL) return -2;
    int64_t value = start == Py_None ? -1 : PyLong_AsLongLong(start);
    Py_DECREF(start);
    if (value == -1 && PyErr_Occurred()) return -2;
    if ((r->hours.used + 1) * 2 > r->hours.mask + 1) return value; /* full: uncached */
    r->hours.slots[j].start = 0;
    r->hours.slots[j].len = key;
    r->hours.slots[j].value = value;
    r->hours.used++;
    return value;
}

/* The class of a reason text [s, e) (cached per text), -1 for none; -2: an exception. */
INLINE int reason_class(const text_t *t, reader_t *r, Py_ssize_t s, Py_ssize_t e) {
    slot_t *k = NULL;
    PyObject *text;
    if (r->reasons.used < REASON_TEXTS_KEPT) {
        if ((k = table_find(&r->reasons, t, s, e - s, 0)) == NULL) return -2;
        if (k->stamp >= 0) return (int)k->value;
        text = slot_str(t, k, EXACT);
    } else {
        text = PyUnicode_Substring(t->obj, s, e);
    }
    PyObject *index = text ? PyObject_CallOneArg(r->reason_of, text) : NULL;
    Py_XDECREF(text);
    if (index == NULL) return -2;
    long value = PyLong_AsLong(index);
    Py_DECREF(index);
    if (value == -1 && PyErr_Occurred()) return -2;
    if (value < -1 || value >= CLASSES) {
        PyErr_SetString(PyExc_ValueError, "reason_of gave no class index");
        return -2;
    }
    if (k != NULL) {
        k->value = value;
        k->stamp = 0;
    }
    return (int)value;
}

/* The record of the message just read: (id, arrival, size, sender, recipients, held). */
static int add_record(const text_t *t, reader_t *r) {
    const header_t *h = &r->head;
    PyObject *sender = h->sender_start < 0
        ? PyUnicode_FromString("")
        : PyUnicode_Substring(t->obj, h->sender_start, h->sender_end);
    PyObject *record = Py_BuildValue(
        "(NLLNNO)", PyUnicode_Substring(t->obj, h->id_start, h->id_end),
        (long long)r->arrival, (long long)r->size, sender, spans_tuple(t, &r->people.recipients),
        h->held ? Py_True : Py_False);
    return people_add_record(&r->people, record);
}

/* The message read is over: count its reason classes, keep its record. */
static int end_message(const text_t *t, reader_t *r, int64_t *classes) {
    for (int i = 0; i < CLASSES; i++) classes[i] += r->mask >> i & 1;
    r->mask = 0;
    if (r->people.want_records && add_record(t, r) < 0) return -1;
    r->people.recipients.count = 0;
    return 0;
}

INLINE int is_null_sender(const text_t *t, const header_t *h) {
    Py_ssize_t s = h->sender_start, e = h->sender_end;
    return s < 0 || (e - s == 2 && has_ascii(t, s, e, "<>"))
        || (e - s == 13 && has_ascii(t, s, e, "MAILER-DAEMON"));
}

static void reader_free(reader_t *r) {
    table_free(&r->hours);
    table_free(&r->reasons);
    people_free(&r->people);
}

static PyObject *list_of(const int64_t *values, int count) {
    PyObject *out = PyList_New(count);
    for (int i = 0; out != NULL && i < count; i++) {
        PyObject *item = PyLong_FromLongLong(values[i]);
        if (item == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* The reading itself, inlined once per string kind. */
INLINE PyObject *read_text(const text_t *t, reader_t *r) {
    people_t *p = &r->people;
    int seen = 0, in_message = 0;
    int64_t messages = 0, held = 0, bounces = 0, unparsed = 0, arrival_count = 0;
    int64_t arrival_min = INT64_MAX, buckets[BUCKETS] = {0}, classes[CLASSES] = {0};
    sum_t bytes = {0, NULL}, arrival_sum = {0, NULL};
    for (Py_ssize_t pos = r->start; pos < r->end;) {
        Py_ssize_t line = pos, le = next_newline(t, pos, r->end);
        pos = le + 1;
        if (le > line && at(t, le - 1) == '\r') le--;
        header_t h;
        Py_UCS4 first = le > line ? at(t, line) : 0;
        int is_header = first != ' ' && first != '\t' && first != '(' && header_at(t, line, le, &h);
        if (is_header && in_message && end_message(t, r, classes) < 0) goto fail;
        if (is_header) {
            in_message = 0;
            seen = 1; /* a junk header's lines go with it */
            int64_t size = size_of(t, &h), hour = -1;
            if (size >= 0 && h.hh <= 23 && h.mm <= 59 && h.ss <= 60)
                hour = hour_start(r, &h);
            if (hour == -2) goto fail;
            if (hour == -1) {
                unparsed++;
                continue;
            }
            int64_t arrival = hour + h.mm * 60 + h.ss;
            int below = 0;
            while (below < BUCKETS - 1 && r->bounds[below] <= (double)arrival) below++;
            buckets[BUCKETS - 1 - below]++;
            if ((double)arrival <= r->now) {
                arrival_count++;
                if (sum_add(&arrival_sum, (uint64_t)arrival) < 0) goto fail;
            }
            if (arrival < arrival_min) arrival_min = arrival;
            if (sum_add(&bytes, (uint64_t)size) < 0) goto fail;
            held += h.held;
            if (is_null_sender(t, &h))
                bounces++;
            else if (people_add_sender(p, t, h.sender_start, h.sender_end, messages) < 0)
                goto fail;
            messages++;
            in_message = 1;
            r->head = h;
            r->arrival = arrival;
            r->size = size;
            continue;
        }
        Py_ssize_t s = line, e = le;
        strip(t, &s, &e);
        if (s == e) continue;
        if ((first == ' ' || first == '\t' || first == '(') && seen) {
            if (in_message && at(t, s) == '(' && at(t, e - 1) == ')') {
                int index = reason_class(t, r, s + 1, e - 1);
                if (index == -2) goto fail;
                if (index >= 0) r->mask |= 1 << index;
                continue;
            }
            if (in_message && first != '(') {
                if (people_add_recipient(p, t, s, e, messages - 1) < 0) goto fail;
                continue;
            }
            unparsed += first == '(';
            continue;
        }
        if (first == ' ' || first == '\t'
            || !(is_title(t, line, le) || is_footer(t, line, le)
                 || (e - s == 19 && has_ascii(t, s, e, "Mail queue is empty"))))
            unparsed++;
    }
    if (in_message && end_message(t, r, classes) < 0) goto fail;
    PyObject *minimum = arrival_min == INT64_MAX ? (Py_INCREF(Py_None), Py_None)
                                                 : PyLong_FromLongLong(arrival_min);
    return Py_BuildValue(
        "(LLLLNNLNNNNNO)", (long long)messages, (long long)held, (long long)bounces,
        (long long)unparsed, sum_take(&bytes), list_of(buckets, BUCKETS),
        (long long)arrival_count, sum_take(&arrival_sum), minimum, list_of(classes, CLASSES),
        table_counts(t, &p->senders), table_counts(t, &p->domains),
        p->records ? p->records : Py_None);
fail:
    Py_XDECREF(bytes.high);
    Py_XDECREF(arrival_sum.high);
    return NULL;
}

DEFINE_READ_BY_KIND(reader_t, read_text)

static PyObject *scan(PyObject *self, PyObject *args) {
    reader_t r = {0};
    PyObject *text, *bounds, *out = NULL;
    unsigned long long seed;
    people_t *p = &r.people;
    if (!PyArg_ParseTuple(args, "UnnpppOOdO!K:scan", &text, &r.start, &r.end, &p->want_senders,
                          &p->want_domains, &p->want_records, &r.hour_of, &r.reason_of, &r.now,
                          &PyTuple_Type, &bounds, &seed)
        || check_region(text, r.start, r.end) < 0)
        return NULL;
    if (PyTuple_GET_SIZE(bounds) != BUCKETS - 1) {
        PyErr_SetString(PyExc_ValueError, "scan: bounds must hold 8 arrival bounds");
        return NULL;
    }
    for (int i = 0; i < BUCKETS - 1; i++)
        if ((r.bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i))) == -1.0
            && PyErr_Occurred())
            return NULL;
    if (table_init(&r.hours, EXACT, seed, 12) == 0 && table_init(&r.reasons, EXACT, seed, 8) == 0
        && people_init(p, seed) == 0)
        out = read_by_kind(text, &r);
    reader_free(&r);
    return out;
}

SCAN_MODULE(_pfscan, "Read a Postfix mailq listing in one pass (see the module's file).",
            "The compiled reader of Postfix mailq listings.")
