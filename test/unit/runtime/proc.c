/* Tests for src/runtime/proc.c: real children through /bin/sh on a real loop.
 *
 * The test process makes itself a child subreaper, so members of a child's group that
 * outlive their leader become its children: it reaps them itself and then knows for sure
 * whether any member of a group is left (an init that reaps slowly cannot blur that). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/common.h"
#include "slipway/proc.h"

typedef struct {
    int stream;
    size_t len;
    char *text; /* NUL-terminated copy */
} line_t;

typedef struct run run_t;

struct run {
    uv_loop_t loop;
    sw_proc_t *p;
    pid_t pgid;
    uint64_t t0_ms;
    /* what arrived */
    line_t *lines;
    size_t nlines, cap;
    bool keep_lines;     /* false: only count (and check order through on_line_hook) */
    size_t count[3];     /* lines per stream id */
    long next_number[3]; /* for numbered output: the value the next line must carry */
    bool numbers_ok;
    size_t longest;
    bool exited;
    int exit_calls;
    int64_t status;
    int term_signal;
    bool timed_out;
    uint64_t exit_ms; /* since spawn */
    uint64_t hook_ms; /* when on_line_hook acted, since spawn */
    /* on the first line equal to hook_line: */
    const char *hook_line;
    enum { HOOK_NONE, HOOK_STOP, HOOK_SIGNAL, HOOK_FREE } hook;
    uint32_t hook_arg;
    bool hooked;
};

static char *path_env[] = {"PATH=/usr/bin:/bin", NULL};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    run_t *r = payload;
    assert_ptr_equal(p, r->p);
    assert_true(stream == SW_PROC_STDOUT || stream == SW_PROC_STDERR);
    assert_true(len <= SW_PROC_LINE_MAX);
    r->count[stream]++;
    r->longest = SW_MAX(r->longest, len);
    if (r->keep_lines) {
        if (r->nlines == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 16;
            r->lines = sw_realloc(r->lines, r->cap * sizeof(*r->lines));
        }
        r->lines[r->nlines++] = (line_t){stream, len, sw_strndup(line, len)};
    } else {
        char tmp[32];
        long want = r->next_number[stream]++;
        int n = snprintf(tmp, sizeof(tmp), "%ld", want);
        if ((size_t)n != len || memcmp(tmp, line, len) != 0)
            r->numbers_ok = false;
    }
    if (r->hook_line && !r->hooked && len == strlen(r->hook_line) &&
        memcmp(line, r->hook_line, len) == 0) {
        r->hooked = true;
        r->hook_ms = now_ms() - r->t0_ms;
        if (r->hook == HOOK_STOP)
            sw_proc_stop(p, r->hook_arg);
        else if (r->hook == HOOK_SIGNAL)
            sw_proc_signal(p, (int)r->hook_arg);
        else if (r->hook == HOOK_FREE)
            sw_proc_free(p);
    }
}

static void on_exit_cb(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                       void *payload)
{
    run_t *r = payload;
    assert_ptr_equal(p, r->p);
    r->exited = true;
    r->exit_calls++;
    r->status = exit_status;
    r->term_signal = term_signal;
    r->timed_out = timed_out;
    r->exit_ms = now_ms() - r->t0_ms;
    sw_proc_free(p);
    /* The proc stays valid until on_exit returns (ASan would see a use after free). */
    assert_int_equal(sw_proc_pid(p), r->pgid);
    sw_proc_signal(p, SIGTERM);
    sw_proc_stop(p, 10);
}

static void run_init(run_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(uv_loop_init(&r->loop), 0);
    r->keep_lines = true;
    r->numbers_ok = true;
    for (int i = 0; i < 3; i++)
        r->next_number[i] = 1;
}

