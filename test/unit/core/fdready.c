/* Tests for sw_fd_ready (src/core/common.c): ready or not, without waiting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <poll.h>
#include <stdbool.h>
#include <unistd.h>

#include "slipway/common.h"

static void test_a_pipe_is_readable_once_written(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_false(sw_fd_ready(p[0], POLLIN));
    assert_true(sw_fd_ready(p[1], POLLOUT));
    assert_int_equal(sw_write_all(p[1], "x", 1), 0);
    assert_true(sw_fd_ready(p[0], POLLIN));
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_false(sw_fd_ready(p[0], POLLIN));
    /* the other end gone: a read would not wait (it sees the end), so ready */
    close(p[1]);
    assert_true(sw_fd_ready(p[0], POLLIN));
    close(p[0]);
}

static void test_no_descriptor_is_never_ready(void **state)
{
    (void)state;
    assert_false(sw_fd_ready(-1, POLLIN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pipe_is_readable_once_written),
        cmocka_unit_test(test_no_descriptor_is_never_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
