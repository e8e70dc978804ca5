-- wrk script: POST one real image (or, with FILES=N, a multipart request of N images) to ROUTE
-- (default /api/v1/predict; e.g. "/api/v1/predict?explain=1" or "/api/v1/screen"), and print a
-- JSON summary with throughput, latency percentiles and errors. MIME: the image's type.
local path = os.getenv("IMAGE")
local mime = os.getenv("MIME") or "image/png"
local files = tonumber(os.getenv("FILES") or "1")
local f = assert(io.open(path, "rb"))
local png = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = os.getenv("ROUTE") or "/api/v1/predict"
if files == 1 then
  wrk.headers["Content-Type"] = mime
  wrk.body = png
else
  local boundary = "malariabenchboundary"
  local parts = {}
  for i = 1, files do
    parts[#parts + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cell" .. i ..
        ".png\"\r\nContent-Type: " .. mime .. "\r\n\r\n" .. png .. "\r\n"
  end
  parts[#parts + 1] = "--" .. boundary .. "--\r\n"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = table.concat(parts)
end

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "requests_per_s": %.1f, "images_per_s": %.1f, "p50_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "socket_errors": %d, "non_200": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    files * summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errors, non200))
end