static int run_spawn(run_t *r, sw_proc_opts_t *o)
{
    if (!o->on_exit)
        o->on_exit = on_exit_cb;
    if (!o->on_line)
        o->on_line = on_line;
    o->payload = r;
    r->t0_ms = now_ms();
    int rc = sw_proc_spawn(&r->p, &r->loop, o);
    if (rc == 0)
        r->pgid = sw_proc_pid(r->p);
    return rc;
}

static void run_sh(run_t *r, const char *script, uint32_t timeout_ms, uint32_t grace_ms)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    sw_proc_opts_t o = {
        .argv = argv, .env = path_env, .timeout_ms = timeout_ms, .kill_grace_ms = grace_ms};
    assert_int_equal(run_spawn(r, &o), 0);
    assert_true(r->pgid > 0);
    assert_int_equal(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
}

static void count_handle(uv_handle_t *h, void *arg)
{
    (void)h;
    (*(int *)arg)++;
}

/* Every test ends here: no handle left, the loop closes. */
static void run_done(run_t *r)
{
    int open = 0;
    uv_walk(&r->loop, count_handle, &open);
    assert_int_equal(open, 0);
    assert_int_equal(uv_loop_alive(&r->loop), 0);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    for (size_t i = 0; i < r->nlines; i++)
        free(r->lines[i].text);
    free(r->lines);
}

/* Reaps what the group left to us and waits (bounded) until no member of it exists. */
static bool group_gone(pid_t pgid)
{
    for (int i = 0; i < 500; i++) {
        while (waitpid(-pgid, NULL, WNOHANG) > 0)
            ;
        if (kill(-pgid, 0) == -1 && errno == ESRCH)
            return true;
        usleep(10000);
    }
    return false;
}

/* The lines of one stream, in order, joined with '|'. */
static char *joined(const run_t *r, int stream)
{
    size_t n = 1;
    for (size_t i = 0; i < r->nlines; i++)
        n += r->lines[i].len + 1;
    char *s = sw_calloc(1, n);
    char *w = s;
    for (size_t i = 0; i < r->nlines; i++) {
        if (r->lines[i].stream != stream)
            continue;
        if (w != s)
            *w++ = '|';
        memcpy(w, r->lines[i].text, r->lines[i].len);
        w += r->lines[i].len;
    }
    *w = '\0';
    return s;
}

static void assert_stream(const run_t *r, int stream, const char *want)
{
    char *got = joined(r, stream);
    assert_string_equal(got, want);
    free(got);
}

static void test_lines_per_stream_in_order(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo o3", 0, 0);
    assert_true(r.exited);
    assert_int_equal(r.exit_calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.term_signal, 0);
    assert_false(r.timed_out);
    assert_stream(&r, SW_PROC_STDOUT, "o1|o2|o3");
    assert_stream(&r, SW_PROC_STDERR, "e1|e2");
    run_done(&r);
}

static void test_crlf_stripped_lone_cr_kept(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "printf 'a\\r\\nb\\r\\n\\r\\nmid\\rdle\\nlast\\r\\n'", 0, 0);
    assert_int_equal(r.nlines, 5);
    assert_string_equal(r.lines[0].text, "a");
    assert_string_equal(r.lines[1].text, "b");
    assert_int_equal(r.lines[2].len, 0);
    assert_string_equal(r.lines[3].text, "mid\rdle");
    assert_string_equal(r.lines[4].text, "last");
    run_done(&r);
}

static void test_long_line_in_max_chunks(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after", 0, 0);
    assert_int_equal(r.nlines, 4);
    assert_int_equal(r.lines[0].len, 16384);
    assert_int_equal(r.lines[1].len, 16384);
    assert_int_equal(r.lines[2].len, 7232);
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < r.lines[i].len; j++)
            assert_int_equal(r.lines[i].text[j], 'x');
    assert_string_equal(r.lines[3].text, "after");
    assert_int_equal(r.longest, SW_PROC_LINE_MAX);
    run_done(&r);
}

