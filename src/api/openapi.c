/* GET /api/v1/openapi.json: OpenAPI 3.1, generated from the route table and the schema
 * definitions below, so the document cannot drift from what the router serves. */
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "sw_version.h"

/* JSON Schemas by name, referenced from routes as request_schema / response_schema. */
static const struct {
    const char *name;
    const char *schema;
} schemas[] = {
    {"Error",
     "{\"type\":\"object\",\"required\":[\"error\"],\"properties\":{\"error\":{\"type\":"
     "\"object\",\"required\":[\"code\",\"message\",\"details\",\"request_id\"],\"properties\":{"
     "\"code\":{\"type\":\"string\"},\"message\":{\"type\":\"string\"},\"details\":{\"type\":"
     "\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"field\":{\"type\":\"string\"},"
     "\"message\":{\"type\":\"string\"}}}},\"request_id\":{\"type\":\"string\"}}}}}"},
    {"HealthCheck",
     "{\"type\":\"object\",\"required\":[\"status\"],\"properties\":{\"status\":{\"enum\":["
     "\"ok\",\"error\"]},\"latency_ms\":{\"type\":\"number\"},\"error\":{\"type\":\"string\"}}}"},
    {"Health",
     "{\"type\":\"object\",\"required\":[\"status\",\"checks\"],\"properties\":{\"status\":{"
     "\"enum\":[\"ok\",\"error\"]},\"checks\":{\"type\":\"object\",\"properties\":{\"database\":{"
     "\"$ref\":\"#/components/schemas/HealthCheck\"},\"redis\":{\"$ref\":\"#/components/schemas/"
     "HealthCheck\"}}}}}"},
    {"Ready",
     "{\"type\":\"object\",\"required\":[\"status\"],\"properties\":{\"status\":{\"const\":"
     "\"ready\"}}}"},
    {"User", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"}"
             ",\"email\":{\"type"
             "\":\"string\",\"format\":\"email\"},\"name\":{\"type\":\"string\"},\"role\":{"
             "\"enum\":[\"owner\",\"admin"
             "\",\"member\"]},\"totp_enabled\":{\"type\":\"boolean\"},\"created_at\":{\"type\":"
             "\"string\",\"format"
             "\":\"date-time\"},\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"}},"
             "\"required\":[\"id\""
             ",\"email\",\"name\",\"role\",\"totp_enabled\",\"created_at\",\"updated_at\"]}"},
    {"Pagination", "{\"type\":\"object\",\"properties\":{\"page\":{\"type\":\"integer\"},\"limit\":"
                   "{\"type\":\"integer\"},"
                   "\"total\":{\"type\":\"integer\"},\"pages\":{\"type\":\"integer\"},\"has_next\":"
                   "{\"type\":\"boolean\"},"
                   "\"has_prev\":{\"type\":\"boolean\"}},\"required\":[\"page\",\"limit\","
                   "\"total\",\"pages\",\"has_next\""
                   ",\"has_prev\"],\"additionalProperties\":false}"},
    {"UserList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/User\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required\":"
     "[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"Credentials", "{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\","
                    "\"maxLength\":254},\"password\":"
                    "{\"type\":\"string\",\"minLength\":10,\"maxLength\":256},\"name\":{\"type\":"
                    "\"string\",\"maxLength\""
                    ":200}},\"required\":[\"email\",\"password\"],\"additionalProperties\":false}"},
    {"Login", "{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\",\"maxLength\":"
              "254},\"password\":"
              "{\"type\":\"string\",\"maxLength\":256},\"totp\":{\"type\":\"string\",\"maxLength\":"
              "32,\"descriptio"
              "n\":\"a 6-digit code or a recovery "
              "code\"}},\"required\":[\"email\",\"password\"],\"additional"
              "Properties\":false}"},
    {"Session",
     "{\"type\":\"object\",\"properties\":{\"token\":{\"type\":\"string\",\"description\":\"sws_ "
     "session "
     "token; also set as the slipway_session cookie\"},\"expires_at\":{\"type\":\"string\",\"forma"
     "t\":\"date-time\"},\"user\":{\"$ref\":\"#/components/schemas/"
     "User\"}},\"required\":[\"token\",\"ex"
     "pires_at\",\"user\"],\"additionalProperties\":false}"},
    {"AuthState", "{\"type\":\"object\",\"properties\":{\"needs_setup\":{\"type\":\"boolean\"},"
                  "\"authenticated\":{\"ty"
                  "pe\":\"boolean\"},\"user\":{\"oneOf\":[{\"$ref\":\"#/components/schemas/"
                  "User\"},{\"type\":\"null\"}"
                  "]},\"registration\":{\"enum\":[\"open\",\"closed\"]}},\"required\":[\"needs_"
                  "setup\",\"authenticat"
                  "ed\",\"user\",\"registration\"],\"additionalProperties\":false}"},
    {"Me", "{\"allOf\":[{\"$ref\":\"#/components/schemas/"
           "User\"},{\"type\":\"object\",\"properties\":{\"princ"
           "ipal\":{\"type\":\"object\",\"properties\":{\"kind\":{\"enum\":[\"session\",\"token\"]}"
           ",\"scopes\":{\""
           "type\":\"array\",\"items\":{\"enum\":[\"read\",\"write\",\"deploy\",\"admin\"]}},"
           "\"token_id\":{\"oneOf"
           "\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]}},\"required\":["
           "\"kind\",\"scopes\","
           "\"token_id\"],\"additionalProperties\":false}},\"required\":[\"principal\"]}]}"},
    {"PasswordChange", "{\"type\":\"object\",\"properties\":{\"current\":{\"type\":\"string\","
                       "\"maxLength\":256},\"new\":{\"t"
                       "ype\":\"string\",\"minLength\":10,\"maxLength\":256}},\"required\":["
                       "\"current\",\"new\"],\"additio"
                       "nalProperties\":false}"},
    {"ClientCredentials", "{\"type\":\"object\",\"properties\":{\"grant_type\":{\"const\":\"client_"
                          "credentials\"},\"client_i"
                          "d\":{\"type\":\"string\",\"format\":\"uuid\"},\"client_secret\":{"
                          "\"type\":\"string\"}},\"required\":["
                          "\"grant_type\"],\"additionalProperties\":false}"},
    {"AccessToken",
     "{\"type\":\"object\",\"properties\":{\"access_token\":{\"type\":\"string\"},\"token_type\":{"
     "\"const"
     "\":\"Bearer\"},\"expires_in\":{\"type\":\"integer\"},\"scope\":{\"type\":\"string\"}},"
     "\"required\":[\""
     "access_token\",\"token_type\",\"expires_in\",\"scope\"],\"additionalProperties\":false}"},
    {"TotpEnroll", "{\"type\":\"object\",\"properties\":{\"secret\":{\"type\":\"string\","
                   "\"description\":\"base32\"},\"ot"
                   "pauth_url\":{\"type\":\"string\"}},\"required\":[\"secret\",\"otpauth_url\"],"
                   "\"additionalPropert"
                   "ies\":false}"},
    {"TotpCode", "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"pattern\":"
                 "\"^[0-9]{6}$\"}},\"req"
                 "uired\":[\"code\"],\"additionalProperties\":false}"},
    {"RecoveryCodes", "{\"type\":\"object\",\"properties\":{\"recovery_codes\":{\"type\":\"array\","
                      "\"items\":{\"type\":\"str"
                      "ing\"},\"minItems\":10,\"maxItems\":10}},\"required\":[\"recovery_codes\"],"
                      "\"additionalPropert"
                      "ies\":false}"},
    {"TotpDisable", "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\"},"
                    "\"password\":{\"type\":\"string\"}"
                    "},\"additionalProperties\":false}"},
    {"Token", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":"
              "\"uuid\"},\"name\":{\"type\""
              ":\"string\"},\"scopes\":{\"type\":\"array\",\"items\":{\"enum\":[\"read\",\"write\","
              "\"deploy\",\"admin\""
              "]},\"minItems\":1,\"uniqueItems\":true},\"expires_at\":{\"oneOf\":[{\"type\":"
              "\"string\",\"format\""
              ":\"date-time\"},{\"type\":\"null\"}]},\"last_used_at\":{\"oneOf\":[{\"type\":"
              "\"string\",\"format\":\""
              "date-time\"},{\"type\":\"null\"}]},\"created_at\":{\"type\":\"string\",\"format\":"
              "\"date-time\"}},\""
              "required\":[\"id\",\"name\",\"scopes\",\"expires_at\",\"last_used_at\",\"created_"
              "at\"],\"additiona"
              "lProperties\":false}"},
    {"TokenList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/Token\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required\""
     ":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"TokenCreate", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                    "\"minLength\":1,\"maxLength\":100"
                    "},\"scopes\":{\"type\":\"array\",\"items\":{\"enum\":[\"read\",\"write\","
                    "\"deploy\",\"admin\"]},\"minIt"
                    "ems\":1,\"uniqueItems\":true},\"expires_in\":{\"type\":\"integer\","
                    "\"minimum\":60,\"maximum\":315"
                    "360000}},\"required\":[\"name\",\"scopes\"],\"additionalProperties\":false}"},
    {"TokenCreated",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
     "\"name\":{\"type\":\"string\"},"
     "\"scopes\":{\"type\":\"array\",\"items\":{\"enum\":[\"read\",\"write\",\"deploy\",\"admin\"]}"
     "},"
     "\"expires_at\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"date-time\"},{\"type\":\"null\"}"
     "]},"
     "\"last_used_at\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"date-time\"},{\"type\":"
     "\"null\"}]},"
     "\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
     "\"token\":{\"type\":\"string\",\"description\":\"swt_ secret, shown only here\"}},"
     "\"required\":[\"id\",\"name\",\"scopes\",\"expires_at\",\"created_at\",\"token\"],"
     "\"additionalProperties\":false}"},
    {"UserCreate", "{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\","
                   "\"maxLength\":254},\"password\":"
                   "{\"type\":\"string\",\"minLength\":10,\"maxLength\":256},\"name\":{\"type\":"
                   "\"string\",\"maxLength\""
                   ":200},\"role\":{\"enum\":[\"owner\",\"admin\",\"member\"]}},\"required\":["
                   "\"email\",\"password\"],\"a"
                   "dditionalProperties\":false}"},
    {"UserUpdate", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                   "\"maxLength\":200},\"role\":{\"enu"
                   "m\":[\"owner\",\"admin\",\"member\"]},\"password\":{\"type\":\"string\","
                   "\"minLength\":10,\"maxLength"
                   "\":256}},\"additionalProperties\":false,\"minProperties\":1}"},
    {"Project", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":"
                "\"uuid\"},\"name\":{\"type\""
                ":\"string\"},\"description\":{\"type\":\"string\"},\"created_by\":{\"oneOf\":[{"
                "\"type\":\"string\",\""
                "format\":\"uuid\"},{\"type\":\"null\"}]},\"created_at\":{\"type\":\"string\","
                "\"format\":\"date-time\""
                "},\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"role\":{"
                "\"enum\":[\"admin\",\"devel"
                "oper\",\"viewer\"]}},\"required\":[\"id\",\"name\",\"description\",\"created_by\","
                "\"created_at\",\"u"
                "pdated_at\",\"role\"],\"additionalProperties\":false}"},
    {"ProjectList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/Project\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"require"
     "d\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"ProjectCreate", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                      "\"minLength\":1,\"maxLength\":100"
                      "},\"description\":{\"type\":\"string\",\"maxLength\":1000}},\"required\":["
                      "\"name\"],\"additionalP"
                      "roperties\":false}"},
    {"ProjectUpdate", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                      "\"minLength\":1,\"maxLength\":100"
                      "},\"description\":{\"type\":\"string\",\"maxLength\":1000}},"
                      "\"additionalProperties\":false,\"mi"
                      "nProperties\":1}"},
    {"Member", "{\"type\":\"object\",\"properties\":{\"user_id\":{\"type\":\"string\",\"format\":"
               "\"uuid\"},\"email\":{"
               "\"type\":\"string\"},\"name\":{\"type\":\"string\"},\"role\":{\"enum\":[\"admin\","
               "\"developer\",\"viewe"
               "r\"]},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"updated_at\":"
               "{\"type\":\"strin"
               "g\",\"format\":\"date-time\"}},\"required\":[\"user_id\",\"email\",\"name\","
               "\"role\",\"created_at\",\""
               "updated_at\"],\"additionalProperties\":false}"},
    {"MemberList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/Member\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required"
     "\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"MemberPut", "{\"type\":\"object\",\"properties\":{\"role\":{\"enum\":[\"admin\","
                  "\"developer\",\"viewer\"]}},\"requ"
                  "ired\":[\"role\"],\"additionalProperties\":false}"},
    {"Environment", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":"
                    "\"uuid\"},\"project_id\":{"
                    "\"type\":\"string\",\"format\":\"uuid\"},\"name\":{\"type\":\"string\","
                    "\"pattern\":\"^[a-z0-9]([a-z0-"
                    "9-]{0,61}[a-z0-9])?$\"},\"created_at\":{\"type\":\"string\",\"format\":\"date-"
                    "time\"},\"updated_"
                    "at\":{\"type\":\"string\",\"format\":\"date-time\"}},\"required\":[\"id\","
                    "\"project_id\",\"name\",\"cr"
                    "eated_at\",\"updated_at\"],\"additionalProperties\":false}"},
    {"EnvironmentList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/Environment\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"req"
     "uired\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"EnvironmentWrite",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":\"^[a-z0-9](["
     "a-z0-9-"
     "]{0,61}[a-z0-9])?$\"}},\"required\":[\"name\"],\"additionalProperties\":false}"},
    {"App", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":\"^[a-"
            "z0-9]([a-z0-9-"
            "]{0,61}[a-z0-9])?$\"},\"repo_url\":{\"type\":\"string\",\"maxLength\":2048},"
            "\"branch\":{\"type\":"
            "\"string\",\"maxLength\":255},\"build_command\":{\"type\":\"string\",\"maxLength\":"
            "4096},\"start_"
            "command\":{\"type\":\"string\",\"maxLength\":4096},\"dockerfile_path\":{\"type\":"
            "\"string\",\"maxL"
            "ength\":255},\"runtime\":{\"enum\":[\"process\",\"container\"]},\"port\":{\"type\":"
            "\"integer\",\"min"
            "imum\":1,\"maximum\":65535},\"health_check_path\":{\"type\":\"string\",\"pattern\":\"^"
            "/\"},\"repli"
            "cas\":{\"type\":\"integer\",\"minimum\":1},\"resources\":{\"type\":\"object\","
            "\"properties\":{\"cpu\""
            ":{\"type\":\"string\"},\"memory\":{\"type\":\"string\"}},\"additionalProperties\":"
            "false},\"auto_d"
            "eploy\":{\"type\":\"boolean\"},\"has_git_token\":{\"type\":\"boolean\"},"
            "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
            "\"project_id\":{\"type"
            "\":\"string\",\"format\":\"uuid\"},\"environment_id\":{\"type\":\"string\",\"format\":"
            "\"uuid\"},\"stat"
            "us\":{\"enum\":[\"idle\",\"deploying\",\"running\",\"stopped\",\"crashed\"]},"
            "\"endpoints\":{\"type\":"
            "\"array\",\"items\":{\"type\":\"string\"}},\"active_deployment_id\":{\"oneOf\":[{"
            "\"type\":\"string\""
            ",\"format\":\"uuid\"},{\"type\":\"null\"}]},\"created_at\":{\"type\":\"string\","
            "\"format\":\"date-tim"
            "e\"},\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"}},\"required\":["
            "\"name\",\"repo_ur"
            "l\",\"branch\",\"build_command\",\"start_command\",\"dockerfile_path\",\"runtime\","
            "\"port\",\"heal"
            "th_check_path\",\"replicas\",\"resources\",\"auto_deploy\",\"id\",\"project_id\","
            "\"environment_i"
            "d\",\"status\",\"endpoints\",\"active_deployment_id\",\"has_git_token\","
            "\"created_at\",\"updated_at\"],"
            "\"additiona"
            "lProperties\":false}"},
    {"AppList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/App\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required\":["
     "\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"AppCreate", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":"
                  "\"^[a-z0-9]([a-z0-9-"
                  "]{0,61}[a-z0-9])?$\"},\"repo_url\":{\"type\":\"string\",\"maxLength\":2048},"
                  "\"branch\":{\"type\":"
                  "\"string\",\"maxLength\":255},\"build_command\":{\"type\":\"string\","
                  "\"maxLength\":4096},\"start_"
                  "command\":{\"type\":\"string\",\"maxLength\":4096},\"dockerfile_path\":{"
                  "\"type\":\"string\",\"maxL"
                  "ength\":255},\"runtime\":{\"enum\":[\"process\",\"container\"]},\"port\":{"
                  "\"type\":\"integer\",\"min"
                  "imum\":1,\"maximum\":65535},\"health_check_path\":{\"type\":\"string\","
                  "\"pattern\":\"^/\"},\"repli"
                  "cas\":{\"type\":\"integer\",\"minimum\":1},\"resources\":{\"type\":\"object\","
                  "\"properties\":{\"cpu\""
                  ":{\"type\":\"string\"},\"memory\":{\"type\":\"string\"}},"
                  "\"additionalProperties\":false},\"auto_d"
                  "eploy\":{\"type\":\"boolean\"},\"git_token\":{\"oneOf\":[{\"type\":"
                  "\"string\",\"minLength\":1,\"maxLength\":4096,\"writeOnly\":true},{"
                  "\"type\":\"null\"}]},\"environment_id\":{\"type\":\"string\","
                  "\"format\":\"uuid\"},\"projec"
                  "t_id\":{\"type\":\"string\",\"format\":\"uuid\"}},\"required\":[\"name\","
                  "\"environment_id\"],\"addit"
                  "ionalProperties\":false}"},
    {"AppUpdate",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":\"^[a-z0-9](["
     "a-z0-9-"
     "]{0,61}[a-z0-9])?$\"},\"repo_url\":{\"type\":\"string\",\"maxLength\":2048},\"branch\":{"
     "\"type\":"
     "\"string\",\"maxLength\":255},\"build_command\":{\"type\":\"string\",\"maxLength\":4096},"
     "\"start_"
     "command\":{\"type\":\"string\",\"maxLength\":4096},\"dockerfile_path\":{\"type\":\"string\","
     "\"maxL"
     "ength\":255},\"runtime\":{\"enum\":[\"process\",\"container\"]},\"port\":{\"type\":"
     "\"integer\",\"min"
     "imum\":1,\"maximum\":65535},\"health_check_path\":{\"type\":\"string\",\"pattern\":\"^/"
     "\"},\"repli"
     "cas\":{\"type\":\"integer\",\"minimum\":1},\"resources\":{\"type\":\"object\",\"properties\":"
     "{\"cpu\""
     ":{\"type\":\"string\"},\"memory\":{\"type\":\"string\"}},\"additionalProperties\":false},"
     "\"auto_d"
     "eploy\":{\"type\":\"boolean\"},\"git_token\":{\"oneOf\":[{\"type\":\"string\","
     "\"minLength\":1,\"maxLength\":4096,\"writeOnly\":true},{\"type\":\"null\"}]}},"
     "\"additionalProperties\":false,\"minProperties\":1}"},
    {"EnvVar", "{\"type\":\"object\",\"properties\":{\"key\":{\"type\":\"string\"},\"build_time\":{"
               "\"type\":\"boolean"
               "\"},\"runtime\":{\"type\":\"boolean\"},\"has_value\":{\"type\":\"boolean\"},"
               "\"updated_at\":{\"type\":"
               "\"string\",\"format\":\"date-time\"}},\"required\":[\"key\",\"build_time\","
               "\"runtime\",\"has_value\""
               ",\"updated_at\"],\"additionalProperties\":false}"},
    {"EnvList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/EnvVar\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required"
     "\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"EnvBulk",
     "{\"type\":\"object\",\"properties\":{\"vars\":{\"type\":\"object\",\"minProperties\":1,"
     "\"maxPropert"
     "ies\":100,\"propertyNames\":{\"pattern\":\"^[A-Za-z_][A-Za-z0-9_]*$\"},\"additionalPropertie"
     "s\":{\"type\":\"string\",\"maxLength\":65536}}},\"required\":[\"vars\"],"
     "\"additionalProperties\":"
     "false}"},
    {"EnvPut", "{\"type\":\"object\",\"properties\":{\"value\":{\"type\":\"string\",\"maxLength\":"
               "65536},\"build_ti"
               "me\":{\"type\":\"boolean\"},\"runtime\":{\"type\":\"boolean\"}},\"required\":["
               "\"value\"],\"additiona"
               "lProperties\":false}"},
    {"Domain", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":"
               "\"uuid\"},\"app_id\":{\"typ"
               "e\":\"string\",\"format\":\"uuid\"},\"hostname\":{\"type\":\"string\"},\"created_"
               "at\":{\"type\":\"stri"
               "ng\",\"format\":\"date-time\"}},\"required\":[\"id\",\"app_id\",\"hostname\","
               "\"created_at\"],\"addit"
               "ionalProperties\":false}"},
    {"DomainList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/Domain\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required"
     "\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"DomainCreate", "{\"type\":\"object\",\"properties\":{\"hostname\":{\"type\":\"string\","
                     "\"maxLength\":253}},\"requir"
                     "ed\":[\"hostname\"],\"additionalProperties\":false}"},
    {"Webhook",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
     "\"url\":{\"type\":\"string\",\"maxLength\":2048},\"events\":{\"type\":\"array\",\"item"
     "s\":{\"enum\":[\"deployment.started\",\"deployment.succeeded\",\"deployment.failed\",\""
     "deployment.cancelled\",\"app.created\",\"app.deleted\"]},\"minItems\":1},\"project_id\""
     ":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]},\"created"
     "_by\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]},\"cr"
     "eated_at\":{\"type\":\"string\",\"format\":\"date-time\"}},\"required\":[\"id\",\"url\""
     ",\"events\",\"project_id\",\"created_by\",\"created_at\"],\"additionalProperties\":fal"
     "se}"},
    {"WebhookList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":"
     "\"#/components/schemas/Webhook\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pag"
     "ination\"}},\"required\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"WebhookCreate",
     "{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\",\"maxLength\":2048,\""
     "description\":\"http:// target; no credentials; must resolve to public addresses unles"
     "s SLIPWAY_WEBHOOK_ALLOW_PRIVATE\"},\"events\":{\"type\":\"array\",\"items\":{\"enum\":"
     "[\"deployment.started\",\"deployment.succeeded\",\"deployment.failed\",\"deployment.ca"
     "ncelled\",\"app.created\",\"app.deleted\"]},\"minItems\":1},\"project_id\":{\"oneOf\":"
     "[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]}},\"required\":[\"url\""
     ",\"events\"],\"additionalProperties\":false}"},
    {"WebhookCreated",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
     "\"url\":{\"type\":\"string\",\"maxLength\":2048},\"events\":{\"type\":\"array\",\"item"
     "s\":{\"enum\":[\"deployment.started\",\"deployment.succeeded\",\"deployment.failed\",\""
     "deployment.cancelled\",\"app.created\",\"app.deleted\"]},\"minItems\":1},\"project_id\""
     ":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]},\"created"
     "_by\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]},\"cr"
     "eated_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"secret\":{\"type\":\"strin"
     "g\",\"pattern\":\"^[0-9a-f]{64}$\",\"description\":\"the HMAC-SHA256 key for X-Slipway"
     "-Signature; shown only here\"}},\"required\":[\"id\",\"url\",\"events\",\"project_id\""
     ",\"created_by\",\"created_at\",\"secret\"],\"additionalProperties\":false}"},
    {"WebhookAttempt",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"delivery_id\":{\""
     "type\":\"string\",\"format\":\"uuid\"},\"event\":{\"enum\":[\"deployment.started\",\"d"
     "eployment.succeeded\",\"deployment.failed\",\"deployment.cancelled\",\"app.created\",\""
     "app.deleted\"]},\"attempt\":{\"type\":\"integer\",\"minimum\":1},\"status_code\":{\"on"
     "eOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]},\"latency_ms\":{\"type\":\"integer"
     "\"},\"response\":{\"type\":\"string\",\"description\":\"the answer's first bytes (at m"
     "ost 1 KiB)\"},\"error\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]},\"crea"
     "ted_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"next_attempt_at\":{\"oneOf\""
     ":[{\"type\":\"string\",\"format\":\"date-time\"},{\"type\":\"null\"}]},\"delivery_stat"
     "e\":{\"enum\":[\"pending\",\"delivered\",\"failed\"]}},\"required\":[\"id\",\"delivery"
     "_id\",\"event\",\"attempt\",\"status_code\",\"latency_ms\",\"response\",\"error\",\"cr"
     "eated_at\",\"next_attempt_at\",\"delivery_state\"],\"additionalProperties\":false}"},
    {"WebhookAttemptList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":"
     "\"#/components/schemas/WebhookAttempt\"}},\"pagination\":{\"$ref\":\"#/components/sche"
     "mas/Pagination\"}},\"required\":[\"data\",\"pagination\"],\"additionalProperties\":fal"
     "se}"},
    {"AuditEntry", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"at\":{"
                   "\"type\":\"string\",\"format"
                   "\":\"date-time\"},\"actor_id\":{\"oneOf\":[{\"type\":\"string\",\"format\":"
                   "\"uuid\"},{\"type\":\"null\""
                   "}]},\"actor_email\":{\"type\":\"string\"},\"action\":{\"type\":\"string\"},"
                   "\"resource\":{\"type\":\"s"
                   "tring\"},\"resource_id\":{\"type\":\"string\"},\"project_id\":{\"oneOf\":[{"
                   "\"type\":\"string\",\"for"
                   "mat\":\"uuid\"},{\"type\":\"null\"}]},\"address\":{\"type\":\"string\"},"
                   "\"details\":{\"type\":\"object"
                   "\"}},\"required\":[\"id\",\"at\",\"actor_id\",\"actor_email\",\"action\","
                   "\"resource\",\"resource_id\""
                   ",\"project_id\",\"address\",\"details\"],\"additionalProperties\":false}"},
    {"AuditList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/AuditEntry\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"requ"
     "ired\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"Deployment",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":"
     "\"uuid\"},\"app_id\":{\"typ"
     "e\":\"string\",\"format\":\"uuid\"},\"project_id\":{\"type\":\"string\","
     "\"format\":\"uuid\"},\"deploym"
     "ent_number\":{\"type\":\"integer\"},\"status\":{\"enum\":[\"pending\","
     "\"building\",\"deploying\",\"s"
     "uccess\",\"failed\",\"cancelled\",\"rolled_back\"]},\"stage\":{\"enum\":["
     "\"queued\",\"cloning_repo"
     "\",\"building_image\",\"starting_new\",\"health_check\",\"switching_traffic\","
     "\"stopping_old\","
     "\"completed\"]},\"progress\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":"
     "100},\"ref\":{\"type\":"
     "\"string\"},\"commit_sha\":{\"type\":\"string\"},\"commit_hash\":{\"type\":"
     "\"string\"},\"commit_mes"
     "sage\":{\"type\":\"string\"},\"commit_author\":{\"type\":\"string\","
     "\"description\":\"Name <email>, when a push hook reported it\"},"
     "\"error_message\":{\"oneOf\":[{\"type\":"
     "\"string\"},{\"type\":\"null\"}]"
     "},\"rolled_back_from\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{"
     "\"type\":\"null\"}]},\""
     "is_active\":{\"type\":\"boolean\"},\"node_id\":{\"oneOf\":[{\"type\":"
     "\"string\"},{\"type\":\"null\"}]"
     "},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"started_at\":"
     "{\"oneOf\":[{\"type\""
     ":\"string\",\"format\":\"date-time\"},{\"type\":\"null\"}]},\"finished_at\":{"
     "\"oneOf\":[{\"type\":\"s"
     "tring\",\"format\":\"date-time\"},{\"type\":\"null\"}]},\"duration\":{"
     "\"oneOf\":[{\"type\":\"number\""
     "},{\"type\":\"null\"}]},\"queue_position\":{\"oneOf\":[{\"type\":\"integer\"},{"
     "\"type\":\"null\"}]}}"
     ",\"required\":[\"id\",\"app_id\",\"project_id\",\"deployment_number\","
     "\"status\",\"stage\",\"progre"
     "ss\",\"ref\",\"commit_sha\",\"commit_hash\",\"commit_message\",\"commit_author\","
     "\"error_message\",\"rolled_back_f"
     "rom\",\"is_active\",\"node_id\",\"created_at\",\"started_at\",\"finished_at\","
     "\"duration\",\"queue"
     "_position\"],\"additionalProperties\":false}"},
    {"DeploymentList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/Deployment\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"requ"
     "ired\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"DeploymentCreate",
     "{\"type\":\"object\",\"properties\":{\"ref\":{\"type\":\"string\",\"maxLength\":255},"
     "\"commit_sha\":"
     "{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{7,40}$\"}},\"additionalProperties\":false}"},
    {"HookInfo",
     "{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\",\"description\":\"where "
     "the git host sends deliveries\"},\"configured\":{\"type\":\"boolean\"},\"created_at\":{"
     "\"oneOf\":[{\"type\":\"string\",\"format\":\"date-time\"},{\"type\":\"null\"}]},"
     "\"rotated_at\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"date-time\"},{\"type\":"
     "\"null\"}]}},\"required\":[\"url\",\"configured\",\"created_at\",\"rotated_at\"],"
     "\"additionalProperties\":false}"},
    {"HookRotated",
     "{\"type\":\"object\",\"properties\":{\"secret\":{\"type\":\"string\",\"pattern\":"
     "\"^[0-9a-f]{64}$\",\"description\":\"the hook secret, shown only here\"},\"url\":{\"type\":"
     "\"string\"},\"configured\":{\"const\":true},\"created_at\":{\"type\":\"string\","
     "\"format\":\"date-time\"},\"rotated_at\":{\"type\":\"string\",\"format\":\"date-time\"}},"
     "\"required\":[\"secret\",\"url\",\"configured\",\"created_at\",\"rotated_at\"],"
     "\"additionalProperties\":false}"},
    {"HookResult",
     "{\"type\":\"object\",\"properties\":{\"action\":{\"enum\":[\"deployed\",\"ignored\","
     "\"duplicate\",\"pong\"]},\"reason\":{\"type\":\"string\"},\"deployment\":{\"$ref\":\"#/"
     "components/schemas/Deployment\"}},\"required\":[\"action\"],\"additionalProperties\":"
     "false}"},
    {"LiveMessage",
     "{\"type\":\"object\",\"properties\":{\"type\":{\"enum\":[\"status\",\"log\",\"metrics\","
     "\"lagged\",\"end\",\"error\"]},\"timestamp\":{\"type\":\"string\",\"format\":\"date-time\"},"
     "\"data\":{\"type\":\"object\"}},\"required\":[\"type\",\"timestamp\",\"data\"]}"},
    {"KnownHost",
     "{\"type\":\"object\",\"properties\":{\"host\":{\"type\":\"string\"},\"key_type\":{"
     "\"type\":[\"string\",\"null\"]},\"sha256\":{\"type\":\"string\",\"pattern\":"
     "\"^SHA256:[A-Za-z0-9+/]{43}$\"},\"source\":{\"enum\":[\"first_use\",\"user\"]},"
     "\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"}},\"required\":["
     "\"host\",\"key_type\",\"sha256\",\"source\",\"created_at\"],"
     "\"additionalProperties\":false}"},
    {"SystemMetrics",
     "{\"type\":\"object\",\"properties\":{\"node\":{\"type\":\"string\"},\"cpu_percent\":"
     "{\"type\":\"number\"},\"memory\":{\"type\":\"object\",\"properties\":{\"total_bytes"
     "\":{\"type\":\"integer\"},\"available_bytes\":{\"type\":\"integer\"}},\"required\":["
     "\"total_bytes\",\"available_bytes\"],\"additionalProperties\":false},\"load\":{\"type"
     "\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":3,\"maxItems\":3},\"disk\""
     ":{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"},\"total_bytes\""
     ":{\"type\":\"integer\"},\"free_bytes\":{\"type\":\"integer\"}},\"required\":[\"path"
     "\",\"total_bytes\",\"free_bytes\"],\"additionalProperties\":false},\"network\":{\"typ"
     "e\":\"object\",\"properties\":{\"rx_bytes_per_s\":{\"type\":\"number\"},\"tx_bytes_p"
     "er_s\":{\"type\":\"number\"}},\"required\":[\"rx_bytes_per_s\",\"tx_bytes_per_s\"],"
     "\"additionalProperties\":false},\"process\":{\"type\":\"object\",\"properties\":{\"rs"
     "s_bytes\":{\"type\":\"integer\"}},\"required\":[\"rss_bytes\"],\"additionalPropertie"
     "s\":false},\"deployments_running\":{\"type\":\"integer\",\"minimum\":0}},\"required"
     "\":[\"node\",\"cpu_percent\",\"memory\",\"load\",\"disk\",\"network\",\"process\",\"d"
     "eployments_running\"],\"additionalProperties\":false}"},
    {"NodeInstance",
     "{\"type\":\"object\",\"properties\":{\"app_id\":{\"type\":\"string\",\"format\":\"uu"
     "id\"},\"deployment_id\":{\"type\":\"string\",\"format\":\"uuid\"},\"name\":{\"type\""
     ":\"string\"},\"endpoint\":{\"type\":\"string\"},\"pid\":{\"oneOf\":[{\"type\":\"inte"
     "ger\"},{\"type\":\"null\"}]},\"state\":{\"enum\":[\"starting\",\"running\",\"restart"
     "ing\",\"stopping\"]},\"restarts\":{\"type\":\"integer\",\"minimum\":0}},\"required\""
     ":[\"app_id\",\"deployment_id\",\"name\",\"endpoint\",\"pid\",\"state\",\"restarts\"]"
     ",\"additionalProperties\":false}"},
    {"Node", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\""
             "},\"name\":{\"type\":\"string\"},\"role\":{\"enum\":[\"api\",\"worker\",\"all\"]},\""
             "version\":{\"type\":\"string\"},\"status\":{\"enum\":[\"up\",\"lost\",\"stopped\"],"
             "\"description\":\"up: heartbeats arrive; lost: three intervals without one and no dra"
             "in; stopped: drained\"},\"listen\":{\"type\":\"string\"},\"started_at\":{\"type\":\""
             "string\",\"format\":\"date-time\"},\"heartbeat_at\":{\"type\":\"string\",\"format\":"
             "\"date-time\"},\"heartbeat_ms\":{\"type\":\"integer\",\"minimum\":1},\"stopped_at\":"
             "{\"oneOf\":[{\"type\":\"string\",\"format\":\"date-time\"},{\"type\":\"null\"}]},\"l"
             "oad\":{\"type\":\"object\",\"description\":\"the node's SystemMetrics at its last he"
             "artbeat\"},\"instances\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/sche"
             "mas/NodeInstance\"},\"description\":\"the app instances it supervises (empty unless "
             "up)\"}},\"required\":[\"id\",\"name\",\"role\",\"version\",\"status\",\"listen\",\"s"
             "tarted_at\",\"heartbeat_at\",\"heartbeat_ms\",\"stopped_at\",\"load\",\"instances\"]"
             ",\"additionalProperties\":false}"},
    {"NodeList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref"
     "\":\"#/components/schemas/Node\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pa"
     "gination\"}},\"required\":[\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"KnownHosts",
     "{\"type\":\"object\",\"properties\":{\"known_hosts\":{\"type\":\"array\",\"items\":"
     "{\"$ref\":\"#/components/schemas/KnownHost\"}}},\"required\":[\"known_hosts\"],"
     "\"additionalProperties\":false}"},
    {"KnownHostsPut",
     "{\"type\":\"object\",\"properties\":{\"known_hosts\":{\"type\":\"array\","
     "\"maxItems\":100,\"items\":{\"oneOf\":[{\"type\":\"string\",\"description\":"
     "\"an OpenSSH known_hosts line: host[,host] key-type base64\"},{\"type\":\"object\","
     "\"properties\":{\"host\":{\"type\":\"string\"},\"sha256\":{\"type\":\"string\","
     "\"pattern\":\"^SHA256:[A-Za-z0-9+/]{43}$\"},\"key_type\":{\"type\":\"string\"}},"
     "\"required\":[\"host\",\"sha256\"],\"additionalProperties\":false}]}}},"
     "\"required\":[\"known_hosts\"],\"additionalProperties\":false}"},
    {"DeployKey", "{\"type\":\"object\",\"properties\":{\"public_key\":{\"type\":\"string\","
                  "\"pattern\":\"^ssh-ed25519 \"},\"fingerprint\":{\"type\":\"string\",\"pattern\":"
                  "\"^SHA256:\"},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
                  "\"known_hosts\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/"
                  "KnownHost\"}}},\"required\":[\"public_key\",\"fingerprint\",\"created_at\","
                  "\"known_hosts\"],\"additionalProperties\":false}"},
    {"AppLogs",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"type\":"
     "\"object\",\"properties\":{\"seq\":{\"type\":\"integer\"},\"stream\":{\"enum\":["
     "\"stdout\",\"stderr\",\"system\"]},\"line\":{\"type\":\"string\"},\"instance\":{"
     "\"type\":\"string\"},\"timestamp\":{\"type\":\"string\",\"format\":\"date-time\"}},"
     "\"required\":[\"seq\",\"stream\",\"line\",\"instance\",\"timestamp\"],"
     "\"additionalProperties\":false}}},\"required\":[\"data\"],\"additionalProperties\":"
     "false}"},
    {"DeploymentLogs",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"type\":"
     "\"object\",\"prop"
     "erties\":{\"seq\":{\"type\":\"integer\"},\"stream\":{\"enum\":[\"stdout\",\"stderr\","
     "\"system\"]},\"li"
     "ne\":{\"type\":\"string\"},\"timestamp\":{\"type\":\"string\",\"format\":\"date-time\"}},"
     "\"required\""
     ":[\"seq\",\"stream\",\"line\",\"timestamp\"],\"additionalProperties\":false}},\"next_seq\":{"
     "\"typ"
     "e\":\"integer\"}},\"required\":[\"data\",\"next_seq\"],\"additionalProperties\":false}"},
};

