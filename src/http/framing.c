/* Request framing rules that llhttp leaves to the server. A request whose framing two
 * parties could read differently (a proxy in front and us) is refused, never guessed. */
#include "slipway/framing.h"

static uint32_t header_count(const sw_http_req_t *req, const char *name)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < req->nheaders; i++)
        n += sw_iov_caseeq(req->headers[i].name, name);
    return n;
}

const char *sw_http_framing_error(const sw_http_req_t *req, unsigned major, unsigned minor)
{
    bool http11 = major > 1 || (major == 1 && minor >= 1);
    uint32_t hosts = header_count(req, "host");
    if (hosts > 1)
        return "a request carries at most one Host header";
    if (hosts == 0 && http11)
        return "an HTTP/1.1 request needs a Host header";
    /* HTTP/1.0 has no chunked framing: whoever reads the body by Content-Length or to the
     * end of the connection sees another request in it than we would. */
    if (!http11 && header_count(req, "transfer-encoding"))
        return "Transfer-Encoding is not allowed on an HTTP/1.0 request";
    return NULL;
}
