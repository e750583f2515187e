/* Child processes: each leads its own session and process group, its stdout and stderr are
 * split into bounded lines, and stopping it reaches every process of the group.
 *
 * Lifetime. Three timers and the process handle stay open until sw_proc_free, so the memory
 * is always released from a close callback, never from inside a callback of ours that is
 * still running (on_line and on_exit may call sw_proc_free). Each pipe is closed as soon
 * as it reaches EOF. A process handle is closed only after the child was reaped: libuv
 * stops waiting for a closed handle's pid, which would leave a zombie. */
#include "slipway/proc.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/utf8.h"

/* After the leader exits, how long the rest of its group may keep our pipes open. */
#define DRAIN_MS         2000
#define DEFAULT_GRACE_MS 5000

typedef struct {
    uv_pipe_t pipe;
    sw_proc_t *proc;
    int id;     /* SW_PROC_STDOUT or SW_PROC_STDERR */
    bool eof;   /* nothing more will be read: EOF, a read error, or the drain bound */
    bool split; /* the last line was cut at SW_PROC_LINE_MAX: a newline right now ends nothing */
    size_t len; /* bytes of the unfinished line in buf; always < SW_PROC_LINE_MAX between reads */
    char buf[SW_PROC_LINE_MAX];
} stream_t;

struct sw_proc {
    uv_process_t process;
    uv_timer_t timeout_timer;
    uv_timer_t kill_timer;
    uv_timer_t drain_timer;
    stream_t out;
    stream_t err;
    sw_proc_line_cb on_line;
    sw_proc_exit_cb on_exit;
    void *payload;
    uint32_t kill_grace_ms;
    pid_t pid;
    int64_t exit_status;
    int term_signal;
    int open_handles; /* initialised and not yet through their close callback */
    bool spawned;     /* uv_spawn succeeded: there is a child to reap */
    bool exited;      /* the leader was reaped: its pid may no longer be signalled alone */
    bool stopping;    /* sw_proc_stop or the timeout: no member of the group may outlive it */
    bool timed_out;
    bool reported; /* on_exit was called */
    bool freeing;  /* sw_proc_free was called: no callback of the caller runs any more */
    bool paused;   /* the caller cannot take more lines now: the pipes are not read */
};

static void on_close(uv_handle_t *h)
{
    /* Handles of several types share this callback, so it finds the proc through data. */
    sw_proc_t *p = h->data;
    if (--p->open_handles == 0 && p->freeing)
        free(p);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_close);
}

static void kill_group(sw_proc_t *p, int signum)
{
    /* ESRCH only means the group is already gone. */
    uv_kill(-p->pid, signum);
}

static void emit(stream_t *s, const char *line, size_t len)
{
    sw_proc_t *p = s->proc;
    if (p->on_line && !p->freeing)
        p->on_line(p, s->id, line, len, p->payload);
}

/* A line ended by '\n' (not included in len). */
static void end_line(stream_t *s, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    bool after_split = s->split;
    s->split = false;
    /* The newline of a line that was exactly cut at the limit: already delivered. */
    if (len == 0 && after_split)
        return;
    emit(s, line, len);
}

/* The buffer is full and holds no newline: deliver it as one piece of a longer line. */
static void cut_line(stream_t *s)
{
    /* A UTF-8 character the cut would split goes whole into the next piece. */
    size_t n = sw_utf8_cut(s->buf, SW_PROC_LINE_MAX);
    /* Keep a final '\r' back: if '\n' follows, it is a CRLF and must not reach the line. */
    if (s->buf[n - 1] == '\r')
        n--;
    emit(s, s->buf, n);
    memmove(s->buf, s->buf + n, SW_PROC_LINE_MAX - n);
    s->len = SW_PROC_LINE_MAX - n;
    s->split = true;
}

/* nread new bytes were read into buf + len. */
static void take_bytes(stream_t *s, size_t nread)
{
    sw_proc_t *p = s->proc;
    size_t end = s->len + nread;
    size_t start = 0;
    size_t scan = s->len; /* the unfinished line before it holds no newline */
    const char *nl;

    while (!p->freeing && (nl = memchr(s->buf + scan, '\n', end - scan)) != NULL) {
        size_t stop = (size_t)(nl - s->buf);
        end_line(s, s->buf + start, stop - start);
        start = scan = stop + 1;
    }
    if (p->freeing)
        return;
    s->len = end - start;
    if (start && s->len)
        memmove(s->buf, s->buf + start, s->len);
    if (s->len == SW_PROC_LINE_MAX)
        cut_line(s);
}

