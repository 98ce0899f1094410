-- The bench100 ruleset (bench/rules/bench100.yaml, 100 rules) as an OpenResty user
-- writes it: generated once by bench/gen_lua.py, then read and committed.
-- nginx loads it with init_by_lua_block { require "rules100" } and runs
-- require("rules100").check() in access_by_lua_block.
local ngx = ngx
local var = ngx.var
local get_headers = ngx.req.get_headers
local re_find = ngx.re.find
local unescape_uri = ngx.unescape_uri
local find, sub, match, lower, upper = string.find, string.sub, string.match, string.lower, string.upper
local concat = table.concat

-- A request header as one string: repeated headers joined the way bulwark
-- joins them (", ", or "; " for Cookie); nil when absent.
local function header(h, name, sep)
  local v = h[name]
  if type(v) == "table" then
    return concat(v, sep)
  end
  return v
end

-- All values of a request header as a list (empty when absent).
local EMPTY = {}
local function values(h, name)
  local v = h[name]
  if v == nil then
    return EMPTY
  end
  if type(v) == "table" then
    return v
  end
  return { v }
end

local function raw_path_of(request_uri)
  local q = find(request_uri, "?", 1, true)
  return q and sub(request_uri, 1, q - 1) or request_uri
end

-- IPv4 CIDR matching on numbers: the address is parsed once per request,
-- each network once at load.
local function ipv4_number(ip)
  local a, b, c, d = match(ip, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return nil -- IPv6 client: no IPv4 network contains it
  end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function cidr(net, bits)
  local size = 2 ^ (32 - bits)
  local first = ipv4_number(net)
  return { first = first, last = first + size - 1 }
end

local function ip_in(n, nets)
  if n == nil then
    return false
  end
  for i = 1, #nets do
    local net = nets[i]
    if net.first and n >= net.first and n <= net.last then
      return true
    end
  end
  return false
end

local SET_1 = { ["GET"] = true, ["HEAD"] = true, ["POST"] = true, ["PUT"] = true, ["DELETE"] = true, ["OPTIONS"] = true, ["PATCH"] = true }
local NETS_2 = {
  cidr("192.0.2.0", 24),
  cidr("198.51.100.0", 24),
  cidr("203.0.113.0", 24),
}
local NETS_3 = {
  cidr("45.155.205.0", 24),
  cidr("45.146.164.0", 22),
  cidr("185.220.100.0", 22),
  cidr("185.220.101.0", 24),
  cidr("193.142.146.0", 24),
  cidr("89.248.160.0", 21),
  cidr("71.6.128.0", 17),
  cidr("162.142.125.0", 24),
  cidr("167.94.138.0", 24),
  cidr("198.235.24.0", 24),
}
local NETS_4 = {
  { v6 = "2001:db8::/32" },
  { v6 = "2a0e:fd87::/32" },
  { v6 = "2604:a880:400::/48" },
}
local NETS_5 = {
  cidr("104.248.50.87", 32),
  cidr("159.65.200.12", 32),
  cidr("138.68.75.3", 32),
  cidr("46.101.19.44", 32),
  cidr("178.128.23.9", 32),
  cidr("142.93.100.201", 32),
}
local SET_6 = { ["/.env"] = true, ["/.env.local"] = true, ["/config.json"] = true, ["/wp-config.php"] = true, ["/web.config"] = true, ["/id_rsa"] = true, ["/.aws/credentials"] = true, ["/docker-compose.yml"] = true, ["/.npmrc"] = true, ["/composer.json"] = true, ["/package-lock.json"] = true }
local SET_7 = { ["/manager/html"] = true, ["/jmx-console"] = true, ["/console"] = true, ["/solr/admin"] = true, ["/hudson"] = true, ["/jenkins/script"] = true, ["/druid/index.html"] = true, ["/nacos"] = true }
local SET_8 = { ["-"] = true, ["java"] = true, ["mozilla/4.0"] = true, ["mozilla/5.0"] = true, ["python"] = true, ["test"] = true, ["x"] = true, ["fuck"] = true }
local SET_9 = { ["evil.example"] = true, ["phish.example.net"] = true, ["admin.example.com"] = true, ["localhost.localdomain"] = true }
local SET_10 = { ["application/x-java-serialized-object"] = true, ["application/x-php"] = true, ["text/x-shellscript"] = true }
local SET_11 = { ["gopher"] = true, ["file"] = true, ["ftp"] = true, ["javascript"] = true }
local function any_12(list)
  for i = 1, #list do
    local v = list[i]
    if SET_11[lower(v)] then return true end
  end
  return false
end
local SET_13 = { ["xx"] = true, ["zz"] = true, ["${jndi}"] = true }
local function any_14(list)
  for i = 1, #list do
    local v = list[i]
    if SET_13[v] then return true end
  end
  return false
end
local SET_15 = { ["127.0.0.1, 127.0.0.1"] = true, ["unknown"] = true, ["localhost"] = true }
local SET_16 = { ["/backup.zip"] = true, ["/backup.tar.gz"] = true, ["/dump.sql"] = true, ["/db.sqlite"] = true, ["/database.sql"] = true, ["/site.tar.gz"] = true }
local SET_17 = { ["identity"] = true, ["chunked, chunked"] = true, ["xchunked"] = true, ["chunked-false"] = true }
local function any_18(list)
  for i = 1, #list do
    local v = list[i]
    if SET_17[lower(v)] then return true end
  end
  return false
end
local SET_19 = { ["h2c"] = true }
local function any_20(list)
  for i = 1, #list do
    local v = list[i]
    if SET_19[lower(v)] then return true end
  end
  return false
end
local SET_21 = { ["127.0.0.1:22"] = true, ["127.0.0.1:25"] = true, ["127.0.0.1:3306"] = true, ["127.0.0.1:6379"] = true, ["127.0.0.1:9200"] = true }
local SET_22 = { ["TRACE"] = true, ["TRACK"] = true, ["CONNECT"] = true, ["DEBUG"] = true }
local function any_23(list)
  for i = 1, #list do
    local v = list[i]
    if SET_22[upper(v)] then return true end
  end
  return false
end
local NETS_24 = {
  cidr("10.0.0.0", 8),
  cidr("172.16.0.0", 12),
  cidr("192.168.0.0", 16),
}
local SET_25 = { ["POST"] = true, ["PUT"] = true }
local SET_26 = { ["0"] = true }
local function any_27(list)
  for i = 1, #list do
    local v = list[i]
    if SET_26[v] then return true end
  end
  return false
end
local function any_28(list)
  for i = 1, #list do
    local v = list[i]
    if find(v, "application/x-shockwave-flash", 1, true) then return true end
  end
  return false
end
local SET_29 = { ["api.example.com/internal/metrics"] = true, ["www.example.com/internal/health"] = true }
local function any_30(list)
  for i = 1, #list do
    local v = list[i]
    if find(v, "127.0.0.1", 1, true) then return true end
  end
  return false
end
local NETS_31 = {
  cidr("127.0.0.0", 8),
  cidr("10.0.0.0", 8),
}

local _M = {}

function _M.check()
  local h = get_headers()
  local uri = var.uri
  local request_uri = var.request_uri
  local raw_path = raw_path_of(request_uri)
  local method = var.request_method
  local host = var.http_host
  local referer = header(h, "referer", ", ")
  local cookie = header(h, "cookie", "; ")
  local ua = header(h, "user-agent", ", ")
  local addr = var.remote_addr
  local addr_n = ipv4_number(addr)
  local bot_score = ngx.ctx.bot_score
  local args = var.args or ""
  local hv_content_type = values(h, "content-type")
  local hv_content_type_0 = hv_content_type[1]
  local hv_x_forwarded_proto = values(h, "x-forwarded-proto")
  local hv_accept_language = values(h, "accept-language")
  local xff = header(h, "x-forwarded-for", ", ")
  local hv_transfer_encoding = values(h, "transfer-encoding")
  local hv_upgrade = values(h, "upgrade")
  local hv_range = values(h, "range")
  local hv_x_forwarded_for = values(h, "x-forwarded-for")
  local hv_x_http_method_override = values(h, "x-http-method-override")
  local hv_host = values(h, "host")
  local hv_content_length = values(h, "content-length")
  local ssl = var.https == "on"
  local hv_accept = values(h, "accept")

  -- path-wp-admin: starts_with(http.request.uri.path, "/wp-admin")
  if sub(uri, 1, 9) == "/wp-admin" then
    return ngx.exit(403)
  end

  -- path-wp-login: starts_with(http.request.uri.path, "/wp-login.php")
  if sub(uri, 1, 13) == "/wp-login.php" then
    return ngx.exit(403)
  end

  -- path-xmlrpc: starts_with(http.request.uri.path, "/xmlrpc.php")
  if sub(uri, 1, 11) == "/xmlrpc.php" then
    return ngx.exit(403)
  end

  -- path-phpmyadmin: starts_with(lower(http.request.uri.path), "/phpmyadmin")
  if sub(lower(uri), 1, 11) == "/phpmyadmin" then
    return ngx.exit(403)
  end

  -- path-git: starts_with(http.request.uri.path, "/.git")
  if sub(uri, 1, 5) == "/.git" then
    return ngx.exit(403)
  end

  -- path-svn: starts_with(http.request.uri.path, "/.svn")
  if sub(uri, 1, 5) == "/.svn" then
    return ngx.exit(403)
  end

  -- path-cgi-bin: starts_with(http.request.uri.path, "/cgi-bin/")
  if sub(uri, 1, 9) == "/cgi-bin/" then
    return ngx.exit(403)
  end

  -- path-server-status: starts_with(http.request.uri.path, "/server-status")
  if sub(uri, 1, 14) == "/server-status" then
    return ngx.exit(403)
  end

  -- path-actuator: starts_with(http.request.uri.path, "/actuator")
  if sub(uri, 1, 9) == "/actuator" then
    return ngx.exit(403)
  end

  -- path-phpunit: http.request.uri.path contains "/vendor/phpunit/"
  if find(uri, "/vendor/phpunit/", 1, true) then
    return ngx.exit(403)
  end

  -- path-ends-php: ends_with(http.request.uri.path, ".php")
  if sub(uri, -4) == ".php" then
    return ngx.exit(403)
  end

  -- path-ends-asp: ends_with(lower(http.request.uri.path), ".asp") or ends_with(lower(http.request.uri.path), ".aspx")
  if (sub(lower(uri), -4) == ".asp") or (sub(lower(uri), -5) == ".aspx") then
    return ngx.exit(403)
  end

  -- path-ends-bak: ends_with(http.request.uri.path, ".bak")
  if sub(uri, -4) == ".bak" then
    return ngx.exit(403)
  end

  -- path-ends-sql: ends_with(http.request.uri.path, ".sql")
  if sub(uri, -4) == ".sql" then
    return ngx.exit(403)
  end

  -- path-ends-swp: ends_with(http.request.uri.path, ".swp")
  if sub(uri, -4) == ".swp" then
    return ngx.exit(403)
  end

  -- path-ends-tilde: ends_with(http.request.uri.path, "~")
  if sub(uri, -1) == "~" then
    return ngx.exit(403)
  end

  -- path-htaccess: ends_with(http.request.uri.path, "/.htaccess")
  if sub(uri, -10) == "/.htaccess" then
    return ngx.exit(403)
  end

  -- path-ds-store: ends_with(http.request.uri.path, ".DS_Store")
  if sub(uri, -9) == ".DS_Store" then
    return ngx.exit(403)
  end

  -- path-etc-passwd: http.request.uri contains "/etc/passwd"
  if find(request_uri, "/etc/passwd", 1, true) then
    return ngx.exit(403)
  end

  -- raw-path-dotdot: raw.http.request.uri.path contains "/../"
  if find(raw_path, "/../", 1, true) then
    return ngx.exit(403)
  end

  -- raw-path-encoded-dot: lower(raw.http.request.uri.path) contains "%2e%2e"
  if find(lower(raw_path), "%2e%2e", 1, true) then
    return ngx.exit(403)
  end

  -- path-debug: http.request.uri.path eq "/debug/pprof" or starts_with(http.request.uri.path, "/debug/")
  if (uri == "/debug/pprof") or (sub(uri, 1, 7) == "/debug/") then
    return ngx.exit(403)
  end

  -- method-trace: http.request.method eq "TRACE"
  if method == "TRACE" then
    return ngx.exit(403)
  end

  -- method-track: http.request.method eq "TRACK"
  if method == "TRACK" then
    return ngx.exit(403)
  end

  -- host-internal: ends_with(http.host, ".internal")
  if host and sub(host, -9) == ".internal" then
    return ngx.exit(403)
  end

  -- host-onion: http.host contains ".onion"
  if host and find(host, ".onion", 1, true) then
    return ngx.exit(403)
  end

  -- host-staging: lower(http.host) eq "staging.example.com"
  if host and lower(host) == "staging.example.com" then
    return ngx.exit(403)
  end

  -- referer-semalt: http.referer contains "semalt.com"
  if referer and find(referer, "semalt.com", 1, true) then
    return ngx.exit(403)
  end

  -- referer-buttons: http.referer contains "buttons-for-website.com"
  if referer and find(referer, "buttons-for-website.com", 1, true) then
    return ngx.exit(403)
  end

  -- cookie-traversal: http.cookie contains "../"
  if cookie and find(cookie, "../", 1, true) then
    return ngx.exit(403)
  end

  -- cookie-script: lower(http.cookie) contains "<script"
  if cookie and find(lower(cookie), "<script", 1, true) then
    return ngx.exit(403)
  end

  -- ua-sqlmap: lower(http.user_agent) contains "sqlmap"
  if ua and find(lower(ua), "sqlmap", 1, true) then
    return ngx.exit(403)
  end

  -- ua-nikto: lower(http.user_agent) contains "nikto"
  if ua and find(lower(ua), "nikto", 1, true) then
    return ngx.exit(403)
  end

  -- ua-nmap: lower(http.user_agent) contains "nmap"
  if ua and find(lower(ua), "nmap", 1, true) then
    return ngx.exit(403)
  end

  -- ua-masscan: lower(http.user_agent) contains "masscan"
  if ua and find(lower(ua), "masscan", 1, true) then
    return ngx.exit(403)
  end

  -- ua-zgrab: lower(http.user_agent) contains "zgrab"
  if ua and find(lower(ua), "zgrab", 1, true) then
    return ngx.exit(403)
  end

  -- ua-gobuster: lower(http.user_agent) contains "gobuster"
  if ua and find(lower(ua), "gobuster", 1, true) then
    return ngx.exit(403)
  end

  -- ua-wpscan: lower(http.user_agent) contains "wpscan"
  if ua and find(lower(ua), "wpscan", 1, true) then
    return ngx.exit(403)
  end

  -- ua-acunetix: lower(http.user_agent) contains "acunetix"
  if ua and find(lower(ua), "acunetix", 1, true) then
    return ngx.exit(403)
  end

  -- ua-nessus: lower(http.user_agent) contains "nessus"
  if ua and find(lower(ua), "nessus", 1, true) then
    return ngx.exit(403)
  end

  -- method-allowlist: not http.request.method in {"GET" "HEAD" "POST" "PUT" "DELETE" "OPTIONS" "PATCH"}
  if not SET_1[method] then
    return ngx.exit(403)
  end

  -- ip-deny-testnets: ip.src in {192.0.2.0/24 198.51.100.0/24 203.0.113.0/24}
  if ip_in(addr_n, NETS_2) then
    return ngx.exit(403)
  end

  -- ip-deny-abuse: ip.src in {45.155.205.0/24 45.146.164.0/22 185.220.100.0/22 185.220.101.0/24 193.142.146.0/24 89.248.160.0/21 71.6.128.0/17 162.142.125.0/24 167.94.138.0/24 198.235.24.0/24}
  if ip_in(addr_n, NETS_3) then
    return ngx.exit(403)
  end

  -- ip-deny-v6: ip.src in {2001:db8::/32 2a0e:fd87::/32 2604:a880:400::/48}
  if ip_in(addr_n, NETS_4) then
    return ngx.exit(403)
  end

  -- ip-deny-hosts: ip.src in {104.248.50.87 159.65.200.12 138.68.75.3 46.101.19.44 178.128.23.9 142.93.100.201}
  if ip_in(addr_n, NETS_5) then
    return ngx.exit(403)
  end

  -- path-sensitive-files: http.request.uri.path in {"/.env" "/.env.local" "/config.json" "/wp-config.php" "/web.config" "/id_rsa" "/.aws/credentials" "/docker-compose.yml" "/.npmrc" "/composer.json" "/package-lock.json"}
  if SET_6[uri] then
    return ngx.exit(403)
  end

  -- path-admin-consoles: lower(http.request.uri.path) in {"/manager/html" "/jmx-console" "/console" "/solr/admin" "/hudson" "/jenkins/script" "/druid/index.html" "/nacos"}
  if SET_7[lower(uri)] then
    return ngx.exit(403)
  end

  -- ua-exact-bad: lower(http.user_agent) in {"-" "java" "mozilla/4.0" "mozilla/5.0" "python" "test" "x" "fuck"}
  if ua and SET_8[lower(ua)] then
    return ngx.exit(403)
  end

  -- host-deny: lower(http.host) in {"evil.example" "phish.example.net" "admin.example.com" "localhost.localdomain"}
  if host and SET_9[lower(host)] then
    return ngx.exit(403)
  end

  -- bot-score-low: bot.score in {1..5}
  if bot_score and (bot_score >= 1 and bot_score <= 5) then
    return ngx.exit(403)
  end

  -- query-too-long: len(http.request.uri.query) in {4097..1000000000}
  if (#args >= 4097 and #args <= 1000000000) then
    return ngx.exit(403)
  end

  -- content-type-deny: lower(http.request.headers["content-type"][0]) in {"application/x-java-serialized-object" "application/x-php" "text/x-shellscript"}
  if hv_content_type_0 and SET_10[lower(hv_content_type_0)] then
    return ngx.exit(403)
  end

  -- xfp-bad: any(lower(http.request.headers["x-forwarded-proto"][*]) in {"gopher" "file" "ftp" "javascript"})
  if any_12(hv_x_forwarded_proto) then
    return ngx.exit(403)
  end

  -- accept-lang-bad: any(http.request.headers["accept-language"][*] in {"xx" "zz" "${jndi}"})
  if any_14(hv_accept_language) then
    return ngx.exit(403)
  end

  -- xff-deny: http.x_forwarded_for in {"127.0.0.1, 127.0.0.1" "unknown" "localhost"}
  if xff and SET_15[xff] then
    return ngx.exit(403)
  end

  -- ext-deny: http.request.uri.path in {"/backup.zip" "/backup.tar.gz" "/dump.sql" "/db.sqlite" "/database.sql" "/site.tar.gz"}
  if SET_16[uri] then
    return ngx.exit(403)
  end

  -- te-deny: any(lower(http.request.headers["transfer-encoding"][*]) in {"identity" "chunked, chunked" "xchunked" "chunked-false"})
  if any_18(hv_transfer_encoding) then
    return ngx.exit(403)
  end

  -- upgrade-deny: any(lower(http.request.headers["upgrade"][*]) in {"h2c"})
  if any_20(hv_upgrade) then
    return ngx.exit(403)
  end

  -- range-abuse: len(http.request.headers["range"]) in {2..1000}
  if (#hv_range >= 2 and #hv_range <= 1000) then
    return ngx.exit(403)
  end

  -- port-in-host-deny: http.host in {"127.0.0.1:22" "127.0.0.1:25" "127.0.0.1:3306" "127.0.0.1:6379" "127.0.0.1:9200"}
  if host and SET_21[host] then
    return ngx.exit(403)
  end

  -- sqli-union: http.request.uri.query matches r"(?i)union(\s|\+|%20|/\*.*\*/)+(all(\s|\+|%20)+)?select"
  if re_find(args, [[(?i)union(\s|\+|%20|/\*.*\*/)+(all(\s|\+|%20)+)?select]], "jos") then
    return ngx.exit(403)
  end

  -- sqli-tautology: http.request.uri.query matches r"(?i)(%27|')\s*(or|and)\s*(%27|')?\d+(%27|')?\s*=\s*(%27|')?\d+"
  if re_find(args, [[(?i)(%27|')\s*(or|and)\s*(%27|')?\d+(%27|')?\s*=\s*(%27|')?\d+]], "jos") then
    return ngx.exit(403)
  end

  -- sqli-comment: http.request.uri.query matches r"(?i)(%27|')(\s|%20)*(--|%23|#)"
  if re_find(args, [[(?i)(%27|')(\s|%20)*(--|%23|#)]], "jos") then
    return ngx.exit(403)
  end

  -- sqli-sleep: http.request.uri.query matches r"(?i)(sleep|benchmark|pg_sleep|waitfor\s+delay)\s*(\(|%28)"
  if re_find(args, [[(?i)(sleep|benchmark|pg_sleep|waitfor\s+delay)\s*(\(|%28)]], "jos") then
    return ngx.exit(403)
  end

  -- sqli-info-schema: http.request.uri.query matches r"(?i)information_schema|sysobjects|xp_cmdshell"
  if re_find(args, "(?i)information_schema|sysobjects|xp_cmdshell", "jos") then
    return ngx.exit(403)
  end

  -- xss-script: http.request.uri.query matches r"(?i)(<|%3c)\s*script"
  if re_find(args, [[(?i)(<|%3c)\s*script]], "jos") then
    return ngx.exit(403)
  end

  -- xss-handler: http.request.uri.query matches r"(?i)\bon(error|load|mouseover|focus|click)\s*(=|%3d)"
  if re_find(args, [[(?i)\bon(error|load|mouseover|focus|click)\s*(=|%3d)]], "jos") then
    return ngx.exit(403)
  end

  -- xss-js-uri: http.request.uri.query matches r"(?i)javascript(:|%3a)"
  if re_find(args, "(?i)javascript(:|%3a)", "jos") then
    return ngx.exit(403)
  end

  -- lfi-query: http.request.uri.query matches r"(\.\.|%2e%2e)(/|%2f|\\|%5c)"
  if re_find(args, [[(\.\.|%2e%2e)(/|%2f|\\|%5c)]], "jos") then
    return ngx.exit(403)
  end

  -- rce-query: http.request.uri.query matches r"(?i)(;|%3b|\||%7c|`)\s*(cat|wget|curl|bash|sh|nc)(\s|%20|\+)"
  if re_find(args, [[(?i)(;|%3b|\||%7c|`)\s*(cat|wget|curl|bash|sh|nc)(\s|%20|\+)]], "jos") then
    return ngx.exit(403)
  end

  -- ua-scanners-re: http.user_agent matches r"(?i)(dirbuster|dirb/|havij|hydra|w3af|openvas|arachni|skipfish|whatweb|nuclei|httpx|jaeles|feroxbuster)"
  if ua and re_find(ua, "(?i)(dirbuster|dirb/|havij|hydra|w3af|openvas|arachni|skipfish|whatweb|nuclei|httpx|jaeles|feroxbuster)", "jos") then
    return ngx.exit(403)
  end

  -- ua-libs-re: http.user_agent matches r"(?i)^(python-urllib|libwww-perl|go-http-client/1\.1$|java/1\.|winhttp|lwp::simple)"
  if ua and re_find(ua, [[(?i)^(python-urllib|libwww-perl|go-http-client/1\.1$|java/1\.|winhttp|lwp::simple)]], "jos") then
    return ngx.exit(403)
  end

  -- ua-log4shell: http.user_agent matches r"(?i)\$\{(jndi|lower|upper|env|sys|::-j)"
  if ua and re_find(ua, [[(?i)\$\{(jndi|lower|upper|env|sys|::-j)]], "jos") then
    return ngx.exit(403)
  end

  -- ua-shellshock: http.user_agent matches r"\(\)\s*\{\s*:;\s*\}\s*;"
  if ua and re_find(ua, [[\(\)\s*\{\s*:;\s*\}\s*;]], "jos") then
    return ngx.exit(403)
  end

  -- path-php-shells: http.request.uri.path matches r"(?i)/(c99|r57|shell|wso|b374k|alfa)\.php"
  if re_find(uri, [[(?i)/(c99|r57|shell|wso|b374k|alfa)\.php]], "jos") then
    return ngx.exit(403)
  end

  -- path-backup-re: http.request.uri.path matches r"(?i)\.(old|orig|save|tmp|log|ini|conf|cfg)$"
  if re_find(uri, [[(?i)\.(old|orig|save|tmp|log|ini|conf|cfg)$]], "jos") then
    return ngx.exit(403)
  end

  -- path-dotfile-re: http.request.uri.path matches r"/\.(ssh|aws|docker|kube|idea|vscode|hg|bzr)(/|$)"
  if re_find(uri, [[/\.(ssh|aws|docker|kube|idea|vscode|hg|bzr)(/|$)]], "jos") then
    return ngx.exit(403)
  end

  -- cookie-sqli-re: http.cookie matches r"(?i)(union\s+select|'\s*or\s+'1'\s*=\s*'1)"
  if cookie and re_find(cookie, [[(?i)(union\s+select|'\s*or\s+'1'\s*=\s*'1)]], "jos") then
    return ngx.exit(403)
  end

  -- referer-spam-re: http.referer matches r"(?i)^https?://([a-z0-9-]+\.)*(darodar|ilovevitaly|priceg|hulfingtonpost)\.(com|ru|xyz)"
  if referer and re_find(referer, [[(?i)^https?://([a-z0-9-]+\.)*(darodar|ilovevitaly|priceg|hulfingtonpost)\.(com|ru|xyz)]], "jos") then
    return ngx.exit(403)
  end

  -- xff-private-re: http.x_forwarded_for matches r"^\s*(0\.0\.0\.0|169\.254\.169\.254)"
  if xff and re_find(xff, [[^\s*(0\.0\.0\.0|169\.254\.169\.254)]], "jos") then
    return ngx.exit(403)
  end

  -- uri-too-long: len(http.request.uri) gt 4096
  if #request_uri > 4096 then
    return ngx.exit(403)
  end

  -- ua-too-long: len(http.user_agent) gt 512
  if ua and #ua > 512 then
    return ngx.exit(403)
  end

  -- cookie-too-long: len(http.cookie) gt 8192
  if cookie and #cookie > 8192 then
    return ngx.exit(403)
  end

  -- too-many-xff: len(http.request.headers["x-forwarded-for"]) gt 5
  if #hv_x_forwarded_for > 5 then
    return ngx.exit(403)
  end

  -- x-original-url: has(http.request.headers["x-original-url"]) or has(http.request.headers["x-rewrite-url"])
  if (h["x-original-url"] ~= nil) or (h["x-rewrite-url"] ~= nil) then
    return ngx.exit(403)
  end

  -- method-override: any(upper(http.request.headers["x-http-method-override"][*]) in {"TRACE" "TRACK" "CONNECT" "DEBUG"})
  if any_23(hv_x_http_method_override) then
    return ngx.exit(403)
  end

  -- smuggling-te-cl: has(http.request.headers["transfer-encoding"]) and has(http.request.headers["content-length"])
  if (h["transfer-encoding"] ~= nil) and (h["content-length"] ~= nil) then
    return ngx.exit(403)
  end

  -- multiple-hosts: len(http.request.headers["host"]) gt 1
  if #hv_host > 1 then
    return ngx.exit(403)
  end

  -- admin-not-internal: starts_with(http.request.uri.path, "/admin") and not ip.src in {10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}
  if (sub(uri, 1, 6) == "/admin") and (not ip_in(addr_n, NETS_24)) then
    return ngx.exit(403)
  end

  -- api-without-key: starts_with(http.request.uri.path, "/api/") and not has(http.request.headers["x-api-key"]) and not has(http.request.headers["authorization"])
  if (sub(uri, 1, 5) == "/api/") and (h["x-api-key"] == nil) and (h["authorization"] == nil) then
    return ngx.exit(403)
  end

  -- login-post-no-referer: http.request.method eq "POST" and http.request.uri.path eq "/login" and not has(http.referer)
  if (method == "POST") and (uri == "/login") and (referer == nil) then
    return ngx.exit(403)
  end

  -- upload-too-big: http.request.method in {"POST" "PUT"} and starts_with(http.request.uri.path, "/upload") and any(http.request.headers["content-length"][*] in {"0"})
  if SET_25[method] and (sub(uri, 1, 7) == "/upload") and any_27(hv_content_length) then
    return ngx.exit(403)
  end

  -- account-plaintext: not ssl and starts_with(http.request.uri.path, "/account/") and http.host eq "www.example.com"
  if (not ssl) and (sub(uri, 1, 9) == "/account/") and (host and host == "www.example.com") then
    return ngx.exit(403)
  end

  -- decoded-query-script: lower(url_decode(http.request.uri.query)) contains "<script"
  if find(lower(unescape_uri(args)), "<script", 1, true) then
    return ngx.exit(403)
  end

  -- decoded-query-nul: http.request.uri.query contains "%00"
  if find(args, "%00", 1, true) then
    return ngx.exit(403)
  end

  -- accept-json-probe: any(http.request.headers["accept"][*] contains "application/x-shockwave-flash")
  if any_28(hv_accept) then
    return ngx.exit(403)
  end

  -- host-path-combo: concat(lower(http.host), http.request.uri.path) in {"api.example.com/internal/metrics" "www.example.com/internal/health"}
  if host and SET_29[(lower(host) .. uri)] then
    return ngx.exit(403)
  end

  -- jndi-anywhere: lower(url_decode(http.request.uri)) contains "${jndi:" or lower(http.referer) contains "${jndi:" or lower(http.user_agent) contains "${jndi:"
  if find(lower(unescape_uri(request_uri)), "${jndi:", 1, true) or (referer and find(lower(referer), "${jndi:", 1, true)) or (ua and find(lower(ua), "${jndi:", 1, true)) then
    return ngx.exit(403)
  end

  -- bad-bot-combo: lower(http.user_agent) contains "bot" and not lower(http.user_agent) contains "googlebot" and not lower(http.user_agent) contains "bingbot" and starts_with(http.request.uri.path, "/search")
  if (ua and find(lower(ua), "bot", 1, true)) and (ua and not find(lower(ua), "googlebot", 1, true)) and (ua and not find(lower(ua), "bingbot", 1, true)) and (sub(uri, 1, 7) == "/search") then
    return ngx.exit(403)
  end

  -- xff-spoof-loopback: any(http.request.headers["x-forwarded-for"][*] contains "127.0.0.1") and not ip.src in {127.0.0.0/8 10.0.0.0/8}
  if any_30(hv_x_forwarded_for) and (not ip_in(addr_n, NETS_31)) then
    return ngx.exit(403)
  end

end

return _M
