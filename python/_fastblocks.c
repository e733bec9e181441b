/*
 * _fastblocks - the CPython extension over libfastblocks: the Store type
 * that owns one fb_store, the mapping of FB_E* codes to Python exceptions,
 * and key generation. The seed-compatible BlockManager, the asyncio side and
 * the HTTP client mode live in the pure-Python package (fastblocks/).
 *
 * Every engine call that may touch a disk or a codec runs with the GIL
 * released, so a WebP encode of a large photo in one thread never stalls the
 * event loop or other threads. A Store counts its calls in flight, so
 * close() waits for them instead of freeing the engine under them.
 *
 * Addresses are passed as one object: an id string, or a (block, offset,
 * size) tuple (the seed's triple).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fastblocks.h"

/* The detail an engine call left in its thread, copied before that thread
 * makes another library call. */
#define DETAIL_MAX 512

static PyObject *StoreError;       /* OSError: engine failures without a better class */
static PyObject *IntegrityError;   /* StoreError: corrupt or tampered data, wrong key */
static PyObject *StoreLockedError; /* StoreError: another process writes this store */
static PyObject *ImageError;       /* ValueError: the upload is not a usable image */
static PyObject *json_loads;       /* json.loads, for fb_meta_json's canonical object */

/* Copies the calling thread's error detail (call right after the failing
 * library call, in the same thread). */
static void take_detail(char *detail)
{
    snprintf(detail, DETAIL_MAX, "%s", fb_last_error());
}

static PyObject *error_type(int rc)
{
    switch (rc) {
    case FB_ENOTFOUND:
        return PyExc_FileNotFoundError;
    case FB_EINVAL:
    case FB_EKEY:
    case FB_ETOOBIG:
        return PyExc_ValueError;
    case FB_EUNSUPPORTED:
    case FB_EIMAGE:
    case FB_ELIMIT:
        return ImageError;
    case FB_ECORRUPT:
    case FB_EINTEGRITY:
        return IntegrityError;
    case FB_ELOCKED:
        return StoreLockedError;
    case FB_ENOMEM:
        return PyExc_MemoryError;
    default:
        return StoreError;
    }
}

/* What a Python user should do about an error, beyond the engine's detail. */
static const char *error_advice(int rc)
{
    switch (rc) {
    case FB_ELOCKED:
        return " A store directory has one writer process. With several workers "
               "(uvicorn --workers N, gunicorn), run `fastblocks serve` once and give each "
               "worker BlockManager(url=...).";
    case FB_EKEY:
        return " Make a key with BlockManager.generate_encryption_key() (or `fastblocks keygen`).";
    case FB_ENOKEY:
        return " Pass the store's key as encryption_key (or in decryption_keys).";
    default:
        return "";
    }
}

/*
 * The exception for an engine error (a new reference, NULL on failure). The
 * message is "<what>: <detail>." plus advice where there is any; .code is
 * the FB_E* name ("ENOTFOUND", ...) so that callers can tell errors of one
 * class apart (the FastAPI router maps them to HTTP statuses).
 */
static PyObject *make_error(int rc, const char *detail)
{
    PyObject *type = error_type(rc);
    PyObject *msg = NULL, *exc = NULL, *code = NULL;
    size_t n = detail != NULL ? strlen(detail) : 0;
    const char *stop = n > 0 && detail[n - 1] == '.' ? "" : ".";
    const char *advice = error_advice(rc);

    /* The codec's key detail may already name the Python way to make a key. */
    if (rc == FB_EKEY && n > 0 && strstr(detail, "generate_encryption_key") != NULL)
        advice = "";

    if (n > 0)
        msg = PyUnicode_FromFormat("%s: %s%s%s", fb_strerror(rc), detail, stop, advice);
    else
        msg = PyUnicode_FromFormat("%s.%s", fb_strerror(rc), advice);
    if (msg == NULL)
        goto out;
    exc = PyObject_CallOneArg(type, msg);
    if (exc == NULL)
        goto out;
    code = PyUnicode_FromString(fb_err_name(rc));
    if (code == NULL || PyObject_SetAttrString(exc, "code", code) < 0)
        Py_CLEAR(exc);
out:
    Py_XDECREF(msg);
    Py_XDECREF(code);
    return exc;
}

