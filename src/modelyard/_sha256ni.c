/* SHA-256 on the x86 SHA extensions, with one trick hashlib cannot do: `update2`/`update3`
 * hash the same bytes into two or three states in one pass, sharing the message schedule and
 * interleaving the round chains.
 *
 * Why: packing a model file hashes its content twice, once as the file's own sha256 (the
 * annotation) and once inside the layer's tar stream (the diff_id). Tar entries start on
 * 512-byte boundaries, so both hashes see the file's content as the same 64-byte blocks, only
 * from different chaining values; so does the layer blob when modelyard writes that content as
 * stored deflate blocks kept on the same 64-byte grid (modelyard.oci.compress). SHA256RNDS2 is
 * latency-bound in a single chain: here two chains give 1.6x and three 1.9x the throughput of
 * one.
 *
 * The module is optional: modelyard.oci.sha falls back to hashlib when it is not built or when
 * the CPU lacks the SHA extensions (`available()` says which).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHANI_BUILD 1
#include <cpuid.h>
#include <immintrin.h>
#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))
#else
#define HAVE_SHANI_BUILD 0
#endif

/* Updates at least this long release the GIL. */
#define GIL_MINSIZE 2048

static const uint32_t IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#if HAVE_SHANI_BUILD

/* The SHA instructions keep the state as two registers, (A,B,E,F) and (C,D,G,H), with A in the
 * highest lane. These two helpers convert from and to the plain h[0..7] order. */
SHA_TARGET static inline void
load_state(const uint32_t h[8], __m128i *abef, __m128i *cdgh)
{
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* b a d c */
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* h g f e */
    *abef = _mm_alignr_epi8(abcd, efgh, 8);   /* f e b a */
    *cdgh = _mm_blend_epi16(efgh, abcd, 0xF0); /* h g d c */
}

SHA_TARGET static inline void
store_state(uint32_t h[8], __m128i abef, __m128i cdgh)
{
    __m128i t = _mm_shuffle_epi32(abef, 0x1B); /* a b e f */
    __m128i u = _mm_shuffle_epi32(cdgh, 0xB1); /* g h c d */
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, u, 0xF0)); /* a b c d */
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(u, t, 8));    /* e f g h */
}

#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)

/* Message words W[4i..4i+3] are kept in a ring of four registers: w[i & 3]. */
#define SCHEDULE(w, i)                                                                     \
    do {                                                                                   \
        if ((i) >= 4) {                                                                    \
            __m128i s_ = _mm_sha256msg1_epu32(w[(i) & 3], w[((i) + 1) & 3]);               \
            s_ = _mm_add_epi32(s_, _mm_alignr_epi8(w[((i) + 3) & 3], w[((i) + 2) & 3], 4)); \
            w[(i) & 3] = _mm_sha256msg2_epu32(s_, w[((i) + 3) & 3]);                       \
        }                                                                                  \
    } while (0)

/* `n` states (1 to 3) over the same blocks: one message schedule, n interleaved round chains.
 * Always inlined with a constant `n`, so each caller gets its own unrolled code. */
SHA_TARGET static inline __attribute__((always_inline)) void
blocks_n(uint32_t *h[3], const int n, const uint8_t *p, size_t nblocks)
{
    const __m128i mask = BSWAP_MASK;
    __m128i abef[3], cdgh[3], abef0[3], cdgh0[3];
    for (int s = 0; s < n; s++)
        load_state(h[s], &abef[s], &cdgh[s]);
    while (nblocks--) {
        __m128i w[4];
        for (int s = 0; s < n; s++) {
            abef0[s] = abef[s];
            cdgh0[s] = cdgh[s];
        }
        for (int i = 0; i < 4; i++)
            w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), mask);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            SCHEDULE(w, i);
            __m128i m = _mm_add_epi32(w[i & 3], _mm_load_si128((const __m128i *)&K[4 * i]));
            __m128i mh = _mm_shuffle_epi32(m, 0x0E);
            /* cdgh takes the new (A,B,E,F); the old one becomes (C,D,G,H). */
            for (int s = 0; s < n; s++)
                cdgh[s] = _mm_sha256rnds2_epu32(cdgh[s], abef[s], m);
            for (int s = 0; s < n; s++)
                abef[s] = _mm_sha256rnds2_epu32(abef[s], cdgh[s], mh);
        }
        for (int s = 0; s < n; s++) {
            abef[s] = _mm_add_epi32(abef[s], abef0[s]);
            cdgh[s] = _mm_add_epi32(cdgh[s], cdgh0[s]);
        }
        p += 64;
    }
    for (int s = 0; s < n; s++)
        store_state(h[s], abef[s], cdgh[s]);
}