static void maybe_report(sw_proc_t *p)
{
    if (p->reported || p->freeing || !p->exited || !p->out.eof || !p->err.eof)
        return;
    p->reported = true;
    uv_timer_stop(&p->drain_timer);
    p->on_exit(p, p->exit_status, p->term_signal, p->timed_out, p->payload);
}

/* No more bytes will come: close the pipe and deliver what is left as the last line. */
static void end_stream(stream_t *s)
{
    if (s->eof)
        return;
    s->eof = true;
    close_handle((uv_handle_t *)&s->pipe);
    size_t len = s->len;
    s->len = 0;
    if (len && s->buf[len - 1] == '\r')
        len--;
    if (len)
        emit(s, s->buf, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    stream_t *s = sw_container_of((uv_pipe_t *)h, stream_t, pipe);
    /* Read straight behind the unfinished line: the buffer is all the memory a stream gets. */
    buf->base = s->buf + s->len;
    buf->len = SW_PROC_LINE_MAX - s->len;
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    stream_t *s = sw_container_of((uv_pipe_t *)h, stream_t, pipe);
    sw_proc_t *p = s->proc;
    (void)buf;
    if (nread > 0) {
        take_bytes(s, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    /* UV_EOF, or an error after which the pipe cannot be read either. */
    end_stream(s);
    maybe_report(p);
}

static void on_drain(uv_timer_t *t)
{
    sw_proc_t *p = sw_container_of(t, sw_proc_t, drain_timer);
    end_stream(&p->out);
    end_stream(&p->err);
    maybe_report(p);
}

static void on_kill(uv_timer_t *t)
{
    sw_proc_t *p = sw_container_of(t, sw_proc_t, kill_timer);
    if (!p->exited)
        kill_group(p, SIGKILL);
}

static void on_timeout(uv_timer_t *t)
{
    sw_proc_t *p = sw_container_of(t, sw_proc_t, timeout_timer);
    p->timed_out = true;
    sw_proc_stop(p, p->kill_grace_ms);
}

static void on_process_exit(uv_process_t *h, int64_t exit_status, int term_signal)
{
    sw_proc_t *p = sw_container_of(h, sw_proc_t, process);
    p->exited = true;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
    if (p->freeing) {
        close_handle((uv_handle_t *)&p->process);
        return;
    }
    uv_timer_stop(&p->timeout_timer);
    uv_timer_stop(&p->kill_timer);
    /* Members of the group can outlive their leader (a shell's background jobs, a member
     * that ignores SIGTERM). A stopped process leaves none behind. The group id cannot be
     * reused while any member lives, so this reaches only them. */
    if (p->stopping)
        kill_group(p, SIGKILL);
    /* A grandchild may hold the pipes open; bound the wait for its output (not while the
     * caller has paused reading: that output is waited for, not abandoned). */
    if ((!p->out.eof || !p->err.eof) && !p->paused)
        uv_timer_start(&p->drain_timer, on_drain, DRAIN_MS, 0);
    maybe_report(p);
}

int sw_proc_spawn(sw_proc_t **out, uv_loop_t *loop, const sw_proc_opts_t *opts)
{
    /* libuv passes the daemon's environment on when env is NULL; an empty one is meant. */
    static char *empty_env[] = {NULL};
    int r;

    if (!out || !loop || !opts || !opts->argv || !opts->argv[0] || !opts->on_exit)
        return -EINVAL;

    sw_proc_t *p = sw_calloc(1, sizeof(*p));
    p->on_line = opts->on_line;
    p->on_exit = opts->on_exit;
    p->payload = opts->payload;
    p->kill_grace_ms = opts->kill_grace_ms ? opts->kill_grace_ms : DEFAULT_GRACE_MS;
    p->out.proc = p->err.proc = p;
    p->out.id = SW_PROC_STDOUT;
    p->err.id = SW_PROC_STDERR;

    uv_handle_t *handles[] = {
        (uv_handle_t *)&p->timeout_timer, (uv_handle_t *)&p->kill_timer,
        (uv_handle_t *)&p->drain_timer,   (uv_handle_t *)&p->out.pipe,
        (uv_handle_t *)&p->err.pipe,      (uv_handle_t *)&p->process,
    };
    uv_timer_init(loop, &p->timeout_timer);
    uv_timer_init(loop, &p->kill_timer);
    uv_timer_init(loop, &p->drain_timer);
    uv_pipe_init(loop, &p->out.pipe, 0);
    uv_pipe_init(loop, &p->err.pipe, 0);

    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out.pipe},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err.pipe},
    };
    uv_process_options_t po = {
        .exit_cb = on_process_exit,
        .file = opts->file ? opts->file : opts->argv[0],
        .args = opts->argv,
        .env = opts->env ? opts->env : empty_env,
        .cwd = opts->cwd,
        /* setsid(): the child leads a new session and process group, so -pid reaches all
         * it starts and nothing of the daemon's terminal reaches it. */
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    /* uv_spawn initialises the process handle even when it fails. */
    r = uv_spawn(loop, &p->process, &po);
    for (size_t i = 0; i < SW_ARRAY_SIZE(handles); i++)
        handles[i]->data = p;
    p->open_handles = (int)SW_ARRAY_SIZE(handles);
    if (r < 0) {
        /* Nothing runs (a failed exec was already reaped by uv_spawn): just release. */
        p->freeing = true;
        for (size_t i = 0; i < SW_ARRAY_SIZE(handles); i++)
            close_handle(handles[i]);
        goto out;
    }
    p->spawned = true;
    p->pid = p->process.pid;

    r = uv_read_start((uv_stream_t *)&p->out.pipe, on_alloc, on_read);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&p->err.pipe, on_alloc, on_read);
    if (r < 0) {
        sw_proc_free(p);
        goto out;
    }
    if (opts->timeout_ms)
        uv_timer_start(&p->timeout_timer, on_timeout, opts->timeout_ms, 0);
    *out = p;
out:
    return r;
}

