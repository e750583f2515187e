/* Control groups for process instances (cgroup.h). v2 when /sys/fs/cgroup is the unified
 * hierarchy: the base is <our group>/slipway with memory and cpu enabled for its children
 * (slipwayd moves itself into <our group>/daemon first when its group may not have both a
 * process and controllers for children). v1: <memory>/<our group>/slipway and
 * <cpu>/<our group>/slipway. */
#include "slipway/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slipway/common.h"

#define ROOT "/sys/fs/cgroup"

static int write_file(const char *dir, const char *file, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int rc = n == (ssize_t)strlen(text) ? 0 : -errno;
    close(fd);
    return rc;
}

/* Our group in the hierarchy whose /proc/self/cgroup line is "N:<controllers>:<path>" with
 * controller in controllers ("" for v2's "0::" line). */
static int self_path(const char *controller, char *out, size_t size)
{
    char text[4096];
    if (sw_read_small("/proc/self/cgroup", text, sizeof(text)))
        return -ENOENT;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctls = c1 + 1;
        bool match = !*controller ? !*ctls : false;
        for (char *s2 = NULL, *c = *controller ? strtok_r((char *)ctls, ",", &s2) : NULL; c;
             c = strtok_r(NULL, ",", &s2))
            match |= strcmp(c, controller) == 0;
        if (match) {
            snprintf(out, size, "%s", strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1);
            return 0;
        }
    }
    return -ENOENT;
}

/* dir/<self>/slipway, or dir/slipway when our own group is not visible in this mount. */
static int make_base(const char *mount, const char *controller, char *out, size_t size)
{
    char self[400] = "", probe[440];
    self_path(controller, self, sizeof(self));
    snprintf(probe, sizeof(probe), "%s%s", mount, self);
    if (access(probe, W_OK) != 0)
        probe[strlen(mount)] = '\0';
    snprintf(out, size, "%s/slipway", probe);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return -errno;
    return access(out, W_OK) == 0 ? 0 : -EACCES;
}

static int open_v2(sw_cgroups_t *cg)
{
    char self[400] = "", parent[420];
    self_path("", self, sizeof(self));
    snprintf(parent, sizeof(parent), ROOT "%s", self);
    int rc = write_file(parent, "cgroup.subtree_control", "+memory +cpu");
    if (rc == -EBUSY) {
        /* No internal processes: slipwayd leaves for a leaf of its own first. */
        char daemon[700], pid[24];
        snprintf(daemon, sizeof(daemon), "%s/daemon", parent);
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if ((mkdir(daemon, 0755) == 0 || errno == EEXIST) &&
            write_file(daemon, "cgroup.procs", pid) == 0)
            rc = write_file(parent, "cgroup.subtree_control", "+memory +cpu");
    }
    if (rc != 0) {
        snprintf(cg->why, sizeof(cg->why),
                 "cgroup v2: memory and cpu cannot be delegated in %s: %s", parent, strerror(-rc));
        return -ENOTSUP;
    }
    if (snprintf(cg->mem, sizeof(cg->mem), "%s/slipway", parent) >= (int)sizeof(cg->mem))
        return -ENAMETOOLONG;
    if ((mkdir(cg->mem, 0755) != 0 && errno != EEXIST) ||
        write_file(cg->mem, "cgroup.subtree_control", "+memory +cpu") != 0) {
        snprintf(cg->why, sizeof(cg->why), "cgroup v2: %s is not usable: %s", cg->mem,
                 strerror(errno));
        return -ENOTSUP;
    }
    cg->version = 2;
    return 0;
}

int sw_cgroups_open(sw_cgroups_t *cg)
{
    memset(cg, 0, sizeof(*cg));
    if (access(ROOT "/cgroup.controllers", F_OK) == 0)
        return open_v2(cg);
    int rc = make_base(ROOT "/memory", "memory", cg->mem, sizeof(cg->mem));
    if (rc == 0)
        rc = make_base(ROOT "/cpu", "cpu", cg->cpu, sizeof(cg->cpu));
    if (rc != 0) {
        snprintf(cg->why, sizeof(cg->why),
                 "no writable cgroup v2 or v1 memory and cpu hierarchy under " ROOT " (%s)",
                 strerror(-rc));
        return -ENOTSUP;
    }
    cg->version = 1;
    return 0;
}

