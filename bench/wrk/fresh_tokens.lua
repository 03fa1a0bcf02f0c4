-- wrk script for bench/http.py: every request uses a survey token no request used before.
--
-- The token file (one per line) is dealt out across wrk's threads (thread i
-- takes lines i, i + threads, ...), so no two requests share a token. Set by
-- environment variables, read in every Lua state (wrk runs one per thread):
--   BENCH_MODE     get (survey page) | post (survey answer) | read | write (baselines)
--                  | mix (soak: the survey page, then the answer, for each token)
--   BENCH_TOKENS   the token file;  BENCH_THREADS  wrk's --threads
--   BENCH_DELAY_MS wait before each request on a connection (soak: a modest rate); 0 = none
--   BENCH_OUT      where done() writes the counts and the answered tokens, as text
--   BENCH_WARMUP   1: untimed; a thread that runs out of tokens stops instead of reusing one
-- A response whose status is not the one expected is counted, never hidden:
-- 200 for pages and baselines, 302 (the redirect to the thank-you page) for answers.

local mode = os.getenv("BENCH_MODE")
local token_file = os.getenv("BENCH_TOKENS")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local out_file = os.getenv("BENCH_OUT")
warmup = os.getenv("BENCH_WARMUP") == "1"

local REASON = "Quick+delivery+and+a+friendly+team%2C+thank+you%21"
local form_headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
}

-- Main state: one handle per thread, to collect their counts in done().
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Thread state.
function init(args)
  tokens = {}
  local line_number = 0
  for line in io.lines(token_file) do
    if line_number % nthreads == id then
      tokens[#tokens + 1] = line
    end
    line_number = line_number + 1
  end
  token_count = #tokens
  position = 0      -- tokens handed out (requests built, or GET+POST pairs in mix)
  reused = 0        -- requests built after the fresh tokens ran out
  unexpected = 0    -- responses with a status other than the one expected
  statuses = {}     -- status -> count, as text, for the report
  answered = {}     -- tokens whose answer was acknowledged with a 302 (post, mix)
  pending_post = nil
end

local function next_token()
  position = position + 1
  if position > #tokens then
    if warmup then
      -- Warming up only: stop this thread rather than use a token twice.
      wrk.thread:stop()
    end
    reused = reused + 1
  end
  return tokens[(position - 1) % #tokens + 1], position
end

local function answer(token, index)
  local body = "score=" .. (index % 11) .. "&reason=" .. REASON
  return wrk.format("POST", "/s/" .. token .. "/", form_headers, body)
end

function request()
  if mode == "get" then
    return wrk.format("GET", "/s/" .. next_token() .. "/")
  elseif mode == "post" then
    return answer(next_token())
  elseif mode == "read" then
    return wrk.format("GET", "/bench/read/" .. next_token() .. "/")
  elseif mode == "write" then
    local token, index = next_token()
    local body = "score=" .. (index % 11) .. "&reason=" .. REASON
    return wrk.format("POST", "/bench/write/" .. token .. "/", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
  elseif mode == "mix" then
    if pending_post then
      local token, index = pending_post[1], pending_post[2]
      pending_post = nil
      return answer(token, index)
    end
    local token, index = next_token()
    pending_post = {token, index}
    return wrk.format("GET", "/s/" .. token .. "/")
  end
  error("unknown BENCH_MODE " .. tostring(mode))
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local expected
  if mode == "post" then
    expected = status == 302
  elseif mode == "mix" then
    expected = status == 302 or status == 200
  else
    expected = status == 200
  end
  if not expected then
    unexpected = unexpected + 1
  end
  if status == 302 then
    local location = headers["Location"] or headers["location"] or ""
    local token = string.match(location, "/s/([%w_%-]+)/")
    if token then
      answered[#answered + 1] = token
    end
  end
end

-- Main state, after the run.
function done(summary, latency, requests)
  local out = assert(io.open(out_file, "w"))
  local errors = summary.errors
  out:write(string.format("requests %d\n", summary.requests))
  out:write(string.format("duration_us %d\n", summary.duration))
  out:write(string.format("p50_us %d\n", latency:percentile(50)))
  out:write(string.format("p99_us %d\n", latency:percentile(99)))
  out:write(string.format("max_us %d\n", latency.max))
  out:write(string.format("socket_errors %d\n", errors.connect + errors.read + errors.write + errors.timeout))
  out:write(string.format("timeouts %d\n", errors.timeout))
  local totals = {handed_out = 0, reused = 0, unexpected = 0}
  local status_totals = {}
  for _, thread in ipairs(threads) do
    totals.handed_out = totals.handed_out + math.min(thread:get("position"), thread:get("token_count"))
    totals.reused = totals.reused + thread:get("reused")
    totals.unexpected = totals.unexpected + thread:get("unexpected")
    for status, count in pairs(thread:get("statuses")) do
      status_totals[status] = (status_totals[status] or 0) + count
    end
    for _, token in ipairs(thread:get("answered")) do
      out:write("answered " .. token .. "\n")
    end
  end
  out:write(string.format("tokens_handed_out %d\n", totals.handed_out))
  out:write(string.format("tokens_reused %d\n", totals.reused))
  out:write(string.format("unexpected_status %d\n", totals.unexpected))
  for status, count in pairs(status_totals) do
    out:write(string.format("status_%d %d\n", status, count))
  end
  out:close()
end