/* Raises make_error(rc, detail); returns NULL. */
static PyObject *raise_fb(int rc, const char *detail)
{
    PyObject *exc = make_error(rc, detail);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Conversions                                                               */

/* The canonical metadata object (the same JSON HTTP and the CLI print), as a
 * dict: fb_meta_json is the one definition of its keys. */
static PyObject *meta_to_dict(const fb_meta *m)
{
    char buf[FB_META_JSON_MAX];
    int n = fb_meta_json(m, buf, sizeof buf);
    if (n < 0)
        return raise_fb(n, fb_last_error());
    PyObject *text = PyUnicode_FromStringAndSize(buf, n);
    if (text == NULL)
        return NULL;
    PyObject *d = PyObject_CallOneArg(json_loads, text);
    Py_DECREF(text);
    return d;
}

static PyObject *block_stats_to_dict(const fb_block_stats *b)
{
    /* The same keys as the HTTP service's updated_metadata. */
    return Py_BuildValue(
        "{s:s,s:K,s:K,s:K,s:K,s:K,s:O}", "block", b->block, "file_bytes",
        (unsigned long long)b->file_bytes, "live_bytes", (unsigned long long)b->live_bytes,
        "dead_bytes", (unsigned long long)b->dead_bytes, "live_records",
        (unsigned long long)b->live_records, "dead_records", (unsigned long long)b->dead_records,
        "sealed", b->sealed ? Py_True : Py_False);
}

/* A non-negative Python int as uint64_t; TypeError/ValueError otherwise. */
static int to_u64(PyObject *o, const char *what, uint64_t *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow != 0 || v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be between 0 and 2**63-1, got %R", what, o);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* A Python int that fits a C int (the engine checks the range it accepts). */
static int to_int(PyObject *o, const char *what, int *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow != 0 || v < INT_MIN || v > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s out of range: %R", what, o);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/*
 * An address object: an id string, or a (block, offset, size) sequence.
 * A malformed id is a ValueError. A triple whose block name does not follow
 * the store's pattern names no image, so it is FileNotFoundError as in the
 * original (which failed to open such a block file); wrong types are
 * TypeError, negative numbers ValueError.
 */
static int parse_addr(PyObject *a, fb_addr *out)
{
    int rc;
    if (PyUnicode_Check(a)) {
        Py_ssize_t len;
        const char *id = PyUnicode_AsUTF8AndSize(a, &len);
        if (id == NULL)
            return -1;
        /* An embedded NUL would let another string pass as a valid id. */
        if (strlen(id) != (size_t)len) {
            PyErr_Format(PyExc_ValueError, "invalid image id %R: it contains NUL", a);
            return -1;
        }
        rc = fb_addr_from_id(id, out);
        if (rc < 0) {
            PyErr_Format(PyExc_ValueError, "invalid image id %R: %s", a, fb_last_error());
            return -1;
        }
        return 0;
    }
    if (!PyTuple_Check(a) || PyTuple_GET_SIZE(a) != 3) {
        PyErr_Format(PyExc_TypeError,
                     "an image address is an id string or a (block, offset, size) tuple, not "
                     "%.100s",
                     Py_TYPE(a)->tp_name);
        return -1;
    }
    PyObject *block = PyTuple_GET_ITEM(a, 0);
    uint64_t offset, size;
    if (!PyUnicode_Check(block)) {
        PyErr_Format(PyExc_TypeError, "block must be a str, not %.100s", Py_TYPE(block)->tp_name);
        return -1;
    }
    if (to_u64(PyTuple_GET_ITEM(a, 1), "offset", &offset) < 0 ||
        to_u64(PyTuple_GET_ITEM(a, 2), "size", &size) < 0)
        return -1;
    Py_ssize_t len;
    const char *name = PyUnicode_AsUTF8AndSize(block, &len);
    if (name == NULL)
        return -1;
    if (strlen(name) != (size_t)len) {
        PyErr_SetString(PyExc_FileNotFoundError, "image not found: the block name contains NUL");
        return -1;
    }
    rc = fb_addr_from_triple(name, offset, size, out);
    if (rc < 0) {
        PyErr_Format(PyExc_FileNotFoundError, "image not found: %s", fb_last_error());
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Store                                                                     */

typedef struct {
    PyObject_HEAD fb_store *store;
    fb_image_opts image; /* the store's default conversion settings */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    long busy;   /* engine calls in flight; guarded by mu */
    int closing; /* set under the GIL: no new calls start */
    PyObject *path;
} StoreObject;

/* Registers a call in flight (GIL held). -1 with ValueError if closed. */
static int store_enter(StoreObject *self)
{
    if (self->store == NULL || self->closing) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed store");
        return -1;
    }
    pthread_mutex_lock(&self->mu);
    self->busy++;
    pthread_mutex_unlock(&self->mu);
    return 0;
}

/* Ends a call in flight; may run without the GIL. */
static void store_leave(StoreObject *self)
{
    pthread_mutex_lock(&self->mu);
    if (--self->busy == 0)
        pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->mu);
}

/* Ends an engine call made without the GIL: keeps this thread's error
 * detail (it is thread-local), leaves, and takes the GIL back. */
static void store_finish(StoreObject *self, PyThreadState *ts, int rc, char *detail)
{
    if (rc < 0)
        take_detail(detail);
    store_leave(self);
    PyEval_RestoreThread(ts);
}

/* store_finish, then raises the engine's error if the call failed: -1 with
 * the exception set, or 0. */
static int store_done(StoreObject *self, PyThreadState *ts, int rc)
{
    char detail[DETAIL_MAX];
    store_finish(self, ts, rc, detail);
    if (rc < 0) {
        raise_fb(rc, detail);
        return -1;
    }
    return 0;
}

/* Waits for the calls in flight, then closes the engine (GIL held on entry
 * and exit). Returns the fb_close code; *detail gets its detail. */
static int store_shutdown(StoreObject *self, char *detail)
{
    fb_store *s = self->store;
    int rc = 0;
    detail[0] = '\0';
    if (s == NULL || self->closing)
        return 0;
    self->closing = 1;
    PyThreadState *ts = PyEval_SaveThread();
    pthread_mutex_lock(&self->mu);
    while (self->busy > 0)
        pthread_cond_wait(&self->idle, &self->mu);
    pthread_mutex_unlock(&self->mu);
    rc = fb_close(s);
    if (rc < 0)
        take_detail(detail);
    PyEval_RestoreThread(ts);
    self->store = NULL;
    return rc;
}

static void Store_dealloc(StoreObject *self)
{
    char detail[DETAIL_MAX];
    (void)store_shutdown(self, detail);
    pthread_cond_destroy(&self->idle);
    pthread_mutex_destroy(&self->mu);
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Store_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args;
    (void)kw;
    StoreObject *self = (StoreObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->idle, NULL);
    fb_image_opts_init(&self->image);
    return (PyObject *)self;
}

/* The keys as C strings borrowed from a list that the caller keeps alive. */
static const char **borrow_keys(PyObject *list, size_t *n)
{
    Py_ssize_t count = PyList_GET_SIZE(list);
    const char **keys = PyMem_Calloc(count > 0 ? (size_t)count : 1, sizeof *keys);
    if (keys == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *k = PyList_GET_ITEM(list, i);
        if (PyUnicode_Check(k)) {
            keys[i] = PyUnicode_AsUTF8(k);
        } else if (PyBytes_Check(k)) {
            keys[i] = PyBytes_AS_STRING(k);
        } else {
            PyErr_Format(PyExc_TypeError, "an encryption key must be bytes or str, not %.100s",
                         Py_TYPE(k)->tp_name);
            keys[i] = NULL;
        }
        if (keys[i] == NULL) {
            PyMem_Free(keys);
            return NULL;
        }
    }
    *n = (size_t)count;
    return keys;
}

static int Store_init(StoreObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path",
                             "max_block_size",
                             "durability",
                             "batch_interval_ms",
                             "compression",
                             "compression_level",
                             "keys",
                             "cache_bytes",
                             "cache_entries",
                             "read_only",
                             "create",
                             "quality",
                             "effort",
                             "lossless",
                             "max_dimension",
                             "keep_metadata",
                             NULL};
    fb_options o;
    PyObject *path = NULL, *keys_arg = Py_None, *keys_list = NULL;
    const char **keys = NULL;
    unsigned long long max_block_size, cache_bytes, cache_entries;
    unsigned int batch_ms, max_dim;
    int durability, compression, level, read_only, create, lossless, keep_metadata;
    int quality, effort, rc, ret = -1;
    char detail[DETAIL_MAX];
    fb_store *s = NULL;

    if (self->store != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Store is already open");
        return -1;
    }
    fb_options_init(&o);
    max_block_size = o.max_block_size;
    durability = (int)o.durability;
    batch_ms = o.batch_interval_ms;
    compression = o.compression;
    level = o.compression_level;
    cache_bytes = o.cache_bytes;
    cache_entries = o.cache_entries;
    read_only = o.read_only;
    create = o.create;
    quality = o.image.quality;
    effort = o.image.effort;
    lossless = o.image.lossless;
    max_dim = o.image.max_dimension;
    keep_metadata = o.image.keep_metadata;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$KiIpiOKKppiipIp:Store", kwlist,
                                     PyUnicode_FSConverter, &path, &max_block_size, &durability,
                                     &batch_ms, &compression, &level, &keys_arg, &cache_bytes,
                                     &cache_entries, &read_only, &create, &quality, &effort,
                                     &lossless, &max_dim, &keep_metadata))
        return -1;
    o.max_block_size = max_block_size;
    o.durability = (fb_durability)durability;
    o.batch_interval_ms = batch_ms;
    o.compression = compression;
    o.compression_level = level;
    o.cache_bytes = cache_bytes;
    o.cache_entries = cache_entries;
    o.read_only = read_only;
    o.create = create;
    o.image.quality = quality;
    o.image.effort = effort;
    o.image.lossless = lossless;
    o.image.max_dimension = max_dim;
    o.image.keep_metadata = keep_metadata;
    if (keys_arg != Py_None) {
        keys_list = PySequence_List(keys_arg);
        if (keys_list == NULL)
            goto out;
        keys = borrow_keys(keys_list, &o.nkeys);
        if (keys == NULL)
            goto out;
        o.keys = o.nkeys > 0 ? keys : NULL;
    }

    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_open(PyBytes_AS_STRING(path), &o, &s);
    if (rc < 0)
        take_detail(detail);
    PyEval_RestoreThread(ts);
    if (rc < 0) {
        raise_fb(rc, detail);
        goto out;
    }
    self->store = s;
    self->image = o.image;
    self->closing = 0;
    Py_XSETREF(self->path, PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path)));
    ret = 0;
