/* Tests for src/auth/secretbox.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/crypto.h"

#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static int setup(void **state)
{
    (void)state;
    return sw_crypto_init();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Directory entries other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    assert_non_null(d);
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void tmpdir(char out[512])
{
    snprintf(out, 512, "%s/sw-secretbox-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(out));
}

static void load_hex(sw_secretbox_t *box, const char *hex)
{
    char err[256];
    assert_int_equal(sw_secretbox_load(box, hex, NULL, err, sizeof(err)), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    sw_secretbox_t box;
    sw_buf_t sealed = SW_BUF_INIT, plain = SW_BUF_INIT, again = SW_BUF_INIT;
    const char secret[] = "postgres://user:hunter2@db/app";
    load_hex(&box, HEX_A);

    sw_secretbox_seal(&box, secret, strlen(secret), "app_env:42:DATABASE_URL", &sealed);
    assert_memory_equal(sealed.base, "v1.", 3);
    assert_null(strstr(sealed.base, "hunter2"));
    assert_int_equal(sealed.len, strlen(sealed.base));
    /* 24 + 30 + 16 = 70 bytes: 94 base64 characters, no padding. */
    assert_int_equal(sealed.len, 3 + 94);
    assert_int_equal(
        sw_secretbox_open(&box, sealed.base, sealed.len, "app_env:42:DATABASE_URL", &plain), 0);
    assert_string_equal(plain.base, secret);

    /* A fresh nonce every time: the same plaintext never seals the same way. */
    sw_secretbox_seal(&box, secret, strlen(secret), "app_env:42:DATABASE_URL", &again);
    assert_string_not_equal(sealed.base, again.base);

    /* Empty plaintext and NULL/empty ad (treated alike) work too. */
    sw_buf_reset(&sealed);
    sw_buf_reset(&plain);
    sw_secretbox_seal(&box, "", 0, NULL, &sealed);
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "", &plain), 0);
    assert_int_equal(plain.len, 0);
    assert_non_null(plain.base);
    assert_string_equal(plain.base, "");

    /* Open appends after what the buffer already holds. */
    sw_buf_reset(&sealed);
    sw_buf_reset(&plain);
    sw_buf_append_cstr(&plain, "x=");
    sw_secretbox_seal(&box, "1", 1, "ad", &sealed);
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "ad", &plain), 0);
    assert_string_equal(plain.base, "x=1");

    sw_secretbox_clear(&box);
    static const unsigned char zero[SW_MASTER_KEY_BYTES];
    assert_memory_equal(box.key, zero, sizeof(zero));
    sw_buf_free(&sealed);
    sw_buf_free(&plain);
    sw_buf_free(&again);
}

static void test_open_rejects_tampering(void **state)
{
    (void)state;
    sw_secretbox_t box, other;
    sw_buf_t sealed = SW_BUF_INIT, plain = SW_BUF_INIT;
    load_hex(&box, HEX_A);
    load_hex(&other, HEX_B);

    sw_secretbox_seal(&box, "secret", 6, "row:1", &sealed);
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "row:2", &plain), -EBADMSG);
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, NULL, &plain), -EBADMSG);
    assert_int_equal(sw_secretbox_open(&other, sealed.base, sealed.len, "row:1", &plain), -EBADMSG);
    /* Flip characters throughout (each stays valid base64). */
    for (size_t pos = 3; pos < sealed.len - 1; pos += 7) {
        char saved = sealed.base[pos];
        sealed.base[pos] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "row:1", &plain),
                         -EBADMSG);
        sealed.base[pos] = saved;
    }
    assert_int_equal(plain.len, 0);
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "row:1", &plain), 0);
    assert_string_equal(plain.base, "secret");
    sw_buf_free(&sealed);
    sw_buf_free(&plain);
}

static void test_open_rejects_bad_format(void **state)
{
    (void)state;
    sw_secretbox_t box;
    sw_buf_t sealed = SW_BUF_INIT, plain = SW_BUF_INIT;
    load_hex(&box, HEX_A);
    sw_secretbox_seal(&box, "secret", 6, "ad", &sealed);

    assert_int_equal(sw_secretbox_open(&box, "", 0, "ad", &plain), -EINVAL);
    assert_int_equal(sw_secretbox_open(&box, "v1.", 3, "ad", &plain), -EINVAL);
    assert_int_equal(sw_secretbox_open(&box, sealed.base + 1, sealed.len - 1, "ad", &plain),
                     -EINVAL);
    sealed.base[1] = '2';
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "ad", &plain), -EINVAL);
    sealed.base[1] = '1';
    sealed.base[10] = '+'; /* standard base64, not url-safe */
    assert_int_equal(sw_secretbox_open(&box, sealed.base, sealed.len, "ad", &plain), -EINVAL);
    /* Too short to hold a nonce and a tag. */
    assert_int_equal(sw_secretbox_open(&box, sealed.base, 3 + 40, "ad", &plain), -EINVAL);

    /* Oversized input is refused before it is decoded. */
    size_t big = 2u * 1024 * 1024;
    char *huge = malloc(big);
    assert_non_null(huge);
    memcpy(huge, "v1.", 3);
    memset(huge + 3, 'A', big - 3);
    assert_int_equal(sw_secretbox_open(&box, huge, big, "ad", &plain), -EINVAL);
    free(huge);
    assert_int_equal(plain.len, 0);
    sw_buf_free(&sealed);
    sw_buf_free(&plain);
}

