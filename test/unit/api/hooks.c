/* Tests for the pure parts of src/api/hooks.c: signature checks for each git host, and what a
 * push payload says (branch, tag, deletion, the pushed commit and its author). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "slipway/crypto.h"
#include "slipway/hooks.h"

/* GitHub's published example: this secret and body give this HMAC-SHA256. */
#define GH_SECRET "It's a Secret to Everybody"
#define GH_BODY   "Hello, World!"
#define GH_HEX    "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

static bool verify(sw_hook_provider_t p, const char *sig, const char *body, const char *secret)
{
    return sw_hook_verify(p, sw_iov_from_cstr(sig), sw_iov_from_cstr(body),
                          sw_iov_from_cstr(secret));
}

static int setup(void **state)
{
    (void)state;
    return sw_crypto_init();
}

static void test_github(void **state)
{
    (void)state;
    assert_true(verify(SW_HOOK_GITHUB, "sha256=" GH_HEX, GH_BODY, GH_SECRET));
    /* upper-case hex is the same digest */
    char upper[80] = "sha256=";
    for (const char *p = GH_HEX; *p; p++)
        upper[strlen(upper)] = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    assert_true(verify(SW_HOOK_GITHUB, upper, GH_BODY, GH_SECRET));
    /* one byte of the body, the secret or the digest changed */
    assert_false(verify(SW_HOOK_GITHUB, "sha256=" GH_HEX, "Hello, World?", GH_SECRET));
    assert_false(verify(SW_HOOK_GITHUB, "sha256=" GH_HEX, "Hello, World! ", GH_SECRET));
    assert_false(verify(SW_HOOK_GITHUB, "sha256=" GH_HEX, GH_BODY, "It's a Secret to Everybodz"));
    char sig[80];
    snprintf(sig, sizeof(sig), "sha256=%s", GH_HEX);
    sig[20] = sig[20] == '0' ? '1' : '0';
    assert_false(verify(SW_HOOK_GITHUB, sig, GH_BODY, GH_SECRET));
    /* the prefix is required, and the digest whole */
    assert_false(verify(SW_HOOK_GITHUB, GH_HEX, GH_BODY, GH_SECRET));
    assert_false(verify(SW_HOOK_GITHUB, "sha1=" GH_HEX, GH_BODY, GH_SECRET));
    assert_false(verify(SW_HOOK_GITHUB, "sha256=", GH_BODY, GH_SECRET));
    snprintf(sig, sizeof(sig), "sha256=%.62s", GH_HEX);
    assert_false(verify(SW_HOOK_GITHUB, sig, GH_BODY, GH_SECRET));
    snprintf(sig, sizeof(sig), "sha256=%s00", GH_HEX);
    assert_false(verify(SW_HOOK_GITHUB, sig, GH_BODY, GH_SECRET));
    snprintf(sig, sizeof(sig), "sha256=%.62szz", GH_HEX);
    assert_false(verify(SW_HOOK_GITHUB, sig, GH_BODY, GH_SECRET));
    /* no secret, no signature: never */
    assert_false(verify(SW_HOOK_GITHUB, "sha256=" GH_HEX, GH_BODY, ""));
    assert_false(verify(SW_HOOK_GITHUB, "", GH_BODY, GH_SECRET));
}

static void test_gitea(void **state)
{
    (void)state;
    assert_true(verify(SW_HOOK_GITEA, GH_HEX, GH_BODY, GH_SECRET));
    assert_false(verify(SW_HOOK_GITEA, "sha256=" GH_HEX, GH_BODY, GH_SECRET));
    assert_false(verify(SW_HOOK_GITEA, GH_HEX, "Hello, World", GH_SECRET));
    assert_false(verify(SW_HOOK_GITEA, GH_HEX, GH_BODY, "another secret"));

    /* an empty body is signed like any other */
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char hex[2 * sizeof(mac) + 1];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)GH_SECRET, strlen(GH_SECRET));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    assert_true(sw_hook_verify(SW_HOOK_GITEA, sw_iov_from_cstr(hex), SW_IOV_NULL,
                               sw_iov_from_cstr(GH_SECRET)));
}