out:
    PyMem_Free(keys);
    Py_XDECREF(keys_list);
    Py_XDECREF(path);
    return ret;
}

/*
 * Store.put(data, *, quality=None, effort=None, lossless=None,
 * max_dimension=None, keep_metadata=None) -> dict: converts and stores an
 * image; options left at None keep the store's settings.
 */
static PyObject *Store_put(StoreObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"data",          "quality",       "effort", "lossless",
                             "max_dimension", "keep_metadata", NULL};
    Py_buffer data;
    PyObject *quality = Py_None, *effort = Py_None, *lossless = Py_None, *max_dim = Py_None;
    PyObject *keep = Py_None, *result = NULL;
    fb_image_opts opts = self->image;
    fb_meta meta;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|$OOOOO:put", kwlist, &data, &quality, &effort,
                                     &lossless, &max_dim, &keep))
        return NULL;
    if (quality != Py_None && to_int(quality, "quality", &opts.quality) < 0)
        goto out;
    if (effort != Py_None && to_int(effort, "effort", &opts.effort) < 0)
        goto out;
    if (lossless != Py_None && (opts.lossless = PyObject_IsTrue(lossless)) < 0)
        goto out;
    if (keep != Py_None && (opts.keep_metadata = PyObject_IsTrue(keep)) < 0)
        goto out;
    if (max_dim != Py_None) {
        uint64_t v;
        if (to_u64(max_dim, "max_dimension", &v) < 0)
            goto out;
        if (v > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "max_dimension must be below 2**32");
            goto out;
        }
        opts.max_dimension = (uint32_t)v;
    }
    if (store_enter(self) < 0)
        goto out;
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_put(self->store, data.buf, (size_t)data.len, &opts, &meta);
    if (store_done(self, ts, rc) == 0)
        result = meta_to_dict(&meta);
