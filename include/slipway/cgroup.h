/* Control groups for process instances: a memory and CPU limit per instance, on cgroup v2 or
 * on v1's memory and cpu hierarchies, under this process's own group (so a slipwayd that is
 * itself limited keeps its apps inside its limit). */
#ifndef SLIPWAY_CGROUP_H
#define SLIPWAY_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    int version;   /* 0: no usable hierarchy (why says so), 1 or 2 */
    char mem[512]; /* the base directory for instance groups: v2's only, v1's memory one */
    char cpu[512]; /* v1's cpu one */
    char why[1200];
} sw_cgroups_t;

/* Finds a writable hierarchy and makes the base directories; 0, or -ENOTSUP with why set. */
int sw_cgroups_open(sw_cgroups_t *cg);
/* A group named name with the limits (0: none). 0 or a negative errno. */
int sw_cgroup_make(const sw_cgroups_t *cg, const char *name, uint64_t memory_bytes,
                   uint64_t milli_cpu);
int sw_cgroup_attach(const sw_cgroups_t *cg, const char *name, pid_t pid);
/* pid and every process descended from it (what it forked before it was moved). */
int sw_cgroup_attach_tree(const sw_cgroups_t *cg, const char *name, pid_t pid);
/* How often the kernel killed a process of the group for memory so far. */
unsigned long sw_cgroup_oom_kills(const sw_cgroups_t *cg, const char *name);
/* Once its processes are gone. */
void sw_cgroup_remove(const sw_cgroups_t *cg, const char *name);

#endif