static void test_line_of_exactly_max_is_one_line(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    /* Exactly the limit, then exactly twice it, then the limit minus one plus a CRLF that
     * straddles the cut: no empty line and no '\r' may appear. */
    run_sh(&r,
           "head -c 16384 /dev/zero | tr '\\0' a; echo;"
           "head -c 32768 /dev/zero | tr '\\0' b; echo;"
           "head -c 16383 /dev/zero | tr '\\0' c; printf '\\r\\n'; echo end",
           0, 0);
    assert_int_equal(r.nlines, 5);
    assert_int_equal(r.lines[0].len, 16384);
    assert_int_equal(r.lines[1].len, 16384);
    assert_int_equal(r.lines[2].len, 16384);
    assert_int_equal(r.lines[2].text[0], 'b');
    assert_int_equal(r.lines[3].len, 16383);
    assert_null(memchr(r.lines[3].text, '\r', r.lines[3].len));
    assert_string_equal(r.lines[4].text, "end");
    run_done(&r);
}

static void test_long_line_cut_between_utf8_characters(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    /* The limit falls inside a 3-byte and then a 4-byte character: each goes whole into the
     * next piece, so no piece ends or starts with part of one. */
    run_sh(&r,
           "head -c 16383 /dev/zero | tr '\\0' a; printf '\\342\\202\\254!\\n';"
           "head -c 16382 /dev/zero | tr '\\0' c; printf '\\360\\237\\232\\200?\\n'",
           0, 0);
    assert_int_equal(r.nlines, 4);
    assert_int_equal(r.lines[0].len, 16383);
    assert_string_equal(r.lines[1].text, "\xe2\x82\xac!");
    assert_int_equal(r.lines[2].len, 16382);
    assert_int_equal(r.lines[2].text[16381], 'c');
    assert_string_equal(r.lines[3].text, "\xf0\x9f\x9a\x80?");
    run_done(&r);
}

static void test_partial_last_line_flushed(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "printf 'one\\ntwo'; printf 'err' >&2", 0, 0);
    assert_stream(&r, SW_PROC_STDOUT, "one|two");
    assert_stream(&r, SW_PROC_STDERR, "err");
    run_done(&r);
}

static void test_exit_code(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "echo bye; exit 3", 0, 0);
    assert_true(r.exited);
    assert_int_equal(r.status, 3);
    assert_int_equal(r.term_signal, 0);
    assert_false(r.timed_out);
    assert_stream(&r, SW_PROC_STDOUT, "bye");
    run_done(&r);
}

static void test_killed_by_signal(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "kill -KILL $$", 0, 0);
    assert_true(r.exited);
    assert_int_equal(r.term_signal, SIGKILL);
    assert_false(r.timed_out);
    run_done(&r);
}