out:
    PyBuffer_Release(&data);
    return result;
}

/* Store.put_webp(data, width, height) -> dict: stores bytes that already are
 * the WebP to serve, unconverted (benchmarks and engine tests). */
static PyObject *Store_put_webp(StoreObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned int width, height;
    fb_meta meta;
    PyObject *result = NULL;
    int rc;

    if (!PyArg_ParseTuple(args, "y*II:put_webp", &data, &width, &height))
        return NULL;
    if (store_enter(self) == 0) {
        PyThreadState *ts = PyEval_SaveThread();
        rc = fb_put_webp(self->store, data.buf, (size_t)data.len, width, height, &meta);
        if (store_done(self, ts, rc) == 0)
            result = meta_to_dict(&meta);
    }
    PyBuffer_Release(&data);
    return result;
}

/*
 * Store.get(addr, with_meta=False, cached_only=False): the WebP bytes, or
 * (bytes, meta) with with_meta. With cached_only, answers from the cache
 * only (no disk read, safe to call on an event loop) and returns None on a
 * miss. The bytes are copied once from the engine's buffer.
 */
static PyObject *Store_get(StoreObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"addr", "with_meta", "cached_only", NULL};
    PyObject *addr_obj, *data = NULL, *result = NULL;
    int with_meta = 0, cached_only = 0, rc;
    fb_addr addr;
    fb_meta meta;
    fb_buf *buf = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|pp:get", kwlist, &addr_obj, &with_meta,
                                     &cached_only))
        return NULL;
    if (parse_addr(addr_obj, &addr) < 0 || store_enter(self) < 0)
        return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    if (cached_only) {
        rc = fb_get_cached(self->store, &addr, &buf, with_meta ? &meta : NULL);
        rc = rc > 0 ? 0 : rc;
    } else {
        rc = fb_get(self->store, &addr, &buf, &meta);
    }
    if (store_done(self, ts, rc) < 0)
        return NULL;
    if (buf == NULL)
        Py_RETURN_NONE; /* cached_only and not in the cache */
    data = PyBytes_FromStringAndSize((const char *)fb_buf_data(buf), (Py_ssize_t)fb_buf_len(buf));
    fb_buf_release(buf);
    if (data == NULL || !with_meta)
        return data;
    PyObject *m = meta_to_dict(&meta);
    if (m != NULL)
        result = PyTuple_Pack(2, data, m);
    Py_XDECREF(m);
    Py_DECREF(data);
    return result;
}

