-- wrk script for bench/bench.py: prints latency percentiles that wrk's
-- --latency table lacks (99.9, 99.99), in microseconds, one per line, after
-- the run. Only done() is defined, so wrk keeps its fast path (no Lua call
-- per request) and the load is the same as without the script.
done = function(summary, latency, requests)
  for _, p in ipairs({ 50, 75, 90, 99, 99.9, 99.99 }) do
    io.write(string.format("bench-latency p%g %d\n", p, latency:percentile(p)))
  end
end