static void test_gitlab(void **state)
{
    (void)state;
    const char *secret = "5f2b6e0c9a1d4e7f8a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";
    assert_true(verify(SW_HOOK_GITLAB, secret, "{}", secret));
    assert_true(verify(SW_HOOK_GITLAB, secret, "anything", secret));
    char other[80];
    snprintf(other, sizeof(other), "%s", secret);
    other[63] = '0';
    assert_false(verify(SW_HOOK_GITLAB, other, "{}", secret));
    other[63] = '\0';
    assert_false(verify(SW_HOOK_GITLAB, other, "{}", secret));
    snprintf(other, sizeof(other), "%sf", secret);
    assert_false(verify(SW_HOOK_GITLAB, other, "{}", secret));
    assert_false(verify(SW_HOOK_GITLAB, "", "{}", ""));
    assert_false(verify(SW_HOOK_GITLAB, "", "{}", secret));
    assert_false(verify(SW_HOOK_PROVIDER_MAX, secret, "{}", secret));
}

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    assert_non_null(v);
    return v;
}

#define SHA1 "1111111111111111111111111111111111111111"
#define SHA2 "2222222222222222222222222222222222222222"
#define ZERO "0000000000000000000000000000000000000000"

static void test_push_branch(void **state)
{
    (void)state;
    sw_hook_push_t p;
    const char *why = NULL;
    /* GitHub and Gitea: after, head_commit */
    json_t *v = load("{\"ref\":\"refs/heads/main\",\"before\":\"" SHA1 "\",\"after\":\"" SHA2
                     "\",\"deleted\":false,\"commits\":[{\"id\":\"" SHA1
                     "\",\"message\":\"first\",\"author\":{\"name\":\"A\",\"email\":\"a@x\"}},"
                     "{\"id\":\"" SHA2 "\",\"message\":\"second\",\"author\":{\"name\":\"B\","
                     "\"email\":\"b@x\"}}],\"head_commit\":{\"id\":\"" SHA2
                     "\",\"message\":\"second\",\"author\":{\"name\":\"B\",\"email\":\"b@x\"}}}");
    assert_int_equal(sw_hook_push_parse(v, &p, &why), 0);
    assert_string_equal(p.ref, "refs/heads/main");
    assert_string_equal(p.branch, "main");
    assert_string_equal(p.sha, SHA2);
    assert_false(p.deleted);
    assert_string_equal(p.message, "second");
    assert_string_equal(p.author_name, "B");
    assert_string_equal(p.author_email, "b@x");
    json_decref(v);

    /* GitLab: checkout_sha, and the pushed commit is found among commits by its id */
    v = load(
        "{\"object_kind\":\"push\",\"ref\":\"refs/heads/feature/x\",\"before\":\"" SHA1
        "\",\"after\":\"" SHA2 "\",\"checkout_sha\":\"" SHA2 "\",\"commits\":[{\"id\":\"" SHA2
        "\",\"message\":\"gl\\n\",\"author\":{\"name\":\"C\",\"email\":\"c@x\"}},{\"id\":\"" SHA1
        "\",\"message\":\"older\"}]}");
    assert_int_equal(sw_hook_push_parse(v, &p, &why), 0);
    assert_string_equal(p.branch, "feature/x");
    assert_string_equal(p.sha, SHA2);
    assert_string_equal(p.message, "gl\n");
    assert_string_equal(p.author_name, "C");
    json_decref(v);

    /* no commit details at all: still a push of that commit */
    v = load("{\"ref\":\"refs/heads/main\",\"after\":\"" SHA1 "\"}");
    assert_int_equal(sw_hook_push_parse(v, &p, &why), 0);
    assert_string_equal(p.sha, SHA1);
    assert_null(p.message);
    assert_null(p.author_name);
    json_decref(v);
}

static void test_push_tags_and_deletions(void **state)
{
    (void)state;
    sw_hook_push_t p;
    const char *why = NULL;
    json_t *v = load("{\"ref\":\"refs/tags/v1.0\",\"after\":\"" SHA1 "\"}");
    assert_int_equal(sw_hook_push_parse(v, &p, &why), 0);
    assert_null(p.branch);
    assert_string_equal(p.ref, "refs/tags/v1.0");
    assert_false(p.deleted);
    json_decref(v);

    v = load("{\"ref\":\"refs/heads/\",\"after\":\"" SHA1 "\"}");
    assert_int_equal(sw_hook_push_parse(v, &p, &why), 0);
    assert_null(p.branch);
    json_decref(v);

    const char *deletions[] = {
        "{\"ref\":\"refs/heads/main\",\"after\":\"" SHA1 "\",\"deleted\":true}",
        "{\"ref\":\"refs/heads/main\",\"after\":\"" ZERO "\"}",
        "{\"ref\":\"refs/heads/main\",\"after\":\"" ZERO "\",\"checkout_sha\":null}",
        "{\"ref\":\"refs/heads/main\",\"deleted\":true}",
    };
    for (size_t i = 0; i < sizeof(deletions) / sizeof(deletions[0]); i++) {
        v = load(deletions[i]);
        assert_int_equal(sw_hook_push_parse(v, &p, &why), 0);
        assert_true(p.deleted);
        assert_null(p.sha);
        json_decref(v);
    }
}

