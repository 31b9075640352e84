-- Replays pre-signed verify requests (one per line: key, timestamp, nonce, signature,
-- body, tab-separated). Signatures carry fresh nonces, so each line is sent once; if
-- wrk runs out of lines it wraps and the replays show up as non-2xx answers.
local reqs, n, idx = {}, 0, 0
local f = assert(io.open(os.getenv("EHC_BENCH_REQUESTS"), "r"))
for line in f:lines() do
  local key, ts, nonce, sig, body = line:match("([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)")
  n = n + 1
  reqs[n] = wrk.format("POST", "/ehc/v1/qrcodes/verify", {
    ["X-EHC-Key"] = key, ["X-EHC-Timestamp"] = ts, ["X-EHC-Nonce"] = nonce,
    ["X-EHC-Sign-Method"] = "HMAC-SM3", ["X-EHC-Signature"] = sig,
    ["Content-Type"] = "application/json"}, body)
end
f:close()

request = function()
  idx = idx + 1
  if idx > n then idx = 1 end
  return reqs[idx]
end