static void test_signal_reaches_new_session_group(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "echo ready; sleep 30", NULL};
    sw_proc_opts_t o = {.argv = argv, .env = path_env};
    r.hook_line = "ready";
    r.hook = HOOK_SIGNAL;
    r.hook_arg = SIGUSR1;
    assert_int_equal(run_spawn(&r, &o), 0);
    /* Leader of a new session and of its own process group. */
    assert_int_equal(getsid(r.pgid), r.pgid);
    assert_int_equal(getpgid(r.pgid), r.pgid);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_true(r.hooked);
    assert_int_equal(r.term_signal, SIGUSR1);
    assert_false(r.timed_out);
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_timeout_kills_whole_group(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    run_sh(&r, "sleep 30 & sleep 30; wait", 300, 5000);
    assert_true(r.exited);
    assert_true(r.timed_out);
    assert_int_equal(r.term_signal, SIGTERM);
    assert_true(r.exit_ms >= 250);
    assert_true(r.exit_ms < 4000);
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_stop_leaves_no_member_that_ignores_term(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    /* The leader dies of SIGTERM; a background member ignores it and holds the pipes. The
     * stop must SIGKILL the group when the leader exits rather than wait out the grace. */
    r.hook_line = "ready";
    r.hook = HOOK_STOP;
    r.hook_arg = 20000;
    run_sh(&r, "sh -c 'trap \"\" TERM; echo ready; sleep 30' & sleep 30; wait", 0, 0);
    assert_true(r.hooked);
    assert_true(r.exited);
    assert_false(r.timed_out);
    assert_int_equal(r.term_signal, SIGTERM);
    assert_true(r.exit_ms < 10000);
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_stop_escalates_to_sigkill(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    r.hook_line = "ready";
    r.hook = HOOK_STOP;
    r.hook_arg = 300;
    run_sh(&r, "trap '' TERM; echo ready; sleep 30", 0, 0);
    assert_true(r.hooked);
    assert_int_equal(r.term_signal, SIGKILL);
    assert_false(r.timed_out);
    assert_true(r.exit_ms - r.hook_ms >= 250);
    assert_true(r.exit_ms - r.hook_ms < 5000);
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_env_exactly_as_given(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    char *argv[] = {"/usr/bin/env", NULL};
    char *env[] = {"A=1", "B=two words", NULL};
    sw_proc_opts_t o = {.argv = argv, .env = env};
    assert_int_equal(run_spawn(&r, &o), 0);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.status, 0);
    assert_stream(&r, SW_PROC_STDOUT, "A=1|B=two words");
    assert_stream(&r, SW_PROC_STDERR, "");
    run_done(&r);

    /* No env at all is an empty environment, not the daemon's. */
    run_init(&r);
    sw_proc_opts_t o2 = {.argv = argv};
    assert_int_equal(run_spawn(&r, &o2), 0);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nlines, 0);
    run_done(&r);
}

static void test_argv_verbatim_and_stdin_is_null(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    char *argv[] = {"sh", "-c", "printf '%s|' \"$@\"; echo; cat; echo rc=$?", "sh", "a b", "$HOME",
                    ";",  NULL};
    sw_proc_opts_t o = {.file = "/bin/sh", .argv = argv, .env = path_env};
    assert_int_equal(run_spawn(&r, &o), 0);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    /* cat reads /dev/null: EOF at once, nothing printed. */
    assert_stream(&r, SW_PROC_STDOUT, "a b|$HOME|;||rc=0");
    run_done(&r);
}

static void test_cwd_honoured(void **state)
{
    (void)state;
    char dir[] = "/tmp/sw-proc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char real[PATH_MAX];
    assert_non_null(realpath(dir, real));
    run_t r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "pwd -P", NULL};
    sw_proc_opts_t o = {.argv = argv, .env = path_env, .cwd = dir};
    assert_int_equal(run_spawn(&r, &o), 0);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_stream(&r, SW_PROC_STDOUT, real);
    run_done(&r);
    assert_int_equal(rmdir(dir), 0);
}

static void test_many_lines_all_in_order(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    r.keep_lines = false;
    run_sh(&r, "seq 1 200000 & seq 1 100000 >&2; wait", 0, 0);
    assert_int_equal(r.status, 0);
    assert_true(r.numbers_ok);
    assert_int_equal(r.count[SW_PROC_STDOUT], 200000);
    assert_int_equal(r.count[SW_PROC_STDERR], 100000);
    run_done(&r);
}

static void test_no_line_callback(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "seq 1 50000; exit 7", NULL};
    sw_proc_opts_t o = {.argv = argv, .env = path_env, .on_line = NULL};
    r.t0_ms = now_ms();
    o.on_exit = on_exit_cb;
    o.payload = &r;
    assert_int_equal(sw_proc_spawn(&r.p, &r.loop, &o), 0);
    r.pgid = sw_proc_pid(r.p);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.status, 7);
    assert_int_equal(r.nlines, 0);
    run_done(&r);
}