static void test_push_malformed(void **state)
{
    (void)state;
    sw_hook_push_t p;
    const char *why = NULL;
    const struct {
        const char *json, *why;
    } cases[] = {
        {"{\"after\":\"" SHA1 "\"}", "ref"},
        {"{\"ref\":\"\",\"after\":\"" SHA1 "\"}", "ref"},
        {"{\"ref\":7,\"after\":\"" SHA1 "\"}", "ref"},
        {"{\"ref\":\"refs/heads/main\",\"after\":\"abc\"}", "after"},
        {"{\"ref\":\"refs/heads/main\"}", "after"}, /* no sha and not said to be deleted */
        {"{\"ref\":\"refs/heads/main\",\"after\":null}", "after"},
        {"{\"ref\":\"refs/heads/main\",\"after\":\"" SHA1 "A\"}", "after"},
        {"{\"ref\":\"refs/heads/main\",\"after\":\"111111111111111111111111111111111111111G\"}",
         "after"},
        {"{\"ref\":\"refs/heads/main\",\"after\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
         "after"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = load(cases[i].json);
        why = NULL;
        assert_int_equal(sw_hook_push_parse(v, &p, &why), -EINVAL);
        assert_string_equal(why, cases[i].why);
        json_decref(v);
    }
}

/* Mezzanine's bare signed ref: ref alone deploys the branch head; a given after is checked. */
static void test_bare_ref(void **state)
{
    (void)state;
    sw_hook_push_t p;
    const char *why = NULL;
    json_t *v = load("{\"ref\":\"refs/heads/main\"}");
    assert_int_equal(sw_hook_ref_parse(v, &p, &why), 0);
    assert_string_equal(p.branch, "main");
    assert_null(p.sha);
    assert_false(p.deleted);
    json_decref(v);
    v = load("{\"ref\":\"refs/heads/main\",\"after\":\"" SHA2 "\"}");
    assert_int_equal(sw_hook_ref_parse(v, &p, &why), 0);
    assert_string_equal(p.sha, SHA2);
    json_decref(v);
    v = load("{\"ref\":\"refs/tags/v1\"}");
    assert_int_equal(sw_hook_ref_parse(v, &p, &why), 0);
    assert_null(p.branch);
    json_decref(v);
    const struct {
        const char *json, *why;
    } bad[] = {
        {"{}", "ref"},
        {"{\"ref\":\"\"}", "ref"},
        {"{\"ref\":[]}", "ref"},
        {"{\"ref\":\"refs/heads/main\",\"after\":\"abc\"}", "after"},
        {"{\"ref\":\"refs/heads/main\",\"after\":7}", "after"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = load(bad[i].json);
        why = NULL;
        assert_int_equal(sw_hook_ref_parse(v, &p, &why), -EINVAL);
        assert_string_equal(why, bad[i].why);
        json_decref(v);
    }
}

static void test_provider_names(void **state)
{
    (void)state;
    assert_string_equal(sw_hook_provider_name(SW_HOOK_GITHUB), "github");
    assert_string_equal(sw_hook_provider_name(SW_HOOK_GITEA), "gitea");
    assert_string_equal(sw_hook_provider_name(SW_HOOK_GITLAB), "gitlab");
    assert_string_equal(sw_hook_provider_name(SW_HOOK_PROVIDER_MAX), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_github),
        cmocka_unit_test(test_gitea),
        cmocka_unit_test(test_gitlab),
        cmocka_unit_test(test_push_branch),
        cmocka_unit_test(test_push_tags_and_deletions),
        cmocka_unit_test(test_push_malformed),
        cmocka_unit_test(test_bare_ref),
        cmocka_unit_test(test_provider_names),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
