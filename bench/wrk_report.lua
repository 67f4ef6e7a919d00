-- wrk script for bench/run.py: optional method/body from the environment, and a `done` hook that
-- prints one JSON line with throughput, latency percentiles (ms) and error counts. There is no
-- `response` hook on purpose: it would make wrk parse every reply in Lua and slow the load generator.
-- wrk counts responses with status >= 400 in summary.errors.status.
local method = os.getenv("WRK_METHOD")
local body = os.getenv("WRK_BODY")

if method and method ~= "" then wrk.method = method end
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

-- WRK_KEYS: comma-separated API keys, used round-robin (one per simulated agent or client).
local keys = {}
for key in string.gmatch(os.getenv("WRK_KEYS") or "", "[^,]+") do table.insert(keys, key) end
if #keys > 0 then
  local counter = 0
  function request()
    counter = counter + 1
    wrk.headers["Authorization"] = "Bearer " .. keys[(counter % #keys) + 1]
    return wrk.format()
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,' ..
    '"max_ms":%.3f,"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
