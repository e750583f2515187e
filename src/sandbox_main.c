/* slipway-sandbox: the launcher of builds and instances on its own (see sandbox.h), next to
 * slipwayd. It links nothing but libc, so the process that stays with each sandboxed command
 * holds a few hundred KiB rather than the daemon's libraries. */
#include "slipway/sandbox.h"

int main(int argc, char **argv)
{
    return sw_sandbox_exec(argc - 1, argv + 1);
}
