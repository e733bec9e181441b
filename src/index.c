/*
 * index - see index.h. Linear probing keeps lookups to one or two cache
 * lines; backward-shift deletion keeps the table free of tombstones so
 * probe lengths do not grow with deletes. The slot of a hash is found by
 * multiply-shift range reduction, which works for any capacity.
 */
#include "index.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"
#include "fastblocks.h"

/* Grow past 85% full: probes stay short, memory stays under 32 bytes/record. */
#define MAX_LOAD_NUM 85
#define MAX_LOAD_DEN 100
#define MIN_CAP 64

static size_t home(const fb_index *ix, uint64_t key)
{
    /* Keys are structured (block, offset): mix all bits into the top 32. */
    uint64_t h = key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (size_t)(((h >> 32) * (uint64_t)ix->cap) >> 32);
}

static int alloc_slots(fb_index *ix, size_t cap)
{
    if (cap > UINT32_MAX) {
        return fb__error(FB_ETOOBIG, "index of %zu slots is too large", cap);
    }
    fb_index_entry *s = fb__calloc(cap, sizeof *s);
    if (s == NULL) {
        return fb__error(FB_ENOMEM, "out of memory for an index of %zu slots", cap);
    }
    ix->slots = s;
    ix->cap = cap;
    return 0;
}

/* A table sized for n entries starts at 80% full at most: a little slack
 * keeps the probe runs of the inserts that follow an open short. */
#define INIT_LOAD_NUM 80

static size_t cap_for(size_t n)
{
    if (n > SIZE_MAX / MAX_LOAD_DEN) {
        return SIZE_MAX;
    }
    size_t cap = n * MAX_LOAD_DEN / INIT_LOAD_NUM + 1;
    return cap < MIN_CAP ? MIN_CAP : cap;
}

int fb__index_init(fb_index *ix, size_t expected)
{
    memset(ix, 0, sizeof *ix);
    return alloc_slots(ix, cap_for(expected));
}

void fb__index_free(fb_index *ix)
{
    fb__free(ix->slots);
    memset(ix, 0, sizeof *ix);
}

fb_index_entry *fb__index_find(const fb_index *ix, uint64_t key)
{
    if (key == 0 || ix->cap == 0) {
        return NULL;
    }
    size_t i = home(ix, key);
    for (;;) {
        fb_index_entry *e = &ix->slots[i];
        if (e->key == key) {
            return e;
        }
        if (e->key == 0) {
            return NULL;
        }
        if (++i == ix->cap) {
            i = 0;
        }
    }
}

static void insert_new(fb_index *ix, const fb_index_entry *e)
{
    size_t i = home(ix, e->key);
    while (ix->slots[i].key != 0) {
        if (++i == ix->cap) {
            i = 0;
        }
    }
    ix->slots[i] = *e;
    ix->count++;
}

static int grow(fb_index *ix)
{
    fb_index old = *ix;
    size_t cap = old.cap + old.cap / 2;
    if (cap < old.cap) {
        return fb__error(FB_ETOOBIG, "index cannot grow further");
    }
    int rc = alloc_slots(ix, cap);
    if (rc != 0) {
        *ix = old;
        return rc;
    }
    ix->count = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slots[i].key != 0) {
            insert_new(ix, &old.slots[i]);
        }
    }
    fb__free(old.slots);
    return 0;
}

int fb__index_put(fb_index *ix, const fb_index_entry *e, fb_index_entry *old, int *replaced)
{
    if (e->key == 0) {
        return fb__error(FB_EINVAL, "key 0 cannot be indexed");
    }
    /* Grow first, so that one probe run finds the key or its free slot. */
    if ((ix->count + 1) * MAX_LOAD_DEN > ix->cap * MAX_LOAD_NUM) {
        int rc = grow(ix);
        if (rc != 0) {
            return rc;
        }
    }
    size_t i = home(ix, e->key);
    for (;;) {
        fb_index_entry *cur = &ix->slots[i];
        if (cur->key == e->key) {
            if (old != NULL) {
                *old = *cur;
            }
            *cur = *e;
            if (replaced != NULL) {
                *replaced = 1;
            }
            return 0;
        }
        if (cur->key == 0) {
            *cur = *e;
            ix->count++;
            if (replaced != NULL) {
                *replaced = 0;
            }
            return 0;
        }
        if (++i == ix->cap) {
            i = 0;
        }
    }
}

int fb__index_remove(fb_index *ix, uint64_t key, fb_index_entry *old)
{
    fb_index_entry *e = fb__index_find(ix, key);
    if (e == NULL) {
        return 0;
    }
    if (old != NULL) {
        *old = *e;
    }
    /* Backward shift: move later entries of the probe run into the hole when
     * their home slot does not lie (cyclically) between the hole and them. */
    size_t hole = (size_t)(e - ix->slots);
    size_t j = hole;
    for (;;) {
        if (++j == ix->cap) {
            j = 0;
        }
        if (ix->slots[j].key == 0) {
            break;
        }
        size_t h = home(ix, ix->slots[j].key);
        int stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!stays) {
            ix->slots[hole] = ix->slots[j];
            hole = j;
        }
    }
    memset(&ix->slots[hole], 0, sizeof ix->slots[hole]);
    ix->count--;
    return 1;
}

const fb_index_entry *fb__index_next(const fb_index *ix, size_t *pos)
{
    while (*pos < ix->cap) {
        const fb_index_entry *e = &ix->slots[(*pos)++];
        if (e->key != 0) {
            return e;
        }
    }
    return NULL;
}

size_t fb__index_memory(const fb_index *ix)
{
    return ix->cap * sizeof(fb_index_entry);
}