SHA_TARGET static void
blocks1(uint32_t h1[8], const uint8_t *p, size_t nblocks)
{
    uint32_t *h[3] = {h1, NULL, NULL};
    blocks_n(h, 1, p, nblocks);
}

SHA_TARGET static void
blocks2(uint32_t h1[8], uint32_t h2[8], const uint8_t *p, size_t nblocks)
{
    uint32_t *h[3] = {h1, h2, NULL};
    blocks_n(h, 2, p, nblocks);
}

SHA_TARGET static void
blocks3(uint32_t h1[8], uint32_t h2[8], uint32_t h3[8], const uint8_t *p, size_t nblocks)
{
    uint32_t *h[3] = {h1, h2, h3};
    blocks_n(h, 3, p, nblocks);
}

static int
cpu_has_shani(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & bit_SSSE3) || !(c & bit_SSE4_1))
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0; /* SHA */
}

#else /* no SHA-NI build: the module imports, says unavailable, and refuses to hash. */

static void blocks1(uint32_t h[8], const uint8_t *p, size_t n) { (void)h; (void)p; (void)n; }
static void blocks2(uint32_t a[8], uint32_t b[8], const uint8_t *p, size_t n)
{ (void)a; (void)b; (void)p; (void)n; }
static void blocks3(uint32_t a[8], uint32_t b[8], uint32_t c[8], const uint8_t *p, size_t n)
{ (void)a; (void)b; (void)c; (void)p; (void)n; }
static int cpu_has_shani(void) { return 0; }

#endif

static int shani_ok = 0;

/* ---- the hash object ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    uint32_t h[8];
    uint64_t length; /* bytes absorbed */
    uint8_t buf[64]; /* a partial block */
    size_t fill;
    PyThread_type_lock lock; /* held while the GIL is released */
} ShaObject;

static PyTypeObject ShaType;

