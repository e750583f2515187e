/* resources as the API stores them (Kubernetes quantities) in the units runtimes enforce:
 * cpu "500m", "2", "0.5" in thousandths of a CPU; memory "512Mi", "1Gi", "100M", "1048576" in
 * bytes. */
#include "slipway/runtime.h"

#include <errno.h>
#include <string.h>

int sw_runtime_cpu_milli(const char *s, uint64_t *out)
{
    uint64_t whole = 0, frac = 0, scale = 1000;
    size_t i = 0, digits = 0;
    if (!s || !*s)
        return -ENOENT;
    for (; s[i] >= '0' && s[i] <= '9' && digits < 9; i++, digits++)
        whole = whole * 10 + (uint64_t)(s[i] - '0');
    if (!digits)
        return -EINVAL;
    if (s[i] == 'm' && !s[i + 1]) {
        *out = whole;
        return whole ? 0 : -EINVAL;
    }
    if (s[i] == '.') {
        for (i++; s[i] >= '0' && s[i] <= '9' && scale > 1; i++) {
            scale /= 10;
            frac += (uint64_t)(s[i] - '0') * scale;
        }
    }
    if (s[i])
        return -EINVAL;
    *out = whole * 1000 + frac;
    return *out ? 0 : -EINVAL;
}

int sw_runtime_memory_bytes(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {
        {"", 1},
        {"k", 1000},
        {"K", 1000},
        {"M", 1000000},
        {"G", 1000000000},
        {"T", 1000000000000ull},
        {"Ki", 1ull << 10},
        {"Mi", 1ull << 20},
        {"Gi", 1ull << 30},
        {"Ti", 1ull << 40},
    };
    uint64_t n = 0;
    size_t i = 0;
    if (!s || !*s)
        return -ENOENT;
    for (; s[i] >= '0' && s[i] <= '9' && i < 15; i++)
        n = n * 10 + (uint64_t)(s[i] - '0');
    if (!i || !n)
        return -EINVAL;
    for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
        if (strcmp(s + i, units[k].unit) == 0) {
            if (n > UINT64_MAX / units[k].mul)
                return -ERANGE;
            *out = n * units[k].mul;
            return 0;
        }
    }
    return -EINVAL;
}
