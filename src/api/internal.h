/* What the files of src/api/ share and no other module sees. Other modules see
 * include/slipway/api.h. */
#ifndef SLIPWAY_API_INTERNAL_H
#define SLIPWAY_API_INTERNAL_H

#include <stdbool.h>

#include "slipway/http.h"
#include "slipway/pg.h"

/* A query's status checked and answered in one place: when status is not 0, answers req as
 * sw_api_db_error does and returns true; otherwise returns false and answers nothing. */
bool sw_api_db_failed(sw_http_req_t *req, int status, sw_pg_result_t *res);

#endif
