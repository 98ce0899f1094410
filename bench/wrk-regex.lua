-- wrk script for bench/bench.py's regex scenario: every request carries a
-- query string of BENCH_REGEX_QUERY_BYTES (default 4096) bytes built from
-- "1true-" repeated: each position starts a candidate match of the 2019
-- WAF regex's prefix, and with no '=' anywhere a backtracking engine tries
-- every split of the rest (quadratic or worse in the length). Set once
-- here, so wrk keeps its fast path (no Lua call per request), and the same
-- request goes to every target. done() prints the percentiles as
-- bench/wrk-percentiles.lua does.
local n = tonumber(os.getenv("BENCH_REGEX_QUERY_BYTES") or "4096")
local q = string.rep("1true-", math.ceil(n / 6)):sub(1, n)
wrk.path = "/search?" .. q

done = function(summary, latency, requests)
  for _, p in ipairs({ 50, 75, 90, 99, 99.9, 99.99 }) do
    io.write(string.format("bench-latency p%g %d\n", p, latency:percentile(p)))
  end
end