/* Store.stat(addr) -> dict: the metadata of a live image, without reading it. */
static PyObject *Store_stat(StoreObject *self, PyObject *addr_obj)
{
    fb_addr addr;
    fb_meta meta;
    int rc;

    if (parse_addr(addr_obj, &addr) < 0 || store_enter(self) < 0)
        return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_stat(self->store, &addr, &meta);
    if (store_done(self, ts, rc) < 0)
        return NULL;
    return meta_to_dict(&meta);
}

/* Store.delete(addr) -> dict: deletes an image; returns the updated
 * statistics of the block that held it. */
static PyObject *Store_delete(StoreObject *self, PyObject *addr_obj)
{
    fb_addr addr;
    fb_block_stats st;
    int rc;

    if (parse_addr(addr_obj, &addr) < 0 || store_enter(self) < 0)
        return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_delete(self->store, &addr, &st);
    if (store_done(self, ts, rc) < 0)
        return NULL;
    return block_stats_to_dict(&st);
}

/* Store.stats() -> dict: whole-store and cache statistics. */
static PyObject *Store_stats(StoreObject *self, PyObject *unused)
{
    (void)unused;
    fb_stats st;
    int rc;

    if (store_enter(self) < 0)
        return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_get_stats(self->store, &st);
    if (store_done(self, ts, rc) < 0)
        return NULL;
    return Py_BuildValue(
        "{s:I,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "blocks",
        (unsigned int)st.blocks, "file_bytes", (unsigned long long)st.file_bytes, "live_bytes",
        (unsigned long long)st.live_bytes, "dead_bytes", (unsigned long long)st.dead_bytes,
        "live_records", (unsigned long long)st.live_records, "dead_records",
        (unsigned long long)st.dead_records, "cache_capacity",
        (unsigned long long)st.cache_capacity, "cache_bytes", (unsigned long long)st.cache_bytes,
        "cache_entries", (unsigned long long)st.cache_entries, "cache_hits",
        (unsigned long long)st.cache_hits, "cache_misses", (unsigned long long)st.cache_misses,
        "cache_evictions", (unsigned long long)st.cache_evictions, "syncs",
        (unsigned long long)st.syncs, "synced_puts", (unsigned long long)st.synced_puts);
}

