/* Tests for src/runtime/container_watch.c: podman's k8s-file records read back as lines (whole
 * and partial, per stream, too long, malformed), a file renamed over the path read on from
 * its start, following from the end; and a pidfd watch on a real process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/cgroup.h"
#include "slipway/proc.h"
#include "src/runtime/container.h"

typedef struct {
    char stream[8][8];
    char *line[8];
    size_t len[8];
    int n;
} got_t;

static void on_line(void *payload, const char *stream, const char *line, size_t len)
{
    got_t *g = payload;
    assert_true(g->n < 8);
    snprintf(g->stream[g->n], sizeof(g->stream[0]), "%s", stream);
    g->line[g->n] = malloc(len + 1);
    memcpy(g->line[g->n], line, len);
    g->line[g->n][len] = '\0';
    g->len[g->n] = len;
    g->n++;
}

static void got_free(got_t *g)
{
    for (int i = 0; i < g->n; i++)
        free(g->line[i]);
    memset(g, 0, sizeof(*g));
}

static void append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static char dir[64];
static char path[96];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/unit-ctail.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/c.log", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    unlink(tmp);
    unlink(path);
    rmdir(dir);
    return 0;
}

#define TS "2026-12-05T21:25:30.379347568+00:00 "

static void test_records_become_lines(void **state)
{
    (void)state;
    got_t g = {0};
    ctail_t *t;
    append(path, TS "stdout F hello\n" TS "stdout P par"
                    "\n" TS "stderr F oops\n");
    assert_int_equal(ctail_open(&t, path, false, on_line, &g), 0);
    assert_true(ctail_is(t, "c.log"));
    assert_false(ctail_is(t, "d.log"));
    assert_false(ctail_read(t));
    /* the stderr line is whole; stdout's waits for its end */
    assert_int_equal(g.n, 2);
    assert_string_equal(g.stream[0], "stdout");
    assert_string_equal(g.line[0], "hello");
    assert_string_equal(g.stream[1], "stderr");
    assert_string_equal(g.line[1], "oops");
    /* half a record, then its rest; an empty line; something not a record at all */
    append(path, TS "stdout F tial");
    assert_false(ctail_read(t));
    assert_int_equal(g.n, 2);
    append(path, " end\n" TS "stdout F \n" TS "stdout F\nnot a record\n");
    assert_false(ctail_read(t));
    assert_int_equal(g.n, 6);
    assert_string_equal(g.line[2], "partial end");
    assert_string_equal(g.line[3], ""); /* as podman writes an empty line */
    assert_string_equal(g.line[4], "");
    assert_string_equal(g.stream[5], "stdout");
    assert_string_equal(g.line[5], "not a record");
    ctail_close(t);
    got_free(&g);
}

static void test_a_piece_left_at_close_is_passed_on(void **state)
{
    (void)state;
    got_t g = {0};
    ctail_t *t;
    append(path, TS "stderr P last words\n");
    assert_int_equal(ctail_open(&t, path, false, on_line, &g), 0);
    ctail_read(t);
    assert_int_equal(g.n, 0);
    ctail_close(t);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.stream[0], "stderr");
    assert_string_equal(g.line[0], "last words");
    got_free(&g);
}

static void test_long_lines_are_cut_at_the_line_max(void **state)
{
    (void)state;
    got_t g = {0};
    ctail_t *t;
    size_t n = SW_PROC_LINE_MAX + 100;
    char *rec = malloc(n + 64);
    int k = snprintf(rec, n + 64, TS "stdout F ");
    memset(rec + k, 'x', n);
    rec[k + n] = '\n';
    rec[k + n + 1] = '\0';
    append(path, rec);
    free(rec);
    assert_int_equal(ctail_open(&t, path, false, on_line, &g), 0);
    ctail_read(t);
    /* the record itself is cut at the record bound, then into lines of at most the max */
    assert_true(g.n >= 1);
    assert_int_equal(g.len[0], SW_PROC_LINE_MAX);
    for (int i = 1; i < g.n; i++)
        assert_true(g.len[i] <= SW_PROC_LINE_MAX);
    ctail_close(t);
    got_free(&g);
}

static void test_a_file_renamed_over_the_path_is_read_from_its_start(void **state)
{
    (void)state;
    got_t g = {0};
    ctail_t *t;
    char next[128];
    snprintf(next, sizeof(next), "%s.new", path);
    append(path, TS "stdout F before\n");
    assert_int_equal(ctail_open(&t, path, false, on_line, &g), 0);
    ctail_read(t);
    append(path, TS "stdout F last of the old file\n");
    append(next, TS "stdout F first of the new\n");
    assert_int_equal(rename(next, path), 0);
    ctail_read(t);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.line[1], "last of the old file");
    assert_string_equal(g.line[2], "first of the new");
    append(path, TS "stdout F and on\n");
    ctail_read(t);
    assert_int_equal(g.n, 4);
    assert_string_equal(g.line[3], "and on");
    ctail_close(t);
    got_free(&g);
}

static void test_following_from_the_end_reads_only_what_comes(void **state)
{
    (void)state;
    got_t g = {0};
    ctail_t *t;
    append(path, TS "stdout F read by the slipwayd before\n");
    assert_int_equal(ctail_open(&t, path, true, on_line, &g), 0);
    ctail_read(t);
    assert_int_equal(g.n, 0);
    append(path, TS "stdout F new\n");
    ctail_read(t);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.line[0], "new");
    ctail_close(t);
    got_free(&g);
    assert_int_equal(ctail_open(&t, "/nonexistent/c.log", false, on_line, &g), -ENOENT);
}

#define FAKE_ID "5b1e0c0ffee0d1ce5b1e0c0ffee0d1ce5b1e0c0ffee0d1ce5b1e0c0ffee0d1ce"

static void done(void *payload)
{
    *(int *)payload += 1;
}

static void test_a_pid_watch_sees_the_end_and_refuses_other_processes(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    /* Not a container's process: its cgroup names no container, so it is not watched. */
    cpidwatch_t *w = NULL;
    int ended = 0;
    assert_int_equal(cpidwatch_start(&loop, child, FAKE_ID, done, &ended, &w), -EPERM);
    /* Moved into a group named as podman names a container's, it is. */
    sw_cgroups_t cgs;
    char group[96];
    snprintf(group, sizeof(group), "libpod-%s", FAKE_ID);
    if (sw_cgroups_open(&cgs) != 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        skip(); /* no writable cgroup hierarchy here */
    }
    assert_int_equal(sw_cgroup_make(&cgs, group, 0, 0), 0);
    assert_int_equal(sw_cgroup_attach(&cgs, group, child), 0);
    assert_int_equal(cpidwatch_start(&loop, child, FAKE_ID, done, &ended, &w), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(ended, 0);
    kill(child, SIGKILL);
    while (!ended)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(ended, 1);
    cpidwatch_stop(w);
    waitpid(child, NULL, 0);
    sw_cgroup_remove(&cgs, group);
    assert_int_equal(cpidwatch_start(&loop, child, FAKE_ID, done, &ended, &w), -ESRCH);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_records_become_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_piece_left_at_close_is_passed_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines_are_cut_at_the_line_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_file_renamed_over_the_path_is_read_from_its_start,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_following_from_the_end_reads_only_what_comes, setup,
                                        teardown),
        cmocka_unit_test(test_a_pid_watch_sees_the_end_and_refuses_other_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