pid_t sw_proc_pid(const sw_proc_t *p)
{
    return p->pid;
}

void sw_proc_signal(sw_proc_t *p, int signum)
{
    /* Once the leader is reaped its pid may be reused: only the exit path signals then. */
    if (!p || !p->spawned || p->exited || p->freeing)
        return;
    kill_group(p, signum);
}

void sw_proc_stop(sw_proc_t *p, uint32_t grace_ms)
{
    if (!p || !p->spawned || p->exited || p->freeing)
        return;
    p->stopping = true;
    if (grace_ms == 0) {
        kill_group(p, SIGKILL);
        return;
    }
    kill_group(p, SIGTERM);
    /* A stopped (SIGSTOP) member would otherwise hold SIGTERM until the SIGKILL. */
    kill_group(p, SIGCONT);
    /* A second stop may shorten the grace, never extend it. */
    if (!uv_is_active((uv_handle_t *)&p->kill_timer) ||
        uv_timer_get_due_in(&p->kill_timer) > grace_ms)
        uv_timer_start(&p->kill_timer, on_kill, grace_ms, 0);
}

void sw_proc_free(sw_proc_t *p)
{
    if (!p || p->freeing)
        return;
    /* Until on_exit the group may still run (the leader, or members holding the pipes). */
    if (p->spawned && !p->reported)
        kill_group(p, SIGKILL);
    p->freeing = true;
    close_handle((uv_handle_t *)&p->timeout_timer);
    close_handle((uv_handle_t *)&p->kill_timer);
    close_handle((uv_handle_t *)&p->drain_timer);
    close_handle((uv_handle_t *)&p->out.pipe);
    close_handle((uv_handle_t *)&p->err.pipe);
    /* A live child is reaped first (SIGKILL makes that prompt); on_process_exit closes it. */
    if (p->exited || !p->spawned)
        close_handle((uv_handle_t *)&p->process);
}

void sw_proc_pause(sw_proc_t *p)
{
    if (p->paused || p->freeing)
        return;
    p->paused = true;
    if (!p->out.eof)
        uv_read_stop((uv_stream_t *)&p->out.pipe);
    if (!p->err.eof)
        uv_read_stop((uv_stream_t *)&p->err.pipe);
    uv_timer_stop(&p->drain_timer);
}

void sw_proc_resume(sw_proc_t *p)
{
    if (!p->paused || p->freeing)
        return;
    p->paused = false;
    if (!p->out.eof)
        uv_read_start((uv_stream_t *)&p->out.pipe, on_alloc, on_read);
    if (!p->err.eof)
        uv_read_start((uv_stream_t *)&p->err.pipe, on_alloc, on_read);
    if (p->exited && (!p->out.eof || !p->err.eof))
        uv_timer_start(&p->drain_timer, on_drain, DRAIN_MS, 0);
}
