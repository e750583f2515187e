/* JSON Schemas by name, referenced from the route table as request_schema / response_schema:
 * openapi.json publishes them, and request bodies are checked against their fields. */
#include "slipway/common.h"

#include "internal.h"

const sw_api_schema_t sw_api_schemas[] = {
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
                    "9-]{0,61}[a-z0-9])?$\"},\"applications\":{\"type\":\"object\","
                    "\"description\":\"How many apps the environment holds, and how many of "
                    "them run now\",\"properties\":{\"total\":{\"type\":\"integer\","
                    "\"minimum\":0},\"active\":{\"type\":\"integer\",\"minimum\":0}},"
                    "\"required\":[\"total\",\"active\"],\"additionalProperties\":false},"
                    "\"created_at\":{\"type\":\"string\",\"format\":\"date-"
                    "time\"},\"updated_"
                    "at\":{\"type\":\"string\",\"format\":\"date-time\"}},\"required\":[\"id\","
                    "\"project_id\",\"name\",\"applications\",\"cr"
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
    {"App", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":"
            "\"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$\"},\"repo_url\":{\"type\":\"string\",\"max"
            "Length\":2048},\"branch\":{\"type\":\"string\",\"maxLength\":255},\"build_comman"
            "d\":{\"type\":\"string\",\"maxLength\":4096},\"start_command\":{\"type\":\"strin"
            "g\",\"maxLength\":4096},\"dockerfile_path\":{\"type\":\"string\",\"maxLength\":2"
            "55},\"runtime\":{\"enum\":[\"process\",\"container\"]},\"port\":{\"type\":\"inte"
            "ger\",\"minimum\":1,\"maximum\":65535},\"health_check_path\":{\"type\":\"string"
            "\",\"pattern\":\"^/\"},\"replicas\":{\"type\":\"integer\",\"minimum\":1},\"resour"
            "ces\":{\"type\":\"object\",\"properties\":{\"cpu\":{\"type\":\"string\"},\"memor"
            "y\":{\"type\":\"string\"}},\"additionalProperties\":false},\"auto_deploy\":{\"ty"
            "pe\":\"boolean\"},\"has_git_token\":{\"type\":\"boolean\"},\"id\":{\"type\":\"st"
            "ring\",\"format\":\"uuid\"},\"project_id\":{\"type\":\"string\",\"format\":\"uui"
            "d\"},\"environment_id\":{\"type\":\"string\",\"format\":\"uuid\"},\"status\":{\""
            "enum\":[\"idle\",\"deploying\",\"running\",\"stopped\",\"crashed\"]},\"endpoints"
            "\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"active_deployment_id\""
            ":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"null\"}]},\"c"
            "reated_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"updated_at\":{\"typ"
            "e\":\"string\",\"format\":\"date-time\"},\"image\":{\"type\":\"string\",\"descri"
            "ption\":\"the image container instances run instead of building the repository\""
            "},\"has_registry_auth\":{\"type\":\"boolean\"},\"resources_enforced\":{\"type\":"
            "[\"boolean\",\"null\"],\"description\":\"whether the node that released the app "
            "enforces resources; null before a release of an app with resources\"},\"resource"
            "s_note\":{\"type\":[\"string\",\"null\"],\"description\":\"why resources are not"
            " enforced\"}},\"required\":[\"name\",\"repo_url\",\"branch\",\"build_command\","
            "\"start_command\",\"dockerfile_path\",\"runtime\",\"port\",\"health_check_path\","
            "\"replicas\",\"resources\",\"auto_deploy\",\"id\",\"project_id\",\"environment_i"
            "d\",\"status\",\"endpoints\",\"active_deployment_id\",\"has_git_token\",\"create"
            "d_at\",\"updated_at\",\"image\",\"has_registry_auth\"],\"additionalProperties\":"
            "false}"},
    {"AppList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/"
     "components/"
     "schemas/App\"}},\"pagination\":{\"$ref\":\"#/components/schemas/Pagination\"}},\"required\":["
     "\"data\",\"pagination\"],\"additionalProperties\":false}"},
    {"AppCreate",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":"
     "\"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$\"},\"repo_url\":{\"type\":\"string\",\"max"
     "Length\":2048},\"branch\":{\"type\":\"string\",\"maxLength\":255},\"build_comman"
     "d\":{\"type\":\"string\",\"maxLength\":4096},\"start_command\":{\"type\":\"strin"
     "g\",\"maxLength\":4096},\"dockerfile_path\":{\"type\":\"string\",\"maxLength\":2"
     "55},\"runtime\":{\"enum\":[\"process\",\"container\"]},\"port\":{\"type\":\"inte"
     "ger\",\"minimum\":1,\"maximum\":65535},\"health_check_path\":{\"type\":\"string"
     "\",\"pattern\":\"^/\"},\"replicas\":{\"type\":\"integer\",\"minimum\":1},\"resour"
     "ces\":{\"type\":\"object\",\"properties\":{\"cpu\":{\"type\":\"string\"},\"memor"
     "y\":{\"type\":\"string\"}},\"additionalProperties\":false},\"auto_deploy\":{\"ty"
     "pe\":\"boolean\"},\"git_token\":{\"oneOf\":[{\"type\":\"string\",\"minLength\":1"
     ",\"maxLength\":4096,\"writeOnly\":true},{\"type\":\"null\"}]},\"environment_id\""
     ":{\"type\":\"string\",\"format\":\"uuid\"},\"project_id\":{\"type\":\"string\","
     "\"format\":\"uuid\"},\"image\":{\"type\":\"string\",\"maxLength\":255,\"descripti"
     "on\":\"registry/name:tag or name@sha256:...; runtime container only\"},\"registr"
     "y_auth\":{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"username\":{\"type\""
     ":\"string\",\"maxLength\":255},\"password\":{\"type\":\"string\",\"maxLength\":4"
     "096}},\"required\":[\"username\",\"password\"],\"additionalProperties\":false},{"
     "\"type\":\"null\"}],\"description\":\"write-only credentials for the image's reg"
     "istry; null clears\"}},\"required\":[\"name\",\"environment_id\"],\"additionalPr"
     "operties\":false}"},
    {"AppUpdate",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":"
     "\"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$\"},\"repo_url\":{\"type\":\"string\",\"max"
     "Length\":2048},\"branch\":{\"type\":\"string\",\"maxLength\":255},\"build_comman"
     "d\":{\"type\":\"string\",\"maxLength\":4096},\"start_command\":{\"type\":\"strin"
     "g\",\"maxLength\":4096},\"dockerfile_path\":{\"type\":\"string\",\"maxLength\":2"
     "55},\"runtime\":{\"enum\":[\"process\",\"container\"]},\"port\":{\"type\":\"inte"
     "ger\",\"minimum\":1,\"maximum\":65535},\"health_check_path\":{\"type\":\"string"
     "\",\"pattern\":\"^/\"},\"replicas\":{\"type\":\"integer\",\"minimum\":1},\"resour"
     "ces\":{\"type\":\"object\",\"properties\":{\"cpu\":{\"type\":\"string\"},\"memor"
     "y\":{\"type\":\"string\"}},\"additionalProperties\":false},\"auto_deploy\":{\"ty"
     "pe\":\"boolean\"},\"git_token\":{\"oneOf\":[{\"type\":\"string\",\"minLength\":1"
     ",\"maxLength\":4096,\"writeOnly\":true},{\"type\":\"null\"}]},\"image\":{\"type"
     "\":\"string\",\"maxLength\":255,\"description\":\"registry/name:tag or name@sha25"
     "6:...; runtime container only\"},\"registry_auth\":{\"oneOf\":[{\"type\":\"objec"
     "t\",\"properties\":{\"username\":{\"type\":\"string\",\"maxLength\":255},\"passw"
     "ord\":{\"type\":\"string\",\"maxLength\":4096}},\"required\":[\"username\",\"pas"
     "sword\"],\"additionalProperties\":false},{\"type\":\"null\"}],\"description\":\""
     "write-only credentials for the image's registry; null clears\"}},\"additionalPro"
     "perties\":false,\"minProperties\":1}"},
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
    {"Domain", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uu"
               "id\"},\"app_id\":{\"type\":\"string\",\"format\":\"uuid\"},\"hostname\":{\"type"
               "\":\"string\"},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"r"
               "outing\":{\"type\":\"object\",\"properties\":{\"status\":{\"enum\":[\"active\","
               "\"pending\",\"error\"]},\"endpoints\":{\"type\":\"array\",\"items\":{\"type\":\""
               "string\"}},\"error\":{\"type\":[\"string\",\"null\"]}},\"required\":[\"status\","
               "\"endpoints\",\"error\"],\"additionalProperties\":false},\"tls\":{\"type\":\"obj"
               "ect\",\"properties\":{\"status\":{\"enum\":[\"active\",\"pending\",\"error\"]},"
               "\"issuer\":{\"type\":[\"string\",\"null\"]},\"not_after\":{\"type\":[\"string\","
               "\"null\"],\"format\":\"date-time\"},\"error\":{\"type\":[\"string\",\"null\"]}},"
               "\"required\":[\"status\",\"issuer\",\"not_after\",\"error\"],\"additionalPropert"
               "ies\":false}},\"required\":[\"id\",\"app_id\",\"hostname\",\"created_at\",\"rout"
               "ing\",\"tls\"],\"additionalProperties\":false}"},
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
     "{\"type\":\"object\",\"properties\":{\"ref\":{\"type\":\"string\",\"maxLength\":"
     "255},\"commit_sha\":{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{7,40}$\"},\"ima"
     "ge\":{\"type\":\"string\",\"maxLength\":255,\"description\":\"registry/name:tag "
     "or name@sha256:...; runtime container only\"}},\"additionalProperties\":false}"},
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
    {"MetricsHistory",
     "{\"type\":\"object\",\"properties\":{\"metric\":{\"enum\":[\"cpu_percent\",\"load_1m\","
     "\"memory_used_bytes\",\"memory_used_percent\",\"disk_free_bytes\",\"disk_used_percent\","
     "\"network_rx_bytes_per_s\",\"network_tx_bytes_per_s\",\"process_rss_bytes\",\"http_conne"
     "ctions\",\"deployments_running\"]},\"unit\":{\"enum\":[\"percent\",\"load\",\"bytes\",\""
     "bytes_per_second\",\"connections\",\"deployments\"]},\"aggregation\":{\"enum\":[\"avg\","
     "\"min\",\"max\"]},\"time_range\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"s"
     "econds covered, up to to\"},\"step\":{\"type\":\"integer\",\"minimum\":1,\"description\""
     ":\"seconds per bucket; buckets are aligned to the epoch\"},\"from\":{\"type\":\"string\""
     ",\"format\":\"date-time\"},\"to\":{\"type\":\"string\",\"format\":\"date-time\"},\"serie"
     "s\":{\"type\":\"array\",\"description\":\"each node with samples in the range (or the on"
     "e asked for), then \\\"all\\\": every node's samples together\",\"items\":{\"type\":\"ob"
     "ject\",\"properties\":{\"node\":{\"type\":\"string\",\"description\":\"the node's name, "
     "or all\"},\"node_id\":{\"oneOf\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\""
     "null\"}]},\"points\":{\"type\":\"array\",\"maxItems\":1001,\"description\":\"[time, valu"
     "e] per bucket that has samples, oldest first\",\"items\":{\"type\":\"array\",\"prefixIte"
     "ms\":[{\"type\":\"integer\",\"description\":\"the bucket's start, seconds since the epoc"
     "h\"},{\"type\":\"number\"}],\"items\":{\"type\":\"number\"},\"minItems\":2,\"maxItems\":2}}},"
     "\"required\":[\"node\",\"no"
     "de_id\",\"points\"],\"additionalProperties\":false}}},\"required\":[\"metric\",\"unit\","
     "\"aggregation\",\"time_range\",\"step\",\"from\",\"to\",\"series\"],\"additionalProperti"
     "es\":false}"},
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
    {"Branch",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"description\":"
     "\"without refs/heads/\"},\"commit\":{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{40}$\"},"
     "\"default\":{\"type\":\"boolean\",\"description\":\"the branch the remote's HEAD "
     "names\"}},\"required\":[\"name\",\"commit\",\"default\"],\"additionalProperties\":false}"},
    {"BranchList",
     "{\"type\":\"object\",\"properties\":{\"data\":{\"type\":\"array\",\"items\":{\"$ref\":"
     "\"#/components/schemas/Branch\"}},\"pagination\":{\"$ref\":\"#/components/schemas/"
     "Pagination\"},\"default_branch\":{\"type\":[\"string\",\"null\"],\"description\":\"the "
     "remote's default branch, null when it names none\"},\"app_branch\":{\"type\":\"string\","
     "\"description\":\"the branch the app deploys\"},\"truncated\":{\"type\":\"boolean\","
     "\"description\":\"the remote has more than the 5000 branches kept\"},\"fetched_at\":{"
     "\"type\":\"string\",\"format\":\"date-time\",\"description\":\"when the remote was "
     "read\"}},\"required\":[\"data\",\"pagination\",\"default_branch\",\"app_branch\","
     "\"truncated\",\"fetched_at\"],\"additionalProperties\":false}"},
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

const size_t sw_api_schemas_count = SW_ARRAY_SIZE(sw_api_schemas);
