-- wrk script of the harness: a browser-like request (as Django behind nginx sees it),
-- an optional body, and one machine-readable summary line at the end.
-- It defines no request()/response() functions, so wrk builds the request once per
-- thread and spends no Lua time per request.
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0") or 0

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "en-US,en;q=0.5"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br"
wrk.headers["Cookie"] = "csrftoken=Xq3v9Jk2LmN8pQr4StU6vWx0YzA1bC5d; sessionid=8f2k1m9x0q7w3e5r6t4y2u8i1o0p9a7s"
if body_bytes > 0 then
  wrk.body = string.rep("a", body_bytes)
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
