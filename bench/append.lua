-- wrk script: POST appends of EVENTS events (env, default 1) to rotating entities, and print a
-- machine-readable summary line: RESULT <requests/s> <p50 ms> <p99 ms> <non-2xx> <socket errors>
local events = tonumber(os.getenv("EVENTS") or "1")
local body
do
  local parts = {}
  for i = 1, events do
    parts[i] = '{"type":"PaymentReceived","data":{"amount":12.5,"currency":"EUR","note":"benchmark payload"}}'
  end
  body = '{"events":[' .. table.concat(parts, ",") .. ']}'
end
local counter = 0
-- Each wrk thread has its own Lua state: seed from its table address so prefixes differ.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
local prefix = tostring(math.random(1, 1000000))

request = function()
  counter = counter + 1
  local path = "/v1/streams/bench/entities/e" .. prefix .. "-" .. (counter % 64) .. "/events"
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, errors))
end
