/* Tests for src/runtime/sandbox.c and sandbox_exec.c: the launcher run in a real child (its
 * uid, no_new_privs, descriptors), checkouts handed to an app's uid without following links,
 * and the launcher's argv. The uid tests need root (as slipwayd does for them) and skip
 * otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/sandbox.h"

#define APP_UID 300777

/* Runs the launcher in a child with argv (after SW_SANDBOX_EXEC_ARG); its stdout into out.
 * Returns the child's wait status. A descriptor without close-on-exec is open in the child,
 * as a library's socket would be. */
static int launch(char **argv, char *out, size_t size)
{
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    int stray = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
    assert_true(stray > 2);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        int argc = 0;
        while (argv[argc])
            argc++;
        _exit(sw_sandbox_exec(argc, argv));
    }
    close(stray);
    close(pipefd[1]);
    size_t len = 0;
    ssize_t n;
    while (len < size - 1 && (n = read(pipefd[0], out + len, size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pipefd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_launcher_drops_to_the_uid_and_keeps_only_stdio(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char uid[16];
    snprintf(uid, sizeof(uid), "%d", APP_UID);
    /* The shell's own descriptors, listed by a child it starts with no redirection. */
    char *argv[] = {uid,
                    "/",
                    "-",
                    "-",
                    "/bin/sh",
                    "-c",
                    "echo \"$(id -u) $(id -g) $(id -G)\"; "
                    "awk '/^NoNewPrivs/ {print $2}' /proc/self/status; "
                    "python3 -c 'import os; print(*sorted(int(f) for f in "
                    "os.listdir(\"/proc/%d/fd\" % os.getppid())))'",
                    NULL};
    char out[512];
    int status = launch(argv, out, sizeof(out));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char want[128];
    snprintf(want, sizeof(want), "%d %d %d\n1\n", APP_UID, APP_UID, APP_UID);
    assert_memory_equal(out, want, strlen(want));
    /* the shell holds 0-2: not the stray descriptor, nothing of ours */
    assert_string_equal(out + strlen(want), "0 1 2\n");
}

static void test_launcher_keeps_the_uid_when_told_to(void **state)
{
    (void)state;
    char *argv[] = {"-", "/", "-", "-", "/bin/sh", "-c", "id -u", NULL};
    char out[64];
    int status = launch(argv, out, sizeof(out));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(atoi(out), (int)geteuid());
}

static void test_launcher_refuses_bad_arguments(void **state)
{
    (void)state;
    char out[64];
    char *short_argv[] = {"-", "/", "-", NULL};
    int status = launch(short_argv, out, sizeof(out));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 126);
    if (geteuid() != 0)
        return;
    char *root_argv[] = {"0", "/", "-", "-", "/bin/true", NULL};
    status = launch(root_argv, out, sizeof(out));
    assert_int_equal(WEXITSTATUS(status), 126); /* uid 0 is never an app's */
    char *missing[] = {"-", "/", "-", "-", "/nonexistent/cmd", NULL};
    status = launch(missing, out, sizeof(out));
    assert_int_equal(WEXITSTATUS(status), 126);
}

static void test_adopt_hands_the_tree_over_without_following_links(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char base[] = "/tmp/sw-sandbox-test-XXXXXX";
    assert_non_null(mkdtemp(base));
    char app[100], dir[120], sub[140], file[160], link[140], outside[100];
    snprintf(app, sizeof(app), "%s/builds/app", base);
    snprintf(dir, sizeof(dir), "%s/dep", app);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    snprintf(file, sizeof(file), "%s/f", sub);
    snprintf(link, sizeof(link), "%s/l", dir);
    snprintf(outside, sizeof(outside), "%s/outside", base);
    char builds[100];
    snprintf(builds, sizeof(builds), "%s/builds", base);
    assert_int_equal(mkdir(builds, 0700), 0);
    assert_int_equal(mkdir(app, 0700), 0);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    f = fopen(outside, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(symlink(outside, link), 0);

    sw_sandbox_t sb = {.switch_uid = true, .uid_lo = APP_UID, .uid_hi = APP_UID};
    snprintf(sb.data_dir, sizeof(sb.data_dir), "%s", base);
    assert_int_equal(sw_sandbox_adopt(&sb, dir, APP_UID), 0);

    struct stat st;
    const char *owned[] = {dir, sub, file, link};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lstat(owned[i], &st), 0);
        assert_int_equal(st.st_uid, APP_UID);
        assert_int_equal(st.st_gid, APP_UID);
    }
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(outside, &st), 0); /* the link's target stays root's */
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(stat(app, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0711);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(stat(builds, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0711);

    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    assert_int_equal(system(cmd), 0);
}

/* A file of another uid (or a second name of one) inside a tree is never chowned: it may have
 * been put there to be. */
static void test_adopt_refuses_what_it_did_not_write(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char base[] = "/tmp/sw-sandbox-test-XXXXXX";
    assert_non_null(mkdtemp(base));
    char dir[80], planted[100], target[100], second[100];
    snprintf(dir, sizeof(dir), "%s/dep", base);
    snprintf(planted, sizeof(planted), "%s/planted", dir);
    snprintf(target, sizeof(target), "%s/target", base);
    snprintf(second, sizeof(second), "%s/second-name", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    FILE *f = fopen(planted, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(chown(planted, 12345, 12345), 0);
    sw_sandbox_t sb = {.switch_uid = true, .uid_lo = APP_UID, .uid_hi = APP_UID};
    snprintf(sb.data_dir, sizeof(sb.data_dir), "%s", base);
    struct stat st, tmp_before;
    assert_int_equal(stat("/tmp", &tmp_before), 0);
    assert_int_equal(sw_sandbox_adopt(&sb, dir, APP_UID), -EPERM);
    /* dir's parents are the data directory and /tmp: neither is crossed into, so neither is
     * touched (this test once left /tmp 0711) */
    assert_int_equal(stat("/tmp", &st), 0);
    assert_int_equal(st.st_mode, tmp_before.st_mode);
    assert_int_equal(stat(base, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700); /* as mkdtemp made it */
    assert_int_equal(stat(planted, &st), 0);
    assert_int_equal(st.st_uid, 12345);

    assert_int_equal(unlink(planted), 0);
    f = fopen(target, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(link(target, second), 0);
    assert_int_equal(sw_sandbox_adopt(&sb, dir, APP_UID), -EPERM);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_uid, 0);

    char cmd[120];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    assert_int_equal(system(cmd), 0);
}

static void test_argv_layout(void **state)
{
    (void)state;
    sw_sandbox_t sb = {.switch_uid = true, .exe_is_daemon = true};
    snprintf(sb.exe, sizeof(sb.exe), "/usr/bin/slipwayd");
    snprintf(sb.data_dir, sizeof(sb.data_dir), "/var/lib/slipway");
    snprintf(sb.bwrap, sizeof(sb.bwrap), "/usr/bin/bwrap");
    char *cmd[] = {"/bin/sh", "-c", "make; echo \"$HOME\"", NULL};
    char **argv = sw_sandbox_argv(&sb, 300001, "/var/lib/slipway/builds/a/d", cmd);
    const char *want[] = {"/usr/bin/slipwayd",
                          SW_SANDBOX_EXEC_ARG,
                          "300001",
                          "/var/lib/slipway/builds/a/d",
                          "/var/lib/slipway",
                          "/usr/bin/bwrap",
                          "/bin/sh",
                          "-c",
                          "make; echo \"$HOME\"",
                          NULL};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (want[i])
            assert_string_equal(argv[i], want[i]);
        else
            assert_null(argv[i]);
    }
    sw_sandbox_argv_free(argv);

    /* slipway-sandbox takes the same arguments without the flag */
    sb.switch_uid = false;
    sb.exe_is_daemon = false;
    sb.bwrap[0] = '\0';
    snprintf(sb.exe, sizeof(sb.exe), "/usr/bin/slipway-sandbox");
    argv = sw_sandbox_argv(&sb, 300001, "/d", cmd);
    assert_string_equal(argv[0], "/usr/bin/slipway-sandbox");
    assert_string_equal(argv[1 + SW_SANDBOX_ARG_UID], "-");
    assert_string_equal(argv[1 + SW_SANDBOX_ARG_BWRAP], "-");
    assert_string_equal(argv[1 + SW_SANDBOX_ARG_CMD], "/bin/sh");
    sw_sandbox_argv_free(argv);
    assert_int_equal(sw_sandbox_uid(&sb, 300001), geteuid());
    sb.switch_uid = true;
    assert_int_equal(sw_sandbox_uid(&sb, 300001), 300001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launcher_drops_to_the_uid_and_keeps_only_stdio),
        cmocka_unit_test(test_launcher_keeps_the_uid_when_told_to),
        cmocka_unit_test(test_launcher_refuses_bad_arguments),
        cmocka_unit_test(test_adopt_hands_the_tree_over_without_following_links),
        cmocka_unit_test(test_adopt_refuses_what_it_did_not_write),
        cmocka_unit_test(test_argv_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