static void group_dir(const char *base, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", base, name);
}

int sw_cgroup_make(const sw_cgroups_t *cg, const char *name, uint64_t memory_bytes,
                   uint64_t milli_cpu)
{
    char mem[700], cpu[700], v[64];
    group_dir(cg->mem, name, mem, sizeof(mem));
    group_dir(cg->version == 1 ? cg->cpu : cg->mem, name, cpu, sizeof(cpu));
    if (mkdir(mem, 0755) != 0 && errno != EEXIST)
        return -errno;
    if (cg->version == 1 && mkdir(cpu, 0755) != 0 && errno != EEXIST)
        return -errno;
    int rc = 0;
    if (memory_bytes) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)memory_bytes);
        rc = write_file(mem, cg->version == 2 ? "memory.max" : "memory.limit_in_bytes", v);
        if (rc == 0 && cg->version == 2)
            write_file(mem, "memory.swap.max", "0"); /* absent without swap accounting */
    }
    if (rc == 0 && milli_cpu) {
        /* quota per 100 ms period: 1000 milli-CPUs are a whole period */
        unsigned long long quota = SW_MAX(milli_cpu * 100, 1000);
        if (cg->version == 2) {
            snprintf(v, sizeof(v), "%llu 100000", quota);
            rc = write_file(cpu, "cpu.max", v);
        } else {
            rc = write_file(cpu, "cpu.cfs_period_us", "100000");
            snprintf(v, sizeof(v), "%llu", quota);
            if (rc == 0)
                rc = write_file(cpu, "cpu.cfs_quota_us", v);
        }
    }
    return rc;
}

int sw_cgroup_attach(const sw_cgroups_t *cg, const char *name, pid_t pid)
{
    char dir[700], v[24];
    snprintf(v, sizeof(v), "%d", (int)pid);
    group_dir(cg->mem, name, dir, sizeof(dir));
    int rc = write_file(dir, "cgroup.procs", v);
    if (rc == 0 && cg->version == 1) {
        group_dir(cg->cpu, name, dir, sizeof(dir));
        rc = write_file(dir, "cgroup.procs", v);
    }
    return rc;
}

unsigned long sw_cgroup_oom_kills(const sw_cgroups_t *cg, const char *name)
{
    char path[800], text[1024];
    snprintf(path, sizeof(path), "%s/%s/%s", cg->mem, name,
             cg->version == 2 ? "memory.events" : "memory.oom_control");
    if (sw_read_small(path, text, sizeof(text)))
        return 0;
    const char *p = strstr(text, "oom_kill ");
    return p ? strtoul(p + 9, NULL, 10) : 0;
}

void sw_cgroup_remove(const sw_cgroups_t *cg, const char *name)
{
    char dir[700];
    group_dir(cg->mem, name, dir, sizeof(dir));
    rmdir(dir);
    if (cg->version == 1) {
        group_dir(cg->cpu, name, dir, sizeof(dir));
        rmdir(dir);
    }
}

/* The parent of pid from /proc/<pid>/stat (field 4), or 0. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (sw_read_small(path, buf, sizeof(buf)))
        return 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    int ppid = 0;
    return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : 0;
}

/* Whether pid descends from root (a launcher may fork before it is moved). */
static bool descends(pid_t pid, pid_t root)
{
    for (int depth = 0; pid > 1 && depth < 64; depth++) {
        pid = parent_of(pid);
        if (pid == root)
            return true;
    }
    return false;
}

int sw_cgroup_attach_tree(const sw_cgroups_t *cg, const char *name, pid_t pid)
{
    int rc = sw_cgroup_attach(cg, name, pid);
    /* Twice: a child found unmoved may have forked before the first pass moved it. */
    for (int pass = 0; rc == 0 && pass < 2; pass++) {
        DIR *d = opendir("/proc");
        if (!d)
            break;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            pid_t p = (pid_t)atoi(e->d_name);
            if (p > 1 && p != pid && descends(p, pid))
                sw_cgroup_attach(cg, name, p);
        }
        closedir(d);
    }
    return rc;
}
