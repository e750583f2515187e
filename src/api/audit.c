/* GET /api/v1/audit: instance admins read every entry; anyone else reads the entries of the
 * projects they administer, and nothing else. */

#include "slipway/api.h"

#include "internal.h"

static const sw_api_sort_t audit_sorts[] = {
    {"at", "at"},
    {"action", "action"},
    {NULL, NULL},
};

static const sw_api_filter_t audit_filters[] = {
    {"actor_id", "x.actor_id = $%d::uuid", NULL, 0},
    {"project_id", "x.project_id = $%d::uuid", NULL, 0},
    {"resource", "x.resource = $%d", NULL, 64},
    {"action", "x.action = $%d", NULL, 64},
    {NULL, NULL, NULL, 0},
};

void sw_api_audit_list(sw_http_req_t *req, void *ctx)
{
    const char *filters[SW_API_FILTERS_MAX];
    if (!sw_api_filters_read(req, audit_filters, filters))
        return;
    sw_api_list_t l = {
        .from = "audit_log",
        .json_expr = "json_build_object('id', x.id, 'at', x.at, 'actor_id', x.actor_id, "
                     "'actor_email', x.actor_email, 'action', x.action, 'resource', x.resource, "
                     "'resource_id', x.resource_id, 'project_id', x.project_id, 'address', "
                     "x.address, 'details', x.details)",
        .sorts = audit_sorts,
        .default_sort = "at:desc",
    };
    sw_api_list_visible(&l, sw_api_principal(req), "project_id", true, NULL, NULL);
    sw_api_filters_apply(&l, audit_filters, filters);
    sw_api_list_run(ctx, req, &l);
}