static void test_load_hex(void **state)
{
    (void)state;
    sw_secretbox_t box, same;
    char err[256] = "";
    load_hex(&box, HEX_A);
    for (int i = 0; i < SW_MASTER_KEY_BYTES; i++)
        assert_int_equal(box.key[i], i);
    load_hex(&same, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
    assert_memory_equal(box.key, same.key, sizeof(box.key));

    const char *bad[] = {
        /* parenthesised: the concatenations are meant (clang asks) */
        "00",
        (HEX_A "00"),
        "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        (HEX_A "\n"),
        (" " HEX_A),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(&same, &box, sizeof(box));
        assert_int_equal(sw_secretbox_load(&same, bad[i], "/nonexistent", err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "64"));
        assert_null(strstr(err, "0102030405"));
        assert_memory_equal(same.key, box.key, sizeof(box.key));
    }
    /* Neither a key nor a data directory. */
    assert_int_equal(sw_secretbox_load(&same, "", NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(sw_secretbox_load(&same, NULL, "", NULL, 0), -EINVAL);
}

static void test_key_file_created_and_reused(void **state)
{
    (void)state;
    char root[512], dir[1024], path[PATH_MAX], err[512] = "";
    sw_secretbox_t a, b;
    struct stat st;
    tmpdir(root);
    snprintf(dir, sizeof(dir), "%s/a/b/data", root);
    snprintf(path, sizeof(path), "%s/master.key", dir);

    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65);

    assert_int_equal(sw_secretbox_load(&b, NULL, dir, err, sizeof(err)), 0);
    assert_memory_equal(a.key, b.key, sizeof(a.key));

    /* The file is the hex of the key, and nothing else is left in the directory. */
    char text[80];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    fclose(f);
    text[64] = '\0';
    sw_secretbox_t c;
    load_hex(&c, text);
    assert_memory_equal(a.key, c.key, sizeof(a.key));
    assert_int_equal(count_entries(dir), 1);
    rm_rf(root);
}

static void test_key_file_without_newline(void **state)
{
    (void)state;
    char dir[512], path[PATH_MAX], err[512] = "";
    sw_secretbox_t a, b;
    tmpdir(dir);
    snprintf(path, sizeof(path), "%s/master.key", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, HEX_B, 64), 64);
    close(fd);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), 0);
    load_hex(&b, HEX_B);
    assert_memory_equal(a.key, b.key, sizeof(a.key));

    /* Garbage in the file is an error whose message holds no key material. */
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, HEX_B "00\n", 67), 67);
    close(fd);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "ffeedd"));
    assert_non_null(strstr(err, path));
    rm_rf(dir);
}

static void test_key_file_permissions_refused(void **state)
{
    (void)state;
    char dir[512], path[PATH_MAX], err[512] = "";
    sw_secretbox_t a;
    tmpdir(dir);
    snprintf(path, sizeof(path), "%s/master.key", dir);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), 0);

    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "0600"));
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), -EPERM);
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), 0);

    /* A directory where the key file should be is refused too. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(sw_secretbox_load(&a, "", dir, err, sizeof(err)), -EPERM);
    rm_rf(dir);
}

static void test_concurrent_first_start_agrees(void **state)
{
    (void)state;
    enum { N = 8 };
    char root[512], dir[1024];
    int go[2], res[2];
    pid_t pids[N];
    tmpdir(root);
    snprintf(dir, sizeof(dir), "%s/x/y", root);
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    assert_int_equal(pipe2(res, O_CLOEXEC), 0);

    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            sw_secretbox_t box;
            char c, err[512], hex[65];
            close(go[1]);
            /* Everyone starts when the parent closes the pipe. */
            (void)!read(go[0], &c, 1);
            int r = sw_secretbox_load(&box, "", dir, err, sizeof(err));
            for (int k = 0; k < SW_MASTER_KEY_BYTES; k++)
                snprintf(hex + 2 * k, 3, "%02x", box.key[k]);
            if (r != 0)
                memset(hex, '!', 64);
            (void)!write(res[1], hex, 64);
            _exit(r == 0 ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]);
    close(res[1]);

    char first[64], got[64];
    for (int i = 0; i < N; i++) {
        size_t have = 0;
        while (have < sizeof(got)) {
            ssize_t n = read(res[0], got + have, sizeof(got) - have);
            assert_true(n > 0);
            have += (size_t)n;
        }
        if (i == 0)
            memcpy(first, got, sizeof(first));
        assert_memory_equal(first, got, sizeof(got));
    }
    close(res[0]);
    for (int i = 0; i < N; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_memory_not_equal(first, "!!!!", 4);

    /* Only master.key is left: every temporary file was removed. */
    assert_int_equal(count_entries(dir), 1);
    rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_open_rejects_tampering),
        cmocka_unit_test(test_open_rejects_bad_format),
        cmocka_unit_test(test_load_hex),
        cmocka_unit_test(test_key_file_created_and_reused),
        cmocka_unit_test(test_key_file_without_newline),
        cmocka_unit_test(test_key_file_permissions_refused),
        cmocka_unit_test(test_concurrent_first_start_agrees),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