static json_t *schema_ref(const char *name)
{
    char ref[128];
    snprintf(ref, sizeof(ref), "#/components/schemas/%s", name);
    return json_pack("{s:s}", "$ref", ref);
}

static json_t *json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

/* "/api/v1/apps/:id" -> "/api/v1/apps/{id}", collecting the parameter names. */
static char *openapi_path(const char *pattern, json_t *params)
{
    sw_buf_t b = SW_BUF_INIT;
    for (const char *p = pattern; *p;) {
        if (*p == ':' && p > pattern && p[-1] == '/') {
            size_t len = strcspn(p + 1, "/");
            char *name = sw_strndup(p + 1, len);
            sw_buf_printf(&b, "{%s}", name);
            json_array_append_new(params,
                                  json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "path",
                                            "required", 1, "schema", "type", "string"));
            free(name);
            p += len + 1;
        } else {
            sw_buf_append_char(&b, *p++);
        }
    }
    return sw_buf_steal(&b);
}

static json_t *operation(const sw_route_t *r)
{
    json_t *params = json_array();
    char *path = openapi_path(r->pattern, params);
    free(path);

    char opid[160];
    size_t n = (size_t)snprintf(opid, sizeof(opid), "%s", r->method);
    for (const char *p = r->pattern; *p && n + 1 < sizeof(opid); p++)
        opid[n++] = (*p == '/' || *p == ':' || *p == '.' || *p == '-') ? '_' : *p;
    opid[n] = '\0';
    for (char *p = opid; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');

    json_t *responses = json_object();
    char code[8];
    snprintf(code, sizeof(code), "%d", r->success_status ? r->success_status : 200);
    json_t *ok = json_pack("{s:s}", "description", "Success");
    if (r->live)
        json_object_set_new(ok, "content",
                            json_pack("{s:{s:o}, s:{s:{s:s}}}", "application/x-ndjson", "schema",
                                      schema_ref(r->response_schema), "text/event-stream", "schema",
                                      "type", "string"));
    else if (r->response_schema)
        json_object_set_new(ok, "content", json_content(schema_ref(r->response_schema)));
    else if (strcmp(r->pattern, "/metrics") == 0)
        json_object_set_new(ok, "content",
                            json_pack("{s:{s:{s:s}}}", "text/plain", "schema", "type", "string"));
    else if (strcmp(r->pattern, "/api/v1/openapi.json") == 0)
        json_object_set_new(ok, "content", json_content(json_pack("{s:s}", "type", "object")));
    if (r->other_status) {
        char other[8];
        snprintf(other, sizeof(other), "%d", r->other_status);
        json_object_set_new(
            responses, other,
            r->other_status == 101
                ? json_pack("{s:s}", "description", "WebSocket: one text frame per message")
                : json_deep_copy(ok));
    }
    json_object_set_new(responses, code, ok);
    if (strcmp(r->pattern, "/health") == 0 || strcmp(r->pattern, "/ready") == 0)
        json_object_set_new(
            responses, "503",
            json_pack(
                "{s:s, s:o}", "description", "Not healthy or not ready", "content",
                json_content(schema_ref(strcmp(r->pattern, "/health") == 0 ? "Health" : "Error"))));
    json_object_set_new(responses, "default",
                        json_pack("{s:s, s:o}", "description", "Error", "content",
                                  json_content(schema_ref("Error"))));

    json_t *op = json_pack("{s:s, s:s, s:[s], s:o}", "operationId", opid, "summary", r->summary,
                           "tags", r->tag ? r->tag : "default", "responses", responses);
    if (json_array_size(params))
        json_object_set(op, "parameters", params);
    json_decref(params);
    if (r->request_schema)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:o}", "required", 1, "content",
                                      json_content(schema_ref(r->request_schema))));
    static const char *const auth_names[SW_AUTH_MAX] = {"public", "user", "session"};
    json_object_set_new(
        op, "x-slipway-access",
        json_pack("{s:s, s:o, s:o, s:o}", "auth", auth_names[r->access.auth], "project_role",
                  r->access.project_role
                      ? json_string(sw_project_role_name((sw_project_role_t)r->access.project_role))
                      : json_null(),
                  "role",
                  r->access.role ? json_string(sw_user_role_name((sw_user_role_t)r->access.role))
                                 : json_null(),
                  "scope",
                  r->access.scope ? json_string(sw_scope_name(r->access.scope)) : json_null()));
    if (r->response_schema && strlen(r->response_schema) > 4 &&
        strcmp(r->response_schema + strlen(r->response_schema) - 4, "List") == 0) {
        static const char *const list_params[][2] = {
            {"page", "1-based page number"},
            {"limit", "items per page, 1 to 100 (default 20)"},
            {"offset", "items to skip, instead of page"},
            {"sort", "field[:asc|desc]"},
        };
        json_t *qp = json_object_get(op, "parameters");
        if (!qp) {
            qp = json_array();
            json_object_set_new(op, "parameters", qp);
        }
        for (const char *f = r->filters; f && *f;) {
            size_t flen = strcspn(f, ",");
            char *name = sw_strndup(f, flen);
            bool is_id = flen > 3 && strcmp(name + flen - 3, "_id") == 0;
            json_t *schema = is_id ? json_pack("{s:s, s:s}", "type", "string", "format", "uuid")
                                   : json_pack("{s:s}", "type", "string");
            json_array_append_new(qp, json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", name, "in",
                                                "query", "required", 0, "description", "filter",
                                                "schema", schema));
            free(name);
            f += flen + (f[flen] == ',');
        }
        for (size_t i = 0; i < SW_ARRAY_SIZE(list_params); i++)
            json_array_append_new(qp, json_pack("{s:s, s:s, s:b, s:s, s:{s:s}}", "name",
                                                list_params[i][0], "in", "query", "required", 0,
                                                "description", list_params[i][1], "schema", "type",
                                                i == 3 ? "string" : "integer"));
    }
    if (strncmp(r->pattern, "/api/v1/", 8) == 0 && !r->stateless)
        json_object_set_new(responses, "429",
                            json_pack("{s:s, s:o}", "description", "Rate limit exceeded", "content",
                                      json_content(schema_ref("Error"))));
    if (r->access.project_from != SW_FROM_NONE)
        json_object_set_new(responses, "404",
                            json_pack("{s:s, s:o}", "description",
                                      "No such resource, or not visible to the caller", "content",
                                      json_content(schema_ref("Error"))));
    if (r->request_schema)
        json_object_set_new(responses, "400",
                            json_pack("{s:s, s:o}", "description",
                                      "Validation error, with field details", "content",
                                      json_content(schema_ref("Error"))));
    if (r->access.auth == SW_AUTH_PUBLIC)
        json_object_set_new(op, "security", json_array());
    else if (r->access.auth == SW_AUTH_SESSION)
        json_object_set_new(op, "security", json_pack("[{s:[]}, {s:[]}]", "cookie", "bearer"));
    if (r->access.auth != SW_AUTH_PUBLIC) {
        json_object_set_new(responses, "401",
                            json_pack("{s:s, s:o}", "description", "Not authenticated", "content",
                                      json_content(schema_ref("Error"))));
        json_object_set_new(responses, "403",
                            json_pack("{s:s, s:o}", "description", "Authenticated, but not allowed",
                                      "content", json_content(schema_ref("Error"))));
    }
    return op;
}

