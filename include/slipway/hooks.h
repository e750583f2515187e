/* Push hooks from git hosts: who sent a delivery, whether its signature holds, and what a push
 * payload says. Pure functions; the HTTP side is src/api/hooks.c. */
#ifndef SLIPWAY_HOOKS_H
#define SLIPWAY_HOOKS_H

#include <jansson.h>
#include <stdbool.h>

#include "slipway/buf.h"

typedef enum {
    SW_HOOK_GITHUB, /* X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body> */
    SW_HOOK_GITEA,  /* X-Gitea-Signature: <hex HMAC-SHA256 of the body> */
    SW_HOOK_GITLAB, /* X-Gitlab-Token: the secret itself */
    SW_HOOK_PROVIDER_MAX
} sw_hook_provider_t;

/* "github", "gitea", "gitlab". */
const char *sw_hook_provider_name(sw_hook_provider_t provider);

/* True when signature (the provider's header value, as sent) proves that the sender of body
 * holds secret. Constant time in the secret and the signature; an empty secret or signature
 * never verifies. */
bool sw_hook_verify(sw_hook_provider_t provider, sw_iov_t signature, sw_iov_t body,
                    sw_iov_t secret);

/* What a push said. Strings borrow from the payload. */
typedef struct {
    const char *ref;     /* as pushed: "refs/heads/main", "refs/tags/v1" */
    const char *branch;  /* the part after refs/heads/, or NULL for any other ref */
    const char *sha;     /* the commit pushed: 40 lower-case hex digits; NULL when deleted */
    bool deleted;        /* the ref was deleted */
    const char *message; /* the pushed commit's message, or NULL */
    const char *author_name, *author_email; /* its author, or NULL */
} sw_hook_push_t;

/* Reads a push payload (GitHub, Gitea and GitLab share these fields: ref, after or
 * checkout_sha, deleted, head_commit or commits). 0, or -EINVAL with *why naming the bad field. */
int sw_hook_push_parse(const json_t *payload, sw_hook_push_t *out, const char **why);

/* Reads a bare signed ref (Mezzanine's hook: {"ref": "refs/heads/<branch>"}, no event header):
 * ref is required; after, when present, must be a commit hash (NULL sha: the ref's head).
 * 0, or -EINVAL with *why naming the bad field. */
int sw_hook_ref_parse(const json_t *payload, sw_hook_push_t *out, const char **why);

#endif
