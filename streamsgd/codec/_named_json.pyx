# cython: language_level=3
"""Named-feature records parsed straight into CSR rows, in compiled code.

A record value ``{"features": {"k": v, ...}, "y": <label>, "weight": <w>}`` (members in any
order, ``weight`` optional) is read from its bytes: each feature's name — the key for a
number, ``key=value`` for a string — is decoded (JSON escapes, UTF-8) into a scratch buffer
and hashed there with MurmurHash3 x86-32, seed 0 (:mod:`streamsgd.core.hashing`), with no
Python object per feature.

The parser *accepts* only what it can prove the Python decoder
(:meth:`streamsgd.codec.Decoder.decode`) accepts with the same result, and *declines*
everything else — anything the decoder would reject, and anything unusual (another member,
a duplicate key, a lone surrogate, an integer literal of more than 18 digits, a number that
does not fit a double, invalid UTF-8, a value over the size limit, ...) — so that the caller
hands those records to the Python decoder, which gives their rows or their reasons. A
declined record is therefore never a rejection here: this module has no reasons.

Rows equal the Python decoder's bit for bit: the columns of a row sorted and distinct, the
values of a bucket hit several times summed in record order starting from 0.0 (as
``dict.get(bucket, 0.0) + value`` does), numbers converted with correct rounding (integers
exactly through int64, decimals by the exact fast path when it applies, else by Python's own
``PyOS_string_to_double``, which ``float()`` uses).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memchr, memcmp, memcpy, memset

import numpy as np

cimport numpy as cnp

from streamsgd.core._murmurhash cimport murmurhash3_x86_32

cnp.import_array()


cdef extern from "Python.h":
    # With no overflow exception, an overflow gives ±inf; a token it cannot read sets an
    # error (cleared here: the grammar was checked first, so that does not happen).
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception)
    void PyErr_Clear()


# Exact powers of ten (every one up to 1e22 is a double).
cdef double[23] _POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                          1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]

# Outcomes of the helpers: OK, or DECLINE (give the record to the Python decoder).
cdef enum:
    OK = 0
    DECLINE = 1


cdef struct Cursor:
    const unsigned char* p      # the record's bytes, NUL-terminated (a bytes object's are)
    Py_ssize_t n                # their number
    Py_ssize_t i                # the next byte to read
    unsigned char* scratch      # decoded names (a record's length + 2 bytes is enough)


cdef struct Growing:
    int64_t* indices
    double* values
    Py_ssize_t size
    Py_ssize_t capacity


cdef inline void _skip_ws(Cursor* c) noexcept nogil:
    cdef unsigned char ch
    while c.i < c.n:
        ch = c.p[c.i]
        if ch == 32 or ch == 10 or ch == 13 or ch == 9:  # the four JSON whitespace bytes
            c.i += 1
        else:
            return


cdef inline int _hex(unsigned char ch) noexcept nogil:
    if 48 <= ch <= 57:
        return ch - 48
    if 97 <= ch <= 102:
        return ch - 87
    if 65 <= ch <= 70:
        return ch - 55
    return -1


cdef inline int _u_escape(Cursor* c, uint32_t* unit) noexcept nogil:
    """Four hex digits at c.i (after ``\\u``) into ``unit``."""
    cdef int k, h
    cdef uint32_t u = 0
    if c.i + 4 > c.n:
        return DECLINE
    for k in range(4):
        h = _hex(c.p[c.i + k])
        if h < 0:
            return DECLINE
        u = (u << 4) | <uint32_t>h
    c.i += 4
    unit[0] = u
    return OK


cdef inline Py_ssize_t _put_utf8(unsigned char* out, uint32_t cp) noexcept nogil:
    if cp < 0x80:
        out[0] = <unsigned char>cp
        return 1
    if cp < 0x800:
        out[0] = <unsigned char>(0xC0 | (cp >> 6))
        out[1] = <unsigned char>(0x80 | (cp & 0x3F))
        return 2
    if cp < 0x10000:
        out[0] = <unsigned char>(0xE0 | (cp >> 12))
        out[1] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
        out[2] = <unsigned char>(0x80 | (cp & 0x3F))
        return 3
    out[0] = <unsigned char>(0xF0 | (cp >> 18))
    out[1] = <unsigned char>(0x80 | ((cp >> 12) & 0x3F))
    out[2] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
    out[3] = <unsigned char>(0x80 | (cp & 0x3F))
    return 4


cdef inline Py_ssize_t _utf8_length(const unsigned char* p, Py_ssize_t avail) noexcept nogil:
    """Length of the well-formed UTF-8 sequence at p (lead byte ≥ 0x80), 0 if ill-formed —
    the rules of Python's strict UTF-8 decoder: no overlong forms, no surrogates, nothing
    above U+10FFFF."""
    cdef unsigned char b0 = p[0]
    cdef unsigned char lo = 0x80
    cdef unsigned char hi = 0xBF
    cdef Py_ssize_t length, k
    if 0xC2 <= b0 <= 0xDF:
        length = 2
    elif 0xE0 <= b0 <= 0xEF:
        length = 3
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
    elif 0xF0 <= b0 <= 0xF4:
        length = 4
        if b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
    else:
        return 0
    if avail < length:
        return 0
    if not (lo <= p[1] <= hi):
        return 0
    for k in range(2, length):
        if not (0x80 <= p[k] <= 0xBF):
            return 0
    return length


cdef int _string(Cursor* c, Py_ssize_t* out_start, Py_ssize_t* out_len) noexcept nogil:
    """The JSON string at c.i (its opening quote already read), decoded to UTF-8 into
    ``c.scratch`` from ``out_start[0]``; its decoded length in ``out_len``."""
    cdef unsigned char* out = c.scratch + out_start[0]
    cdef Py_ssize_t w = 0, m
    cdef unsigned char ch
    cdef uint32_t unit, low
    cdef const unsigned char* p = c.p
    cdef Py_ssize_t i
    while c.i < c.n:
        # The common bytes, printable ASCII but the quote and the backslash, in a tight loop
        # on locals (it stops at the end too: p[n] is the NUL of the bytes object).
        i = c.i
        ch = p[i]
        while 0x20 <= ch < 0x80 and ch != 34 and ch != 92:
            out[w] = ch
            w += 1
            i += 1
            ch = p[i]
        c.i = i
        if i >= c.n:
            break
        if ch == 34:  # closing quote
            c.i += 1
            out_len[0] = w
            return OK
        if ch == 92:  # backslash
            if c.i + 1 >= c.n:
                return DECLINE
            ch = c.p[c.i + 1]
            c.i += 2
            if ch == 34 or ch == 92 or ch == 47:
                out[w] = ch
            elif ch == 98:
                out[w] = 8
            elif ch == 102:
                out[w] = 12
            elif ch == 110:
                out[w] = 10
            elif ch == 114:
                out[w] = 13
            elif ch == 116:
                out[w] = 9
            elif ch == 117:
                if _u_escape(c, &unit) != OK:
                    return DECLINE
                if 0xD800 <= unit <= 0xDBFF:  # a high surrogate: its low half must follow
                    if c.i + 2 > c.n or c.p[c.i] != 92 or c.p[c.i + 1] != 117:
                        return DECLINE  # a lone surrogate has no UTF-8 form
                    c.i += 2
                    if _u_escape(c, &low) != OK or not (0xDC00 <= low <= 0xDFFF):
                        return DECLINE
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                elif 0xDC00 <= unit <= 0xDFFF:
                    return DECLINE
                w += _put_utf8(out + w, unit)
                continue
            else:
                return DECLINE
            w += 1
            continue
        if ch < 0x20:  # a raw control character: not JSON
            return DECLINE
        if ch < 0x80:
            out[w] = ch
            w += 1
            c.i += 1
            continue
        m = _utf8_length(c.p + c.i, c.n - c.i)
        if m == 0:
            return DECLINE
        memcpy(out + w, c.p + c.i, m)
        w += m
        c.i += m
    return DECLINE  # no closing quote


cdef inline int _number(Cursor* c, double* value, bint* integral) noexcept:
    """The JSON number at c.i (strict grammar) as the double Python makes of it: an integer
    literal as ``float(int(...))``, a decimal as ``float(str)``. DECLINE for what does not
    match the grammar, an integer of more than 18 digits, or a result that is not finite."""
    # Locals, not the cursor's fields: the compiler keeps them in registers.
    cdef const unsigned char* p = c.p
    cdef Py_ssize_t i = c.i, n = c.n
    cdef Py_ssize_t start = i
    cdef bint negative = False
    cdef uint64_t mantissa = 0
    cdef int digits = 0          # significant digits held in mantissa
    cdef int dropped = 0         # significant digits that did not fit (slow path)
    cdef int frac_digits = 0
    cdef int exp_value = 0
    cdef bint exp_negative = False
    cdef int exp_digits = 0
    cdef int int_digits = 0
    cdef int decimal_exponent
    cdef unsigned char ch
    cdef double v
    cdef char* end
    integral[0] = True
    if i < n and p[i] == 45:  # '-'
        negative = True
        i += 1
    if i >= n:
        return DECLINE
    ch = p[i]
    if ch == 48:  # '0': no more integer digits may follow
        i += 1
        int_digits = 1
    elif 49 <= ch <= 57:
        while 48 <= p[i] <= 57:  # p[n] is the bytes object's NUL: no bound check
            if digits < 19:
                mantissa = mantissa * 10 + (p[i] - 48)
                digits += 1
            else:
                dropped += 1
            int_digits += 1
            i += 1
    else:
        return DECLINE
    if i < n and p[i] == 46:  # '.'
        integral[0] = False
        i += 1
        if not (48 <= p[i] <= 57):
            return DECLINE
        while 48 <= p[i] <= 57:
            ch = p[i] - 48
            if digits == 0 and ch == 0:
                pass  # a leading zero of the fraction: not significant
            elif digits < 19:
                mantissa = mantissa * 10 + ch
                digits += 1
            else:
                dropped += 1
            frac_digits += 1  # exact whenever nothing was dropped (else the slow path)
            i += 1
    if i < n and (p[i] == 101 or p[i] == 69):  # 'e' or 'E'
        integral[0] = False
        i += 1
        if i < n and (p[i] == 43 or p[i] == 45):
            exp_negative = p[i] == 45
            i += 1
        if not (48 <= p[i] <= 57):
            return DECLINE
        while 48 <= p[i] <= 57:
            if exp_digits < 6:
                exp_value = exp_value * 10 + (p[i] - 48)
            exp_digits += 1
            i += 1
        if exp_digits >= 6:
            return DECLINE  # an absurd exponent: the Python decoder says what it makes of it
    if integral[0]:
        # Python reads an integer literal as int, then float() rounds it correctly; an int64
        # converts to double with the same round-half-even.
        if int_digits > 18:
            return DECLINE
        v = <double>(<int64_t>mantissa)
        value[0] = -v if negative and mantissa != 0 else v  # "-0" is the int 0: +0.0
        c.i = i
        return OK
    decimal_exponent = (-exp_value if exp_negative else exp_value) - frac_digits
    if dropped == 0 and mantissa <= (<uint64_t>1 << 53) and -22 <= decimal_exponent <= 22:
        # Clinger's fast path: mantissa and 10^|e| are exact doubles, so one correctly
        # rounded operation gives the correctly rounded result.
        if decimal_exponent >= 0:
            v = <double>mantissa * _POW10[decimal_exponent]
        else:
            v = <double>mantissa / _POW10[-decimal_exponent]
    else:
        # The token is followed by a byte that ends it (the bytes object is NUL-terminated).
        end = NULL
        v = PyOS_string_to_double(<const char*>(p + start), &end, NULL)
        if end == NULL or <const unsigned char*>end != p + i:
            PyErr_Clear()
            return DECLINE
        value[0] = v
        if not (v - v == 0.0):  # ±inf (overflow): the decoder names the reason
            return DECLINE
        c.i = i
        return OK
    value[0] = -v if negative else v
    c.i = i
    return OK


cdef inline bint _literal(Cursor* c, const char* word, Py_ssize_t length) noexcept nogil:
    cdef Py_ssize_t k
    if c.i + length > c.n:
        return False
    for k in range(length):
        if c.p[c.i + k] != <unsigned char>word[k]:
            return False
    c.i += length
    return True


cdef inline bint _is_word(Cursor* c, Py_ssize_t start, Py_ssize_t length,
                          const char* word, Py_ssize_t word_length) noexcept nogil:
    cdef Py_ssize_t k
    if length != word_length:
        return False
    for k in range(length):
        if c.scratch[start + k] != <unsigned char>word[k]:
            return False
    return True


cdef int _compare_keys(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0]
    cdef uint64_t y = (<const uint64_t*>b)[0]
    return (x > y) - (x < y)


cdef inline void _sort(uint64_t* keys, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef uint64_t key
    if n > 32:
        qsort(keys, n, sizeof(uint64_t), _compare_keys)
        return
    for i in range(1, n):  # insertion sort: the common rows are short
        key = keys[i]
        j = i - 1
        while j >= 0 and keys[j] > key:
            keys[j + 1] = keys[j]
            j -= 1
        keys[j + 1] = key


cdef struct Features:
    uint64_t* keys        # (bucket << 32) | position, per feature
    uint64_t* key_hashes  # hash of the key alone, to find duplicate keys
    double* values        # per feature, in record order
    uint64_t* staged      # the keys in the last row's sorted order, to be sorted
    uint32_t* order       # the positions of the last row emitted, in its sorted order
    Py_ssize_t order_n    # and their number (-1: none)
    Py_ssize_t n
    Py_ssize_t capacity


cdef inline int _resize(void** block, Py_ssize_t n, size_t item) noexcept nogil:
    """``*block`` reallocated to n items of ``item`` bytes (DECLINE, block kept, if not)."""
    cdef void* grown = realloc(block[0], n * item)
    if grown == NULL:
        return DECLINE
    block[0] = grown
    return OK


cdef int _grow_features(Features* f) noexcept nogil:
    cdef Py_ssize_t capacity = 64 if f.capacity == 0 else 2 * f.capacity
    if (_resize(<void**>&f.keys, capacity, sizeof(uint64_t)) != OK
            or _resize(<void**>&f.key_hashes, capacity, sizeof(uint64_t)) != OK
            or _resize(<void**>&f.values, capacity, sizeof(double)) != OK
            or _resize(<void**>&f.staged, capacity, sizeof(uint64_t)) != OK
            or _resize(<void**>&f.order, capacity, sizeof(uint32_t)) != OK):
        return DECLINE
    f.capacity = capacity
    return OK


# Bytes that a key's fast scan copies as they are: printable ASCII but the quote and the
# backslash. Everything else (an escape, UTF-8, a control byte, the end) ends the scan.
cdef unsigned char[256] _PLAIN
for _byte in range(256):
    _PLAIN[_byte] = 0x20 <= _byte < 0x80 and _byte != 34 and _byte != 92


cdef enum:
    CACHE_SLOTS = 1024  # a power of two; records of real streams repeat a few dozen keys
    CACHE_KEY_BYTES = 28  # longer keys are hashed every time


cdef struct CachedKey:
    uint32_t length  # 0: an empty slot (the empty key is never cached)
    uint32_t hash    # MurmurHash3 of the bytes below
    unsigned char[CACHE_KEY_BYTES] key


# The keys seen last, each with its MurmurHash3, so that a key repeated in every record is
# hashed once. One direct-mapped table for the module: only _parse's record loop uses it,
# and that loop holds the GIL and runs no Python code (no nogil section, no call that could
# switch threads), so no two parses use it at once. An entry maps exact bytes to their
# hash, so it can only be right or missing; a miss hashes and replaces the slot.
cdef CachedKey[CACHE_SLOTS] _key_cache


cdef inline uint32_t _cached_hash(const unsigned char* key, Py_ssize_t length,
                                  uint32_t quick) noexcept nogil:
    """MurmurHash3 x86-32 (seed 0) of ``key[:length]``; ``quick`` is a cheap hash of the same
    bytes that picks the slot."""
    cdef CachedKey* slot
    cdef uint32_t h
    cdef Py_ssize_t k
    if length == 0 or length > CACHE_KEY_BYTES:
        return murmurhash3_x86_32(key, length, 0)
    slot = &_key_cache[(quick * <uint32_t>0x9E3779B1U) >> 22]  # the top 10 bits: 1024 slots
    if slot.length == <uint32_t>length:
        k = 0
        while k < length and slot.key[k] == key[k]:
            k += 1
        if k == length:
            return slot.hash
    h = murmurhash3_x86_32(key, length, 0)
    slot.length = <uint32_t>length
    slot.hash = h
    memcpy(slot.key, key, length)
    return h


cdef inline bint _digit(unsigned char ch) noexcept nogil:
    return <unsigned char>(ch - 48) < 10


cdef inline int _short_number(const unsigned char* p, Py_ssize_t* at, double* value) noexcept nogil:
    """The common JSON number at ``p[at[0]]`` — ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` of at most
    18 digits, no exponent — as :func:`_number` makes of it (the same operations, so the
    same bits), ``at[0]`` moved past it. DECLINE (``at[0]`` unchanged) for any other token:
    the caller hands it to :func:`_number`."""
    cdef Py_ssize_t i = at[0], digits_from, n_digits
    cdef bint negative = p[i] == 45
    cdef bint decimal = False
    cdef uint64_t mantissa = 0
    cdef int frac_digits = 0
    cdef double v
    i += negative
    digits_from = i
    if p[i] == 48:  # '0': no more integer digits may follow
        i += 1
    elif _digit(p[i]):
        while _digit(p[i]):  # p[n] ends every token: no bound check
            mantissa = mantissa * 10 + (p[i] - 48)
            i += 1
    else:
        return DECLINE
    if p[i] == 46:  # '.'
        i += 1
        decimal = True
        frac_digits = <int>i
        while _digit(p[i]):
            mantissa = mantissa * 10 + (p[i] - 48)
            i += 1
        frac_digits = <int>i - frac_digits
        if frac_digits == 0:
            return DECLINE
    n_digits = i - digits_from - decimal
    if p[i] == 101 or p[i] == 69 or n_digits > 18:  # an exponent, or long: _number's case
        return DECLINE
    if not decimal:
        v = <double>(<int64_t>mantissa)
        value[0] = -v if negative and mantissa != 0 else v  # "-0" is the int 0: +0.0
    else:
        if mantissa > (<uint64_t>1 << 53):
            return DECLINE
        # Clinger's fast path, as in _number: both operands exact, one rounding.
        v = <double>mantissa / _POW10[frac_digits]
        value[0] = -v if negative else v
    at[0] = i
    return OK


cdef inline bint _is_space(unsigned char ch) noexcept nogil:
    return ch == 32 or ch == 10 or ch == 13 or ch == 9


cdef int _features(Cursor* c, Features* f, uint32_t mask) noexcept:
    """The ``features`` object at c.i (its ``{`` already read) into ``f``.

    The common layout (plain keys, short numbers, single spaces) is read on locals, with
    the general helpers (:func:`_string`, :func:`_number`, :func:`_skip_ws`) for anything
    else. A key of plain bytes (printable ASCII, no escape) is hashed where it lies, through
    the key cache; any other key is decoded into ``c.scratch`` first. ``c.p[c.n]`` is a byte
    that ends every token (a NUL or a newline), so the scans stop at the end without a bound
    check; only whitespace (the newline is some) needs one."""
    cdef const unsigned char* p = c.p
    cdef const unsigned char* key
    cdef Py_ssize_t n = c.n, i, start, key_start = 0, key_len, value_start, value_len
    cdef uint32_t name_hash, key_hash, quick
    cdef double value
    cdef bint integral
    cdef unsigned char ch
    f.n = 0
    _skip_ws(c)
    i = c.i
    if p[i] == 125:  # '}': no features (an all-zero row)
        c.i = i + 1
        return OK
    while True:
        if p[i] != 34:
            return DECLINE
        start = i + 1
        i = start
        quick = 0
        ch = p[i]
        while _PLAIN[ch]:
            quick = quick * 31 + ch
            i += 1
            ch = p[i]
        if ch == 34:  # a plain key, p[start:i]: it stays where it is
            key = p + start
            key_len = i - start
            i += 1
            key_hash = _cached_hash(key, key_len, quick)
        else:  # escapes or UTF-8: decoded into the scratch buffer
            c.i = start
            if _string(c, &key_start, &key_len) != OK:
                return DECLINE
            i = c.i
            key = c.scratch
            key_hash = murmurhash3_x86_32(key, key_len, 0)
        if p[i] != 58:  # not ':' right after the key
            c.i = i
            _skip_ws(c)
            i = c.i
            if p[i] != 58 or i >= n:
                return DECLINE
        i += 1
        if p[i] == 32 and i < n:
            i += 1
        if _is_space(p[i]) and i < n:
            c.i = i
            _skip_ws(c)
            i = c.i
        if i >= n:
            return DECLINE
        ch = p[i]
        if ch == 34:  # a string value v: the indicator "key=v", value 1
            c.i = i + 1
            if key != c.scratch:
                memcpy(c.scratch, key, key_len)
            c.scratch[key_len] = 61  # '='
            value_start = key_len + 1
            if _string(c, &value_start, &value_len) != OK:
                return DECLINE
            i = c.i
            name_hash = murmurhash3_x86_32(c.scratch, key_len + 1 + value_len, 0)
            value = 1.0
        elif ch == 45 or _digit(ch):  # a number v: the feature "key", value v
            if _short_number(p, &i, &value) != OK:
                c.i = i
                if _number(c, &value, &integral) != OK:
                    return DECLINE
                i = c.i
            name_hash = key_hash
        else:
            return DECLINE  # true, false, null, an array or an object: invalid_schema
        if f.n == f.capacity and _grow_features(f) != OK:
            return DECLINE
        f.keys[f.n] = ((<uint64_t>(name_hash & mask)) << 32) | <uint64_t>f.n
        f.key_hashes[f.n] = key_hash
        f.values[f.n] = value
        f.n += 1
        if _is_space(p[i]) and i < n:
            c.i = i
            _skip_ws(c)
            i = c.i
        if i >= n:
            return DECLINE
        ch = p[i]
        i += 1
        if ch == 125:  # '}'
            c.i = i
            return OK
        if ch != 44:  # ','
            return DECLINE
        if p[i] == 32 and i < n:  # the one space after a comma, the common layout
            i += 1
        if _is_space(p[i]) and i < n:
            c.i = i
            _skip_ws(c)
            i = c.i


cdef enum:
    KEY_SLOTS = 1024  # a power of two, over twice the keys a record checks this way
    LAST_KEYS = 512   # KEY_SLOTS // 2


cdef struct KeySet:
    uint32_t[KEY_SLOTS] stamp   # the record that filled the slot (0: none yet)
    uint32_t[KEY_SLOTS] key     # its key hash
    uint32_t current
    uint64_t[LAST_KEYS] last  # the key hashes of the last record found distinct
    Py_ssize_t last_n              # their number


cdef int _distinct_keys(Features* f, KeySet* seen) noexcept nogil:
    """DECLINE when two keys may be equal (equal hashes): a JSON object with a repeated key
    keeps its last value at its first place in Python, which is the decoder's business.
    O(n) with a set whose slots are stamped with the record, so that it is never cleared;
    a record whose key hashes are those of the last record found distinct, in the same
    order (a stream's records mostly repeat their keys), is distinct too."""
    cdef Py_ssize_t k
    cdef uint32_t h, slot
    if f.n < 2:
        return OK
    if f.n == seen.last_n:
        k = 0
        while k < f.n and f.key_hashes[k] == seen.last[k]:
            k += 1
        if k == f.n:
            return OK
    if f.n > KEY_SLOTS // 2:  # a record of many features: sort the hashes instead
        _sort(f.key_hashes, f.n)
        for k in range(1, f.n):
            if f.key_hashes[k] == f.key_hashes[k - 1]:
                return DECLINE
        return OK
    seen.current += 1
    if seen.current == 0:  # after 2^32 records the stamps wrap: start afresh
        memset(seen.stamp, 0, sizeof(seen.stamp))
        seen.current = 1
    for k in range(f.n):
        h = <uint32_t>f.key_hashes[k]
        slot = (h ^ (h >> 16)) & (KEY_SLOTS - 1)
        while seen.stamp[slot] == seen.current:
            if seen.key[slot] == h:
                return DECLINE
            slot = (slot + 1) & (KEY_SLOTS - 1)
        seen.stamp[slot] = seen.current
        seen.key[slot] = h
    memcpy(seen.last, f.key_hashes, f.n * sizeof(uint64_t))
    seen.last_n = f.n
    return OK


cdef int _reserve(Growing* out, Py_ssize_t capacity) noexcept nogil:
    if (_resize(<void**>&out.indices, capacity, sizeof(int64_t)) != OK
            or _resize(<void**>&out.values, capacity, sizeof(double)) != OK):
        return DECLINE
    out.capacity = capacity
    return OK


cdef int _emit_row(Features* f, Growing* out) noexcept nogil:
    """The row's sorted, distinct buckets and their sums (record order within a bucket).

    The keys — (bucket << 32) | position, all distinct — are sorted starting from the order
    of the last row when this row has as many features: records of one stream mostly
    repeat their keys, so that order is nearly sorted already and the insertion sort has
    little to move. The sorted result is the same from any start."""
    cdef Py_ssize_t k
    cdef uint64_t bucket, previous = <uint64_t>(-1)
    cdef uint64_t* keys = f.keys
    cdef double total = 0.0
    if out.size + f.n > out.capacity and _reserve(out, 2 * out.capacity + f.n) != OK:
        return DECLINE
    if f.n == f.order_n:
        keys = f.staged
        for k in range(f.n):
            keys[k] = f.keys[f.order[k]]
    _sort(keys, f.n)  # by bucket, then by position: a stable order within a bucket
    for k in range(f.n):
        f.order[k] = <uint32_t>(keys[k] & <uint64_t>0xFFFFFFFFU)
    f.order_n = f.n
    for k in range(f.n):
        bucket = keys[k] >> 32
        if bucket != previous:
            if k:
                out.values[out.size - 1] = total
            out.indices[out.size] = <int64_t>bucket
            out.size += 1
            previous = bucket
            total = 0.0
        total = total + f.values[keys[k] & <uint64_t>0xFFFFFFFFU]
    if f.n:
        out.values[out.size - 1] = total
    return OK


cdef int _record(Cursor* c, Features* f, KeySet* seen, double max_weight, uint32_t mask,
                 double* label, double* weight, bint* has_weight) noexcept:
    """One record: ``{"features": {...}, "y": ..., "weight": ...}`` and nothing else."""
    cdef bint seen_features = False, seen_label = False, integral
    cdef Py_ssize_t key_start = 0, key_len
    cdef double v
    has_weight[0] = False
    _skip_ws(c)
    if c.i >= c.n or c.p[c.i] != 123:  # '{'
        return DECLINE
    c.i += 1
    _skip_ws(c)
    while True:
        if c.i >= c.n or c.p[c.i] != 34:
            return DECLINE
        c.i += 1
        if _string(c, &key_start, &key_len) != OK:
            return DECLINE
        _skip_ws(c)
        if c.i >= c.n or c.p[c.i] != 58:
            return DECLINE
        c.i += 1
        _skip_ws(c)
        if c.i >= c.n:
            return DECLINE
        if _is_word(c, 0, key_len, b"features", 8):
            if seen_features or c.p[c.i] != 123:
                return DECLINE
            c.i += 1
            seen_features = True
            if _features(c, f, mask) != OK:
                return DECLINE
        elif _is_word(c, 0, key_len, b"y", 1):
            if seen_label:
                return DECLINE
            seen_label = True
            if _literal(c, b"true", 4):
                label[0] = 1.0
            elif _literal(c, b"false", 5):
                label[0] = 0.0
            else:
                if _number(c, &v, &integral) != OK or not integral:
                    return DECLINE
                if v == 1.0:
                    label[0] = 1.0
                elif v == 0.0 or v == -1.0:  # the label −1 reads as 0
                    label[0] = 0.0
                else:
                    return DECLINE
        elif _is_word(c, 0, key_len, b"weight", 6):
            if has_weight[0]:
                return DECLINE
            if _number(c, &v, &integral) != OK or not (0.0 <= v <= max_weight):
                return DECLINE
            has_weight[0] = True
            weight[0] = v
        else:
            return DECLINE  # another member ("x", "X", an id, ...): the decoder's call
        _skip_ws(c)
        if c.i >= c.n:
            return DECLINE
        if c.p[c.i] == 125:
            c.i += 1
            break
        if c.p[c.i] != 44:
            return DECLINE
        c.i += 1
        _skip_ws(c)
    _skip_ws(c)
    if c.i != c.n or not seen_features or not seen_label:
        return DECLINE
    return _distinct_keys(f, seen)


cdef struct Spans:
    const unsigned char** ptrs   # each record's first byte (NULL: declined)
    Py_ssize_t* sizes            # and its length


cdef int _open_spans(Spans* spans, Py_ssize_t n) except -1:
    spans.ptrs = <const unsigned char**>malloc((n + 1) * sizeof(void*))
    spans.sizes = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    if spans.ptrs == NULL or spans.sizes == NULL:
        free(spans.ptrs)
        free(spans.sizes)
        raise MemoryError()
    return 0


cdef tuple _parse_spans(Spans* spans, Py_ssize_t n, int hash_bits,
                        Py_ssize_t max_record_bytes, double max_weight):
    """:func:`_parse` of the n records of ``spans`` (freed here): the one record loop of
    :func:`parse_named` and :func:`parse_named_lines`."""
    cdef Py_ssize_t i, longest = 0
    try:
        for i in range(n):
            if spans.sizes[i] <= max_record_bytes and spans.sizes[i] > longest:
                longest = spans.sizes[i]
        return _parse(spans.ptrs, spans.sizes, n, longest, hash_bits, max_record_bytes,
                      max_weight)
    finally:
        free(spans.ptrs)
        free(spans.sizes)


def parse_named(list values, int hash_bits, Py_ssize_t max_record_bytes, double max_weight):
    """Parse record values of the named form into CSR rows.

    Parameters
    ----------
    values : list of bytes (None or other objects are declined)
    hash_bits : int
        b: buckets are the low b bits of each name's MurmurHash3.
    max_record_bytes : int
        Longer values are declined (the decoder rejects them as too_large).
    max_weight : float
        Weights above it are declined (the decoder rejects them as invalid_weight).

    Returns
    -------
    accepted : ndarray of uint8, shape (n,)
        1 for a record parsed here, 0 for one declined (decode it with the Python decoder).
    indptr : ndarray of int64, shape (n_accepted + 1,)
    indices : ndarray of int64, shape (nnz,)
        Buckets; each row's sorted and distinct.
    data : ndarray of float64, shape (nnz,)
    y : ndarray of float64, shape (n_accepted,)
    weight : ndarray of float64, shape (n_accepted,)
        1.0 where the record gave none.
    has_weight : ndarray of uint8, shape (n_accepted,)
        1 where the record gave a weight.
    """
    cdef Py_ssize_t n = len(values), i
    cdef object value
    cdef Spans spans
    _open_spans(&spans, n)
    for i in range(n):
        value = values[i]
        if PyBytes_CheckExact(value):
            # A bytes object's data end in a NUL, which the scanning loops stop at.
            spans.ptrs[i] = <const unsigned char*>PyBytes_AS_STRING(value)
            spans.sizes[i] = PyBytes_GET_SIZE(value)
        else:  # declined: not bytes (a tombstone, a truncated value)
            spans.ptrs[i], spans.sizes[i] = NULL, 0
    return _parse_spans(&spans, n, hash_bits, max_record_bytes, max_weight)


def parse_named_lines(bytes buffer, cnp.int64_t[::1] starts, cnp.int64_t[::1] ends,
                      int hash_bits, Py_ssize_t max_record_bytes, double max_weight):
    """:func:`parse_named` of the lines ``buffer[starts[k]:ends[k]]`` of one chunk, without a
    bytes object per line. Each line must be followed by its ``\\n`` (``buffer[ends[k]]``),
    which stops the scanning loops as a bytes object's NUL does."""
    cdef Py_ssize_t n = starts.shape[0], k
    cdef Py_ssize_t length = len(buffer)
    cdef const unsigned char* base = <const unsigned char*>PyBytes_AS_STRING(buffer)
    cdef Spans spans
    if ends.shape[0] != n:
        raise ValueError("starts and ends differ in length")
    for k in range(n):
        if not (0 <= starts[k] <= ends[k] < length and base[ends[k]] == 10):
            raise ValueError("every line must lie in the buffer and end with a newline")
    _open_spans(&spans, n)
    for k in range(n):
        spans.ptrs[k] = base + starts[k]
        spans.sizes[k] = ends[k] - starts[k]
    return _parse_spans(&spans, n, hash_bits, max_record_bytes, max_weight)


def line_bounds(bytes chunk):
    """Starts and ends (the positions of their ``\\n``) of the lines ``chunk`` ends, as two
    int64 arrays; the bytes after the last ``\\n`` are not a line yet."""
    cdef const unsigned char* base = <const unsigned char*>PyBytes_AS_STRING(chunk)
    cdef Py_ssize_t length = len(chunk), at = 0, n = 0, count = 0
    cdef const unsigned char* hit
    while True:  # count first, then fill: no growing arrays
        hit = <const unsigned char*>memchr(base + at, 10, length - at)
        if hit == NULL:
            break
        count += 1
        at = hit - base + 1
    cdef cnp.ndarray[cnp.int64_t, ndim=1] starts = np.empty(count, dtype=np.int64)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] ends = np.empty(count, dtype=np.int64)
    at = 0
    for n in range(count):
        hit = <const unsigned char*>memchr(base + at, 10, length - at)
        starts[n] = at
        ends[n] = hit - base
        at = ends[n] + 1
    return starts, ends


cdef tuple _parse(const unsigned char** ptrs, Py_ssize_t* sizes, Py_ssize_t n,
                  Py_ssize_t longest, int hash_bits, Py_ssize_t max_record_bytes,
                  double max_weight):
    """The records ``ptrs[i][:sizes[i]]`` (NULL: declined); see :func:`parse_named`."""
    cdef Py_ssize_t i, n_accepted = 0, size
    cdef uint32_t mask = <uint32_t>((<uint64_t>1 << hash_bits) - 1)
    cdef Cursor c
    cdef Features f
    cdef Growing out
    cdef KeySet* seen
    cdef double label = 0.0, weight = 1.0
    cdef bint has_weight = False
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] accepted = np.zeros(n, dtype=np.uint8)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] indptr = np.zeros(n + 1, dtype=np.int64)
    cdef cnp.ndarray[cnp.float64_t, ndim=1] y = np.empty(n, dtype=np.float64)
    cdef cnp.ndarray[cnp.float64_t, ndim=1] weights = np.empty(n, dtype=np.float64)
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] weighted = np.zeros(n, dtype=np.uint8)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] indices
    cdef cnp.ndarray[cnp.float64_t, ndim=1] data
    if not 0 <= hash_bits <= 32:
        raise ValueError("hash_bits must be in [0, 32]")
    f.keys = NULL
    f.key_hashes = NULL
    f.values = NULL
    f.staged = NULL
    f.order = NULL
    f.order_n = -1
    f.n = 0
    f.capacity = 0
    out.indices = NULL
    out.values = NULL
    out.size = 0
    out.capacity = 0
    c.scratch = <unsigned char*>malloc(longest + 2)
    seen = <KeySet*>calloc(1, sizeof(KeySet))
    if c.scratch == NULL or seen == NULL:
        free(c.scratch)
        free(seen)
        raise MemoryError()
    try:
        for i in range(n):
            size = sizes[i]
            if ptrs[i] == NULL or size == 0 or size > max_record_bytes:
                continue
            c.p = ptrs[i]
            c.n = size
            c.i = 0
            if _record(&c, &f, seen, max_weight, mask, &label, &weight, &has_weight) != OK:
                continue
            if out.capacity == 0 and _reserve(&out, min((f.n + 1) * (n - i), 1 << 20)) != OK:
                raise MemoryError()  # room for the rest, if they are like the first
            if _emit_row(&f, &out) != OK:
                raise MemoryError()
            accepted[i] = 1
            y[n_accepted] = label
            weights[n_accepted] = weight if has_weight else 1.0
            weighted[n_accepted] = has_weight
            n_accepted += 1
            indptr[n_accepted] = out.size
        indices = np.empty(out.size, dtype=np.int64)
        data = np.empty(out.size, dtype=np.float64)
        if out.size:
            memcpy(&indices[0], out.indices, out.size * sizeof(int64_t))
            memcpy(&data[0], out.values, out.size * sizeof(double))
    finally:
        free(c.scratch)
        free(seen)
        free(f.keys)
        free(f.key_hashes)
        free(f.values)
        free(f.staged)
        free(f.order)
        free(out.indices)
        free(out.values)
    return (
        accepted,
        indptr[: n_accepted + 1],
        indices,
        data,
        y[:n_accepted],
        weights[:n_accepted],
        weighted[:n_accepted],
    )
