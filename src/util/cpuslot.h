/*
 * cpuslot - which of a small power-of-two number of per-CPU slots the
 * calling thread should use. Counters and locks that every thread would
 * otherwise write on one shared cache line (a popular image's reference
 * count, a cache shard's lock) are split into this many copies, one cache
 * line each; a thread touches the copy of the CPU it runs on, so two cores
 * never pull the same line back and forth. The mapping is only a hint: a
 * thread may move to another CPU at any moment, so users must stay correct
 * when two threads share a slot or one thread uses two.
 */
#ifndef FB_UTIL_CPUSLOT_H
#define FB_UTIL_CPUSLOT_H

#include <stdint.h>
#include <sys/rseq.h>

/* Upper bound of fb__cpu_slots(): beyond it, slots are shared by CPUs. */
#define FB__CPU_SLOTS_MAX 16

/* fb__cpu_slots() - 1, set when the library is loaded. */
extern unsigned fb__cpu_slot_mask;

/* The number of slots: the configured CPUs rounded up to a power of two,
 * at most FB__CPU_SLOTS_MAX. Constant for the life of the process. */
static inline unsigned fb__cpu_slots(void)
{
    return fb__cpu_slot_mask + 1;
}

unsigned fb__cpu_slot_slow(void);

/* The calling thread's slot now, in [0, fb__cpu_slots()). It is on every
 * hit of the cache, so it reads the CPU number the kernel keeps in the
 * thread's rseq area (registered by glibc) without a call: about a
 * nanosecond, against 4 for sched_getcpu. */
static inline unsigned fb__cpu_slot(void)
{
    if (__rseq_size > 0) {
        const volatile struct rseq *r =
            (const volatile struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
        return r->cpu_id & fb__cpu_slot_mask;
    }
    return fb__cpu_slot_slow();
}

#endif
