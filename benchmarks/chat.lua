-- wrk script for benchmarks/run.py: POST one small non-streamed chat completion per request.
-- Environment: BENCH_TOKEN, BENCH_MODEL, BENCH_OUT (file for one JSON line of results),
-- BENCH_REQUESTS (optional: stop after this many responses; wrk -t1 keeps the count exact). wrk itself
-- then still sleeps out its -d, so the script leaves BENCH_OUT.stopped and the caller sends wrk SIGINT.
local token = os.getenv("BENCH_TOKEN")
local model = os.getenv("BENCH_MODEL") or "bench-model"
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "")

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.body = '{"model":"' .. model .. '","messages":[' ..
  '{"role":"system","content":"You are a helpful assistant."},' ..
  '{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32,"temperature":0}'

if limit then
  -- Defining response() costs wrk a little per request, so it exists only in counted runs.
  local seen = 0
  function response(status, headers, body)
    seen = seen + 1
    if seen == limit then
      wrk.thread:stop()
      io.open(os.getenv("BENCH_OUT") .. ".stopped", "w"):close()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local line = string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"non2xx":%d,"socket_errors":%d}',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout)
  local f = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  f:write(line .. "\n")
  f:close()
end
