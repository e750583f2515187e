/* Following a container without a process of ours.
 *
 * Its output is read from the log file its CLI writes (podman's k8s-file driver, at a
 * path of ours), instead of a `logs -f` process per instance: that process cost ~40 MB each,
 * the file costs a descriptor.
 *
 * Each record is "<RFC 3339 time> <stdout|stderr> <F|P> <text>\n": F ends a line, P is a
 * piece of a longer one (conmon splits at its buffer size). Pieces are joined per stream up to
 * SW_PROC_LINE_MAX, like the process runtime's lines. When the file passes its max-size,
 * conmon writes a new one and renames it over the path: the old one is read to its end, then
 * the new one from its start. Reading happens when the directory watcher says the file changed
 * (container.c), never on a timer; a burst longer than READS_AT_ONCE chunks is read on in
 * the loop's next turn, so one chatty app cannot hold the loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "container.h"
#include "slipway/utf8.h"

#define READ_CHUNK    (16u * 1024u)
#define RECORD_MAX    (SW_PROC_LINE_MAX + 128u) /* a record longer than this is cut */
#define READS_AT_ONCE 16u /* then the loop runs others; the next change reads on */

struct ctail {
    int fd;
    ino_t ino;
    char *path;
    ctail_line_cb cb;
    void *payload;
    sw_buf_t rec;     /* the unfinished record at the end of what was read */
    sw_buf_t line[2]; /* stdout, stderr: pieces (P) of a line not yet ended */
    bool skip;        /* the record being read was too long: the rest of it is dropped */
};

static void emit(ctail_t *t, int s, const char *text, size_t len, bool full)
{
    sw_buf_t *l = &t->line[s];
    const char *name = s ? "stderr" : "stdout";
    while (l->len + len > SW_PROC_LINE_MAX) {
        size_t room = SW_PROC_LINE_MAX - l->len;
        size_t cut = sw_utf8_cut(text, room);
        if (cut == 0 && l->len == 0)
            cut = room; /* not UTF-8 at all: cut where it must be */
        sw_buf_append(l, text, cut);
        t->cb(t->payload, name, l->base, l->len);
        l->len = 0;
        text += cut;
        len -= cut;
    }
    sw_buf_append(l, text, len);
    if (full) {
        t->cb(t->payload, name, l->base ? l->base : "", l->len);
        l->len = 0;
    }
}

/* One record without its newline. Anything not of the form is passed on whole as stdout:
 * shown is better than lost. */
static void record(ctail_t *t, const char *r, size_t n)
{
    const char *sp1 = memchr(r, ' ', n);
    if (sp1) {
        const char *s = sp1 + 1;
        size_t left = n - (size_t)(s - r);
        int stream = -1;
        if (left >= 8 && memcmp(s, "stdout ", 7) == 0)
            stream = 0;
        else if (left >= 8 && memcmp(s, "stderr ", 7) == 0)
            stream = 1;
        if (stream >= 0 && (s[7] == 'F' || s[7] == 'P') && s[8] == ' ') {
            emit(t, stream, s + 9, left - 9, s[7] == 'F');
            return;
        }
        if (stream >= 0 && left == 8 && (s[7] == 'F' || s[7] == 'P')) {
            emit(t, stream, "", 0, s[7] == 'F'); /* an empty line */
            return;
        }
    }
    emit(t, 0, r, n, true);
}

static void consume(ctail_t *t, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (!t->skip) {
            size_t room = RECORD_MAX - t->rec.len;
            sw_buf_append(&t->rec, data, take < room ? take : room);
            if (take > room)
                t->skip = true;
        }
        if (!nl)
            return;
        record(t, t->rec.base ? t->rec.base : "", t->rec.len);
        t->rec.len = 0;
        t->skip = false;
        data += take + 1;
        n -= take + 1;
    }
}

