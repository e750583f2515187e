/* Process metrics sampled from /proc at scrape time. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "slipway/metrics.h"

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

uint64_t sw_process_rss_bytes(void)
{
    char buf[256];
    unsigned long long size, resident;
    if (read_file("/proc/self/statm", buf, sizeof(buf)) != 0 ||
        sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

void sw_metrics_process(sw_buf_t *out, void *payload)
{
    char buf[1024];
    (void)payload;
    double ticks = (double)sysconf(_SC_CLK_TCK);
    unsigned long long utime = 0, stime = 0, start = 0;

    if (read_file("/proc/self/stat", buf, sizeof(buf)) == 0) {
        /* Fields after the command name, which may itself contain spaces and parentheses. */
        const char *p = strrchr(buf, ')');
        if (p)
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                   "%*d %llu",
                   &utime, &stime, &start);
    }
    double boot = 0;
    if (read_file("/proc/stat", buf, sizeof(buf)) == 0) {
        const char *b = strstr(buf, "btime ");
        if (b)
            boot = (double)strtoull(b + 6, NULL, 10);
    }
    sw_buf_printf(out,
                  "# HELP process_cpu_seconds_total Total user and system CPU time.\n"
                  "# TYPE process_cpu_seconds_total counter\n"
                  "process_cpu_seconds_total %.2f\n"
                  "# HELP process_resident_memory_bytes Resident memory size.\n"
                  "# TYPE process_resident_memory_bytes gauge\n"
                  "process_resident_memory_bytes %llu\n"
                  "# HELP process_open_fds Open file descriptors.\n"
                  "# TYPE process_open_fds gauge\n"
                  "process_open_fds %d\n"
                  "# HELP process_start_time_seconds Start time since the Unix epoch.\n"
                  "# TYPE process_start_time_seconds gauge\n"
                  "process_start_time_seconds %.2f\n",
                  (double)(utime + stime) / ticks, (unsigned long long)sw_process_rss_bytes(),
                  open_fds(), boot + (double)start / ticks);
}
