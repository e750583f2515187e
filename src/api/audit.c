/* GET /api/v1/audit: instance admins read every entry; anyone else reads the entries of the
 * projects they administer, and nothing else. */
#include <string.h>

#include "slipway/api.h"

static const sw_api_sort_t audit_sorts[] = {
    {"at", "at"},
    {"action", "action"},
    {NULL, NULL},
};

void sw_api_audit_list(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *actor = NULL, *project = NULL;
    sw_api_uuid_filter(req, "actor_id", &actor, &e);
    sw_api_uuid_filter(req, "project_id", &project, &e);
    const char *resource = sw_http_req_query(req, "resource");
    const char *action = sw_http_req_query(req, "action");
    if (resource && strlen(resource) > 64)
        sw_json_errors_add(&e, "resource", "must be at most 64 characters");
    if (action && strlen(action) > 64)
        sw_json_errors_add(&e, "action", "must be at most 64 characters");
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    sw_api_list_t l = {
        .from = "audit_log",
        .json_expr = "json_build_object('id', x.id, 'at', x.at, 'actor_id', x.actor_id, "
                     "'actor_email', x.actor_email, 'action', x.action, 'resource', x.resource, "
                     "'resource_id', x.resource_id, 'project_id', x.project_id, 'address', "
                     "x.address, 'details', x.details)",
        .sorts = audit_sorts,
        .default_sort = "at:desc",
    };
    sw_api_list_visible(&l, p, "project_id", true, NULL, NULL);
    if (actor)
        sw_api_list_where(&l, "x.actor_id = $%d::uuid", actor);
    if (project)
        sw_api_list_where(&l, "x.project_id = $%d::uuid", project);
    if (resource)
        sw_api_list_where(&l, "x.resource = $%d", resource);
    if (action)
        sw_api_list_where(&l, "x.action = $%d", action);
    sw_api_list_run(ctx, req, &l);
}