/* Reads fd to its end (or READS_AT_ONCE chunks): false when it is at its end. */
static bool drain(ctail_t *t)
{
    char buf[READ_CHUNK];
    for (unsigned i = 0; i < READS_AT_ONCE; i++) {
        ssize_t r = read(t->fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        consume(t, buf, (size_t)r);
    }
    return true;
}

static int open_at(ctail_t *t, bool at_end)
{
    int fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if (at_end && lseek(fd, 0, SEEK_END) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    t->fd = fd;
    t->ino = st.st_ino;
    return 0;
}

int ctail_open(ctail_t **out, const char *path, bool at_end, ctail_line_cb cb, void *payload)
{
    ctail_t *t = sw_calloc(1, sizeof(*t));
    t->path = sw_strdup(path);
    t->cb = cb;
    t->payload = payload;
    int rc = open_at(t, at_end);
    if (rc != 0) {
        free(t->path);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

bool ctail_read(ctail_t *t)
{
    if (drain(t))
        return true;
    /* At the end: a file written anew and renamed over the path takes over from here. A
     * truncated one (not what conmon does, but cheap to allow) is read again from its start. */
    struct stat st, cur;
    if (stat(t->path, &st) == 0 && st.st_ino != t->ino) {
        int old = t->fd;
        if (open_at(t, false) == 0) {
            close(old);
            t->rec.len = 0;
            t->skip = false;
            return drain(t);
        }
    } else if (fstat(t->fd, &cur) == 0 && lseek(t->fd, 0, SEEK_CUR) > cur.st_size) {
        lseek(t->fd, 0, SEEK_SET);
        return drain(t);
    }
    return false;
}

bool ctail_is(const ctail_t *t, const char *name)
{
    const char *base = strrchr(t->path, '/');
    return strcmp(base ? base + 1 : t->path, name) == 0;
}

void ctail_close(ctail_t *t)
{
    if (!t)
        return;
    for (int s = 0; s < 2; s++) {
        if (t->line[s].len)
            t->cb(t->payload, s ? "stderr" : "stdout", t->line[s].base, t->line[s].len);
        sw_buf_free(&t->line[s]);
    }
    sw_buf_free(&t->rec);
    close(t->fd);
    free(t->path);
    free(t);
}

/* ---- the end of the container's process ---- */

struct cpidwatch {
    uv_poll_t poll;
    int fd;
    void (*done)(void *payload);
    void *payload;
};

/* pid is the container's own process: its cgroup is named after the container (libpod-<id>,
 * docker-<id> or <id>, with either cgroup version). */
static bool pid_is_container(int pid, const char *cid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strlen(cid) >= 12 && strstr(buf, cid) != NULL;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    cpidwatch_t *w = h->data;
    (void)status;
    (void)events;
    uv_poll_stop(h);
    w->done(w->payload);
}

int cpidwatch_start(uv_loop_t *loop, int pid, const char *cid, void (*done)(void *payload),
                    void *payload, cpidwatch_t **out)
{
    /* A pidfd names the process it was opened on, whatever later has its number; checked
     * after opening, so a number already taken by another process is never watched. */
    int fd = pidfd_open(pid, 0);
    if (fd < 0)
        return -errno;
    if (!pid_is_container(pid, cid)) {
        close(fd);
        return kill(pid, 0) != 0 && errno == ESRCH ? -ESRCH : -EPERM;
    }
    cpidwatch_t *w = sw_calloc(1, sizeof(*w));
    w->fd = fd;
    w->done = done;
    w->payload = payload;
    int rc = uv_poll_init(loop, &w->poll, fd);
    if (rc != 0) {
        close(fd);
        free(w);
        return rc;
    }
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_readable);
    *out = w;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    cpidwatch_t *w = h->data;
    close(w->fd);
    free(w);
}

void cpidwatch_stop(cpidwatch_t *w)
{
    if (w)
        uv_close((uv_handle_t *)&w->poll, on_closed);
}