/* Absorb bytes into one state (the caller holds the object's lock or the GIL). */
static void
sha_absorb(ShaObject *s, const uint8_t *p, size_t n)
{
    s->length += n;
    if (s->fill) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->buf + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill < 64)
            return;
        blocks1(s->h, s->buf, 1);
        s->fill = 0;
    }
    if (n >= 64) {
        blocks1(s->h, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    if (n) {
        memcpy(s->buf, p, n);
        s->fill = n;
    }
}

/* Absorb the same bytes into n (2 or 3) states. When their partial blocks are equally full,
 * the whole blocks go through one pass with a shared schedule; otherwise one state at a time. */
static void
sha_absorb_many(ShaObject **st, int n, const uint8_t *p, size_t len)
{
    for (int i = 1; i < n; i++) {
        if (st[i]->fill != st[0]->fill) {
            for (int j = 0; j < n; j++)
                sha_absorb(st[j], p, len);
            return;
        }
    }
    if (st[0]->fill) { /* complete the partial blocks from the same bytes */
        size_t take = 64 - st[0]->fill < len ? 64 - st[0]->fill : len;
        for (int j = 0; j < n; j++)
            sha_absorb(st[j], p, take);
        p += take;
        len -= take;
    }
    if (len >= 64) {
        size_t whole = len & ~(size_t)63;
        if (n == 3)
            blocks3(st[0]->h, st[1]->h, st[2]->h, p, whole / 64);
        else
            blocks2(st[0]->h, st[1]->h, p, whole / 64);
        for (int j = 0; j < n; j++)
            st[j]->length += whole;
        p += whole;
        len -= whole;
    }
    if (len) {
        for (int j = 0; j < n; j++)
            sha_absorb(st[j], p, len);
    }
}

static void
sha_final(const ShaObject *s, uint8_t out[32])
{
    uint32_t h[8];
    uint8_t block[128];
    size_t fill = s->fill, total;
    uint64_t bits = s->length * 8;
    memcpy(h, s->h, sizeof h);
    memcpy(block, s->buf, fill);
    block[fill++] = 0x80;
    total = fill <= 56 ? 64 : 128;
    memset(block + fill, 0, total - fill);
    for (int i = 0; i < 8; i++)
        block[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    blocks1(h, block, total / 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static ShaObject *
sha_new_object(void)
{
    ShaObject *s = PyObject_New(ShaObject, &ShaType);
    if (s == NULL)
        return NULL;
    memcpy(s->h, IV, sizeof IV);
    s->length = 0;
    s->fill = 0;
    s->lock = PyThread_allocate_lock();
    if (s->lock == NULL) {
        Py_DECREF(s);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate a lock");
        return NULL;
    }
    return s;
}

static void
sha_dealloc(ShaObject *s)
{
    if (s->lock)
        PyThread_free_lock(s->lock);
    PyObject_Free(s);
}

static int
require_shani(void)
{
    if (!shani_ok) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no SHA extensions: use hashlib");
        return 0;
    }
    return 1;
}

/* Lock objects in address order (no deadlock between two threads locking overlapping sets),
 * with the GIL released around any wait. `st` holds distinct objects. */
static void
lock_many(ShaObject **st, int n)
{
    ShaObject *order[3];
    memcpy(order, st, n * sizeof *order);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && order[j] < order[j - 1]; j--) {
            ShaObject *t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        if (!PyThread_acquire_lock(order[i]->lock, 0)) {
            Py_BEGIN_ALLOW_THREADS
            PyThread_acquire_lock(order[i]->lock, 1);
            Py_END_ALLOW_THREADS
        }
    }
}

static void
unlock_many(ShaObject **st, int n)
{
    for (int i = 0; i < n; i++)
        PyThread_release_lock(st[i]->lock);
}

static PyObject *
sha_update(ShaObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    lock_many(&self, 1);
    if (view.len >= GIL_MINSIZE) {
        Py_BEGIN_ALLOW_THREADS
        sha_absorb(self, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        sha_absorb(self, view.buf, (size_t)view.len);
    }
    unlock_many(&self, 1);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *
sha_digest(ShaObject *self, PyObject *Py_UNUSED(ignored))
{
    uint8_t out[32];
    lock_many(&self, 1);
    sha_final(self, out);
    unlock_many(&self, 1);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

static PyObject *
sha_hexdigest(ShaObject *self, PyObject *Py_UNUSED(ignored))
{
    static const char hex[] = "0123456789abcdef";
    uint8_t out[32];
    char text[64];
    lock_many(&self, 1);
    sha_final(self, out);
    unlock_many(&self, 1);
    for (int i = 0; i < 32; i++) {
        text[2 * i] = hex[out[i] >> 4];
        text[2 * i + 1] = hex[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, 64);
}

static PyObject *
sha_copy(ShaObject *self, PyObject *Py_UNUSED(ignored))
{
    ShaObject *c = sha_new_object();
    if (c == NULL)
        return NULL;
    lock_many(&self, 1);
    memcpy(c->h, self->h, sizeof c->h);
    memcpy(c->buf, self->buf, sizeof c->buf);
    c->length = self->length;
    c->fill = self->fill;
    unlock_many(&self, 1);
    return (PyObject *)c;
}

static PyMethodDef sha_methods[] = {
    {"update", (PyCFunction)sha_update, METH_O, "Absorb a bytes-like object."},
    {"digest", (PyCFunction)sha_digest, METH_NOARGS, "The 32-byte digest so far."},
    {"hexdigest", (PyCFunction)sha_hexdigest, METH_NOARGS, "The digest so far, in hex."},
    {"copy", (PyCFunction)sha_copy, METH_NOARGS, "An independent copy of this state."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
sha_get_name(ShaObject *self, void *closure)
{
    return PyUnicode_FromString("sha256");
}

static PyObject *
sha_get_digest_size(ShaObject *self, void *closure)
{
    return PyLong_FromLong(32);
}

static PyGetSetDef sha_getset[] = {
    {"name", (getter)sha_get_name, NULL, "Always 'sha256'.", NULL},
    {"digest_size", (getter)sha_get_digest_size, NULL, "32.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ShaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "modelyard._sha256ni.sha256",
    .tp_basicsize = sizeof(ShaObject),
    .tp_dealloc = (destructor)sha_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SHA-256 on the x86 SHA extensions (hashlib-like: update, digest, hexdigest, copy).",
    .tp_methods = sha_methods,
    .tp_getset = sha_getset,
};

/* ---- module functions ------------------------------------------------------------------ */

static PyObject *
mod_sha256(PyObject *module, PyObject *args)
{
    PyObject *data = NULL;
    ShaObject *s;
    if (!PyArg_ParseTuple(args, "|O:sha256", &data))
        return NULL;
    if (!require_shani())
        return NULL;
    s = sha_new_object();
    if (s != NULL && data != NULL && data != Py_None) {
        PyObject *r = sha_update(s, data);
        if (r == NULL) {
            Py_DECREF(s);
            return NULL;
        }
        Py_DECREF(r);
    }
    return (PyObject *)s;
}

static PyObject *
update_many(PyObject *args, int n, const char *format)
{
    ShaObject *st[3];
    Py_buffer view;
    int ok = n == 2 ? PyArg_ParseTuple(args, format, &ShaType, &st[0], &ShaType, &st[1], &view)
                    : PyArg_ParseTuple(args, format, &ShaType, &st[0], &ShaType, &st[1],
                                       &ShaType, &st[2], &view);
    if (!ok)
        return NULL;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (st[i] == st[j]) {
                PyBuffer_Release(&view);
                PyErr_SetString(PyExc_ValueError, "each hash object may appear only once");
                return NULL;
            }
    lock_many(st, n);
    if (view.len >= GIL_MINSIZE) {
        Py_BEGIN_ALLOW_THREADS
        sha_absorb_many(st, n, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        sha_absorb_many(st, n, view.buf, (size_t)view.len);
    }
    unlock_many(st, n);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *
mod_update2(PyObject *module, PyObject *args)
{
    return update_many(args, 2, "O!O!y*:update2");
}

static PyObject *
mod_update3(PyObject *module, PyObject *args)
{
    return update_many(args, 3, "O!O!O!y*:update3");
}

static PyObject *
mod_available(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(shani_ok);
}

static PyMethodDef module_methods[] = {
    {"sha256", mod_sha256, METH_VARARGS, "sha256([data]) -> a new hash object."},
    {"update2", mod_update2, METH_VARARGS,
     "update2(a, b, data): absorb the same bytes into two hash objects in one pass."},
    {"update3", mod_update3, METH_VARARGS,
     "update3(a, b, c, data): absorb the same bytes into three hash objects in one pass."},
    {"available", mod_available, METH_NOARGS, "True when this CPU has the SHA extensions."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_sha256ni",
    "SHA-256 on the x86 SHA extensions, with a two-states-one-pass update.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__sha256ni(void)
{
    shani_ok = cpu_has_shani();
    if (PyType_Ready(&ShaType) < 0)
        return NULL;
    return PyModule_Create(&module_def);
}
