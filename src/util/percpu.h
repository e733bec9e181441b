/*
 * percpu - a pool of per-CPU counters. A counter is an index; it has one
 * 64-bit cell in each CPU slot's array (util/cpuslot.h). The cells of one
 * slot are packed together, eight to a cache line, and no line holds cells
 * of two slots: a CPU updating its cells of many counters touches few lines,
 * and never one that another CPU writes. (One padded line per counter and
 * CPU, the simple layout, doubled the lines a cache hit touched and cost
 * it half its single-thread speed.) Used for the reference counts of
 * popular buffers (util/buf.c).
 */
#ifndef FB_UTIL_PERCPU_H
#define FB_UTIL_PERCPU_H

#include <stdatomic.h>
#include <stdint.h>

/* A new counter whose cells are all 0, in *idx. Returns 0, or -1 when the
 * pool is full (FB__PERCPU_MAX counters) or out of memory. Thread-safe. */
int fb__percpu_new(uint32_t *idx);

/* Gives idx back; nobody may touch its cells afterwards. Thread-safe. */
void fb__percpu_free(uint32_t idx);

/* The cell of counter idx in slot (< fb__cpu_slots()); the cells of one
 * counter are FB__PERCPU_CHUNK apart, slot after slot. Lock-free. */
atomic_llong *fb__percpu_cell(uint32_t idx, unsigned slot);

#define FB__PERCPU_CHUNK 4096u /* counters per chunk: 32 KiB per slot */
#define FB__PERCPU_CHUNKS 256u /* chunks at most */
#define FB__PERCPU_MAX (FB__PERCPU_CHUNK * FB__PERCPU_CHUNKS)

#endif
