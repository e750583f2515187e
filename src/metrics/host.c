/* Host statistics from /proc/stat, /proc/loadavg, /proc/meminfo, /proc/net/dev and statvfs. */
#include "slipway/host.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define RATE_MIN_MS 1000

static bool read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t n = 0;
    for (ssize_t r; n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0;)
        n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    return n > 0;
}

static void read_cpu(unsigned long long *busy, unsigned long long *total)
{
    char buf[512];
    unsigned long long v[8] = {0};
    if (!read_file("/proc/stat", buf, sizeof(buf)) ||
        sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) < 4)
        return;
    *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    *busy = *total - v[3] - v[4]; /* less idle and iowait */
}

static void read_net(unsigned long long *rx_out, unsigned long long *tx_out)
{
    static char buf[65536]; /* the loop thread only; hosts with many interfaces have long files */
    unsigned long long rx_sum = 0, tx_sum = 0;
    if (!read_file("/proc/net/dev", buf, sizeof(buf)))
        return;
    for (char *line = strchr(buf, '\n'); line; line = strchr(line + 1, '\n')) {
        char *colon = strchr(line, ':');
        char name[32];
        unsigned long long rx, tx, skip;
        if (!colon || sscanf(line + 1, " %31[^:]:", name) != 1 || strcmp(name, "lo") == 0)
            continue;
        if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &rx, &skip, &skip,
                   &skip, &skip, &skip, &skip, &skip, &tx) == 9) {
            rx_sum += rx;
            tx_sum += tx;
        }
    }
    *rx_out = rx_sum;
    *tx_out = tx_sum;
}

static uint64_t meminfo(const char *buf, const char *key)
{
    const char *p = strstr(buf, key);
    return p ? strtoull(p + strlen(key), NULL, 10) * 1024ull : 0;
}

void sw_host_sample(sw_host_sampler_t *s, uint64_t now_ms, const char *disk_path,
                    sw_host_stats_t *out)
{
    char mem[4096] = "", load[128] = "";
    struct statvfs vfs;

    memset(out, 0, sizeof(*out));
    read_file("/proc/meminfo", mem, sizeof(mem));
    read_file("/proc/loadavg", load, sizeof(load));
    sscanf(load, "%lf %lf %lf", &out->load[0], &out->load[1], &out->load[2]);
    out->memory_total_bytes = meminfo(mem, "MemTotal:");
    out->memory_available_bytes = meminfo(mem, "MemAvailable:");
    if (disk_path && statvfs(disk_path, &vfs) == 0) {
        out->disk_total_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
        out->disk_free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    }

    if (s->have && now_ms - s->at_ms < RATE_MIN_MS) {
        out->cpu_percent = s->rates.cpu_percent;
        out->rx_bytes_per_s = s->rates.rx_bytes_per_s;
        out->tx_bytes_per_s = s->rates.tx_bytes_per_s;
        return;
    }
    unsigned long long busy = 0, total = 0, rx = 0, tx = 0;
    read_cpu(&busy, &total);
    read_net(&rx, &tx);
    if (s->have && total > s->cpu_total && busy >= s->cpu_busy) {
        double secs = (double)(now_ms - s->at_ms) / 1000.0;
        out->cpu_percent = 100.0 * (double)(busy - s->cpu_busy) / (double)(total - s->cpu_total);
        /* Interfaces come and go (containers): a sum that fell is no rate. */
        if (rx >= s->rx && tx >= s->tx) {
            out->rx_bytes_per_s = (double)(rx - s->rx) / secs;
            out->tx_bytes_per_s = (double)(tx - s->tx) / secs;
        }
    }
    s->cpu_busy = busy;
    s->cpu_total = total;
    s->rx = rx;
    s->tx = tx;
    s->at_ms = now_ms;
    s->have = true;
    s->rates = *out;
}

void sw_host_stats_json_members(const sw_host_stats_t *st, const char *disk_path, sw_buf_t *out)
{
    sw_buf_printf(out,
                  "\"cpu_percent\":%.1f,\"memory\":{\"total_bytes\":%llu,"
                  "\"available_bytes\":%llu},\"load\":[%.2f,%.2f,%.2f],\"disk\":{\"path\":\"",
                  st->cpu_percent, (unsigned long long)st->memory_total_bytes,
                  (unsigned long long)st->memory_available_bytes, st->load[0], st->load[1],
                  st->load[2]);
    sw_buf_append_json_str(out, disk_path, strlen(disk_path));
    sw_buf_printf(out,
                  "\",\"total_bytes\":%llu,\"free_bytes\":%llu},\"network\":{"
                  "\"rx_bytes_per_s\":%.0f,\"tx_bytes_per_s\":%.0f}",
                  (unsigned long long)st->disk_total_bytes, (unsigned long long)st->disk_free_bytes,
                  st->rx_bytes_per_s, st->tx_bytes_per_s);
}