json_t *sw_api_openapi(const sw_route_t *routes, size_t count)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < count; i++) {
        json_t *params = json_array();
        char *path = openapi_path(routes[i].pattern, params);
        json_decref(params);
        json_t *item = json_object_get(paths, path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, path, item);
        }
        char method[16];
        snprintf(method, sizeof(method), "%s", routes[i].method);
        for (char *p = method; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        json_object_set_new(item, method, operation(&routes[i]));
        free(path);
    }

    json_t *comp_schemas = json_object();
    for (size_t i = 0; i < SW_ARRAY_SIZE(schemas); i++) {
        json_error_t err;
        json_t *s = json_loads(schemas[i].schema, 0, &err);
        if (s)
            json_object_set_new(comp_schemas, schemas[i].name, s);
    }
    return json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:o, s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}}}, "
                     "s:[{s:[]}, {s:[]}]}",
                     "openapi", "3.1.0", "info", "title", "Slipway API", "version", SW_VERSION,
                     "description", "Self-hosted platform-as-a-service control plane.", "paths",
                     paths, "components", "schemas", comp_schemas, "securitySchemes", "bearer",
                     "type", "http", "scheme", "bearer", "cookie", "type", "apiKey", "in", "cookie",
                     "name", "slipway_session", "security", "bearer", "cookie");
}

void sw_api_get_openapi(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    /* The document only changes with the binary: build it once per process. */
    if (!api->openapi.base) {
        json_t *doc = sw_api_openapi(sw_api_routes, sw_api_routes_count);
        sw_json_dump(&api->openapi, doc);
        sw_buf_append_char(&api->openapi, '\n');
        json_decref(doc);
    }
    sw_http_respond(req, 200, "application/json", api->openapi.base, api->openapi.len);
}