static void test_grandchild_holding_pipes_is_bounded(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    /* The leader exits at once; a background sleep keeps stdout and stderr open. */
    run_sh(&r, "echo before; sleep 30 &", 0, 0);
    assert_true(r.exited);
    assert_int_equal(r.status, 0);
    assert_false(r.timed_out);
    assert_stream(&r, SW_PROC_STDOUT, "before");
    assert_true(r.exit_ms >= 1500);
    assert_true(r.exit_ms < 10000);
    /* Not stopped, so the grandchild was left alone: it is still there. */
    assert_int_equal(kill(-r.pgid, 0), 0);
    assert_int_equal(kill(-r.pgid, SIGKILL), 0);
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_free_while_running_from_line_callback(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    r.hook_line = "ready";
    r.hook = HOOK_FREE;
    run_sh(&r, "sleep 30 & echo ready; echo more; sleep 30", 0, 0);
    assert_true(r.hooked);
    assert_false(r.exited);
    assert_int_equal(r.exit_calls, 0);
    /* Nothing after the free reached the caller. */
    assert_stream(&r, SW_PROC_STDOUT, "ready");
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_free_right_after_spawn(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
    sw_proc_opts_t o = {.argv = argv, .env = path_env, .timeout_ms = 100000};
    assert_int_equal(run_spawn(&r, &o), 0);
    sw_proc_stop(r.p, 50000);
    sw_proc_free(r.p);
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.exit_calls, 0);
    assert_true(group_gone(r.pgid));
    run_done(&r);
}

static void test_spawn_failures(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    char *argv[] = {"/nonexistent/program", NULL};
    sw_proc_opts_t o = {.argv = argv, .env = path_env};
    r.p = NULL;
    assert_int_equal(run_spawn(&r, &o), -ENOENT);
    assert_null(r.p);
    o.cwd = "/nonexistent/dir";
    argv[0] = "/bin/true";
    assert_int_equal(run_spawn(&r, &o), -ENOENT);
    assert_null(r.p);
    char *empty[] = {NULL};
    sw_proc_opts_t bad = {.argv = empty, .on_exit = on_exit_cb};
    assert_int_equal(sw_proc_spawn(&r.p, &r.loop, &bad), -EINVAL);
    sw_proc_opts_t no_exit = {.argv = argv};
    assert_int_equal(sw_proc_spawn(&r.p, &r.loop, &no_exit), -EINVAL);
    /* The failed spawns' handles close and their memory goes on the next turn. */
    assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.exit_calls, 0);
    run_done(&r);
}

int main(void)
{
    /* Orphans of a child's group come to us, so group_gone can reap and count them. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_per_stream_in_order),
        cmocka_unit_test(test_crlf_stripped_lone_cr_kept),
        cmocka_unit_test(test_long_line_in_max_chunks),
        cmocka_unit_test(test_line_of_exactly_max_is_one_line),
        cmocka_unit_test(test_long_line_cut_between_utf8_characters),
        cmocka_unit_test(test_partial_last_line_flushed),
        cmocka_unit_test(test_exit_code),
        cmocka_unit_test(test_killed_by_signal),
        cmocka_unit_test(test_signal_reaches_new_session_group),
        cmocka_unit_test(test_timeout_kills_whole_group),
        cmocka_unit_test(test_stop_leaves_no_member_that_ignores_term),
        cmocka_unit_test(test_stop_escalates_to_sigkill),
        cmocka_unit_test(test_env_exactly_as_given),
        cmocka_unit_test(test_argv_verbatim_and_stdin_is_null),
        cmocka_unit_test(test_cwd_honoured),
        cmocka_unit_test(test_many_lines_all_in_order),
        cmocka_unit_test(test_no_line_callback),
        cmocka_unit_test(test_grandchild_holding_pipes_is_bounded),
        cmocka_unit_test(test_free_while_running_from_line_callback),
        cmocka_unit_test(test_free_right_after_spawn),
        cmocka_unit_test(test_spawn_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