/* Store.blocks() -> list of dict: the statistics of every block file. */
static PyObject *Store_blocks(StoreObject *self, PyObject *unused)
{
    (void)unused;
    fb_block_stats *blocks = NULL;
    size_t n = 0;
    PyObject *list = NULL;
    int rc;

    if (store_enter(self) < 0)
        return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_list_blocks(self->store, &blocks, &n);
    if (store_done(self, ts, rc) < 0)
        return NULL;
    list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *d = block_stats_to_dict(&blocks[i]);
        if (d == NULL || PyList_Append(list, d) < 0)
            Py_CLEAR(list);
        Py_XDECREF(d);
    }
    fb_free(blocks);
    return list;
}

/* Store.compact(threshold=-1.0) -> dict: compacts blocks whose dead ratio
 * reaches threshold (the engine's default when negative). */
static PyObject *Store_compact(StoreObject *self, PyObject *args)
{
    double threshold = -1.0;
    fb_compact_result r;
    int rc;

    if (!PyArg_ParseTuple(args, "|d:compact", &threshold) || store_enter(self) < 0)
        return NULL;
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_compact(self->store, threshold, NULL, NULL, &r);
    if (store_done(self, ts, rc) < 0)
        return NULL;
    return Py_BuildValue("{s:I,s:K,s:K}", "blocks_compacted", (unsigned int)r.blocks_compacted,
                         "records_moved", (unsigned long long)r.records_moved, "bytes_reclaimed",
                         (unsigned long long)r.bytes_reclaimed);
}

/* Problems found by fb_verify, collected without the GIL. */
typedef struct {
    fb_problem *items;
    size_t n, cap;
} problem_list;

static void collect_problem(void *userdata, const fb_problem *p)
{
    problem_list *l = userdata;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        fb_problem *items = PyMem_RawRealloc(l->items, cap * sizeof *items);
        if (items == NULL)
            return; /* the count in the result still says how many there were */
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = *p;
}

/* Store.verify() -> dict: checks every record; {"ok", "records_checked",
 * "bytes_checked", "problems": [{"block", "offset", "error", "detail"}]}. */
static PyObject *Store_verify(StoreObject *self, PyObject *unused)
{
    (void)unused;
    fb_verify_result r;
    problem_list l = {NULL, 0, 0};
    char detail[DETAIL_MAX];
    PyObject *problems = NULL, *result = NULL;
    int rc;

    if (store_enter(self) < 0)
        return NULL;
    memset(&r, 0, sizeof r);
    PyThreadState *ts = PyEval_SaveThread();
    rc = fb_verify(self->store, collect_problem, NULL, &l, &r);
    store_finish(self, ts, rc, detail);
    if (rc < 0 && rc != FB_ECORRUPT) {
        raise_fb(rc, detail);
        goto out;
    }
    problems = PyList_New(0);
    for (size_t i = 0; problems != NULL && i < l.n; i++) {
        const fb_problem *p = &l.items[i];
        PyObject *d = Py_BuildValue("{s:s,s:K,s:s,s:s}", "block", p->block, "offset",
                                    (unsigned long long)p->offset, "error", fb_err_name(p->error),
                                    "detail", p->detail);
        if (d == NULL || PyList_Append(problems, d) < 0)
            Py_CLEAR(problems);
        Py_XDECREF(d);
    }
    if (problems != NULL)
        result =
            Py_BuildValue("{s:O,s:K,s:K,s:K,s:O}", "ok", rc == 0 ? Py_True : Py_False,
                          "records_checked", (unsigned long long)r.records_checked, "bytes_checked",
                          (unsigned long long)r.bytes_checked, "problem_count",
                          (unsigned long long)r.problems, "problems", problems);
out:
    Py_XDECREF(problems);
    PyMem_RawFree(l.items);
    return result;
}

/* Store.close(): waits for calls in flight, syncs and releases the store.
 * Idempotent. */
