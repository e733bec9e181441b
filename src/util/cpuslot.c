/* cpuslot - see cpuslot.h. */
#include "cpuslot.h"

#include <sched.h>
#include <unistd.h>

unsigned fb__cpu_slot_mask = 0;

__attribute__((constructor)) static void count_slots(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    unsigned slots = 1;
    while (slots < FB__CPU_SLOTS_MAX && (long)slots < cpus) {
        slots *= 2;
    }
    fb__cpu_slot_mask = slots - 1;
}

unsigned fb__cpu_slot_slow(void)
{
    /* -1 (no CPU number available) lands in the last slot, still valid. */
    return (unsigned)sched_getcpu() & fb__cpu_slot_mask;
}