static PyObject *Store_close(StoreObject *self, PyObject *unused)
{
    (void)unused;
    char detail[DETAIL_MAX];
    int rc = store_shutdown(self, detail);
    if (rc < 0)
        return raise_fb(rc, detail);
    Py_RETURN_NONE;
}

static PyObject *Store_get_closed(StoreObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->store == NULL || self->closing);
}

static PyObject *Store_get_path(StoreObject *self, void *closure)
{
    (void)closure;
    if (self->path == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->path);
}

static PyMethodDef Store_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Store_put, METH_VARARGS | METH_KEYWORDS,
     "put(data, *, quality=None, effort=None, lossless=None, max_dimension=None, "
     "keep_metadata=None) -> dict\n\nConverts an image to WebP and stores it."},
    {"put_webp", (PyCFunction)Store_put_webp, METH_VARARGS,
     "put_webp(data, width, height) -> dict\n\nStores WebP bytes as they are."},
    {"get", (PyCFunction)(void (*)(void))Store_get, METH_VARARGS | METH_KEYWORDS,
     "get(addr, with_meta=False, cached_only=False) -> bytes | tuple | None\n\n"
     "Reads an image by id or (block, offset, size)."},
    {"stat", (PyCFunction)Store_stat, METH_O, "stat(addr) -> dict\n\nMetadata of an image."},
    {"delete", (PyCFunction)Store_delete, METH_O,
     "delete(addr) -> dict\n\nDeletes an image; returns its block's statistics."},
    {"stats", (PyCFunction)Store_stats, METH_NOARGS, "stats() -> dict"},
    {"blocks", (PyCFunction)Store_blocks, METH_NOARGS, "blocks() -> list[dict]"},
    {"compact", (PyCFunction)Store_compact, METH_VARARGS, "compact(threshold=-1.0) -> dict"},
    {"verify", (PyCFunction)Store_verify, METH_NOARGS, "verify() -> dict"},
    {"close", (PyCFunction)Store_close, METH_NOARGS, "close()\n\nSyncs and closes the store."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Store_getset[] = {
    {"closed", (getter)Store_get_closed, NULL, "True once close() has been called.", NULL},
    {"path", (getter)Store_get_path, NULL, "The store directory.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "fastblocks._fastblocks.Store",
    .tp_basicsize = sizeof(StoreObject),
    .tp_dealloc = (destructor)Store_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Store(path, *, max_block_size, durability, batch_interval_ms, compression, "
              "compression_level, keys, cache_bytes, cache_entries, read_only, create, quality, "
              "effort, lossless, max_dimension, keep_metadata)\n\n"
              "An open FastBlocks store (libfastblocks' fb_store). Thread-safe; every engine "
              "call releases the GIL.",
    .tp_methods = Store_methods,
    .tp_getset = Store_getset,
    .tp_init = (initproc)Store_init,
    .tp_new = Store_new,
};

/* ------------------------------------------------------------------------ */
/* Module functions                                                          */

/* keygen() -> bytes: a new random Fernet key (like Fernet.generate_key()). */
static PyObject *mod_keygen(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    char key[FB_KEY_LEN + 1];
    int rc = fb_keygen(key);
    if (rc < 0)
        return raise_fb(rc, fb_last_error());
    PyObject *r = PyBytes_FromStringAndSize(key, FB_KEY_LEN);
    memset(key, 0, sizeof key);
    return r;
}

/* key_check(key): None if key (str or bytes) is a valid Fernet key,
 * ValueError with the reason otherwise. */
static PyObject *mod_key_check(PyObject *m, PyObject *key)
{
    (void)m;
    const char *k;
    if (PyUnicode_Check(key)) {
        k = PyUnicode_AsUTF8(key);
    } else if (PyBytes_Check(key)) {
        k = PyBytes_AS_STRING(key);
        if (strlen(k) != (size_t)PyBytes_GET_SIZE(key))
            return raise_fb(FB_EKEY, "the key contains a NUL byte");
    } else {
        return PyErr_Format(PyExc_TypeError, "an encryption key must be bytes or str, not %.100s",
                            Py_TYPE(key)->tp_name);
    }
    if (k == NULL)
        return NULL;
    int rc = fb_key_check(k);
    if (rc < 0)
        return raise_fb(rc, fb_last_error());
    Py_RETURN_NONE;
}

/* error_codes() -> list of (number, name, message): the FB_E* table, so the
 * HTTP client can map a server's error text back to the same exceptions. */
static PyObject *mod_error_codes(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    static const int codes[] = {
#define FB__PY_CODE(name, num, msg) FB_##name,
        FB_ERRNO_MAP(FB__PY_CODE)
#undef FB__PY_CODE
    };
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < sizeof codes / sizeof codes[0]; i++) {
        PyObject *t =
            Py_BuildValue("(iss)", codes[i], fb_err_name(codes[i]), fb_strerror(codes[i]));
        if (t == NULL || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    return list;
}

/* make_error(code, detail) -> exception: the exception the engine's error
 * code maps to, with detail, as the embedded mode raises it. */
static PyObject *mod_make_error(PyObject *m, PyObject *args)
{
    (void)m;
    int code;
    const char *detail;
    if (!PyArg_ParseTuple(args, "is:make_error", &code, &detail))
        return NULL;
    if (code >= 0) {
        PyErr_SetString(PyExc_ValueError, "code must be a negative FB_E* number");
        return NULL;
    }
    return make_error(code, detail);
}

/* version() -> str: the version of the linked libfastblocks. */
static PyObject *mod_version(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    return PyUnicode_FromString(fb_version());
}

static PyMethodDef module_methods[] = {
    {"keygen", mod_keygen, METH_NOARGS, "keygen() -> bytes\n\nA new random Fernet key."},
    {"key_check", mod_key_check, METH_O,
     "key_check(key)\n\nRaises ValueError if key is not a valid Fernet key."},
    {"version", mod_version, METH_NOARGS, "version() -> str"},
    {"error_codes", mod_error_codes, METH_NOARGS,
     "error_codes() -> list[tuple[int, str, str]]\n\nThe engine's error table."},
    {"make_error", mod_make_error, METH_VARARGS,
     "make_error(code, detail) -> Exception\n\nThe exception an engine error maps to."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastblocks._fastblocks",
    .m_doc = "The C core of fastblocks: libfastblocks linked in.",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_exception(PyObject *m, PyObject **slot, const char *name, PyObject *base,
                         const char *doc)
{
    char full[96];
    snprintf(full, sizeof full, "fastblocks.%s", name);
    *slot = PyErr_NewExceptionWithDoc(full, doc, base, NULL);
    if (*slot == NULL)
        return -1;
    Py_INCREF(*slot);
    if (PyModule_AddObject(m, name, *slot) < 0) {
        Py_DECREF(*slot);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__fastblocks(void)
{
    PyObject *m = NULL, *json = NULL;

    if (PyType_Ready(&StoreType) < 0)
        return NULL;
    m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    json = PyImport_ImportModule("json");
    if (json == NULL)
        goto fail;
    json_loads = PyObject_GetAttrString(json, "loads");
    Py_DECREF(json);
    if (json_loads == NULL)
        goto fail;
    if (add_exception(m, &StoreError, "StoreError", PyExc_OSError,
                      "The store failed (I/O, space, format, closing...); the message carries "
                      "the engine's detail and .code its FB_E* name.") < 0 ||
        add_exception(m, &IntegrityError, "IntegrityError", StoreError,
                      "Stored data is corrupt or was tampered with, or the key is wrong.") < 0 ||
        add_exception(m, &StoreLockedError, "StoreLockedError", StoreError,
                      "Another process has the store open for writing.") < 0 ||
        add_exception(m, &ImageError, "ImageError", PyExc_ValueError,
                      "The input is not a supported, decodable image within the limits.") < 0)
        goto fail;
    Py_INCREF(&StoreType);
    if (PyModule_AddObject(m, "Store", (PyObject *)&StoreType) < 0) {
        Py_DECREF(&StoreType);
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "DURABILITY_ALWAYS", FB_DURABILITY_ALWAYS) < 0 ||
        PyModule_AddIntConstant(m, "DURABILITY_BATCH", FB_DURABILITY_BATCH) < 0 ||
        PyModule_AddIntConstant(m, "DURABILITY_NONE", FB_DURABILITY_NONE) < 0 ||
        PyModule_AddIntConstant(m, "ID_LEN", FB_ID_LEN) < 0 ||
        PyModule_AddIntConstant(m, "KEY_LEN", FB_KEY_LEN) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
