-- The dispatcher: one call checks a whole LimitSet, all-or-nothing, like
-- MemoryBackend::run_many. Phase 1 decides every limit on tentative
-- states (a key that appears twice sees its own first count); phase 2
-- writes back only if every enforcing (non-shadow) limit allowed.
--
-- KEYS[i]: the state of limit i.
-- ARGV[1]: 'a' acquire, 'p' peek, 'r' reset (forget, then peek), 'f'
-- absorb (Backend::absorb: every limit counted with Algorithm::force, in
-- order, whatever the limits say), 'u' refund (Backend::refund: undo what
-- an acquire at the instant ARGV[2] committed for each limit, then peek at
-- that instant), 'd' decide (an acquire's answer, but nothing is written:
-- the slots of a split cluster set after a slot that denied).
-- ARGV[2]: now in nanoseconds since the epoch, or '' for the server's TIME
-- (a refund always gives the instant of the acquire it undoes).
-- ARGV[3]: milliseconds a key outlives the instant its state is fresh.
-- Then 8 per limit: algorithm ('g','t','k','f','s','l'), cost, emission
-- interval T, capacity burst×T, period, limit, extra (the leaky bucket's
-- ceiling, the window offset), shadow ('1' or '0'). All numbers decimal.
--
-- Reply: '1' or '0' (the set passes), then 5 per limit: allowed ('1'/'0'),
-- remaining, reset_after, retry_after ('-' for none), delay; last, the
-- instant decided at (`now`, Outcome::at), so that a refund can name it.
--
-- Stored states: a string "g <tat>", "b <level> <last>", "w <start>
-- <count>" or "s <start> <prev> <curr>"; the log is a list (see
-- sliding_log.lua). A state of another kind, or unreadable, counts as
-- fresh.

if redis.replicate_commands then redis.replicate_commands() end

local ALGORITHMS = {
  g = gcra,
  t = token_bucket,
  k = leaky_bucket,
  f = fixed_window,
  s = sliding_window,
  l = sliding_log,
}

-- Algorithm::force, for absorb ('l' is apply_log).
local FORCE = {
  g = gcra_force,
  t = token_bucket_force,
  k = leaky_bucket_force,
  f = fixed_window_force,
  s = sliding_window_force,
}

local FRESH = { kind = '' }
local MILLION = N('1000000')

local function load_string(k)
  local v = redis.pcall('GET', k)
  if type(v) ~= 'string' then return FRESH end
  local kind = string.sub(v, 1, 1)
  if kind == 'g' then
    local a = string.match(v, '^g (%d+)$')
    if a then return { kind = 'g', tat = N(a) } end
  elseif kind == 'b' then
    local a, b = string.match(v, '^b (%d+) (%d+)$')
    if a then return { kind = 'b', level = N(a), last = N(b) } end
  elseif kind == 'w' then
    local a, b = string.match(v, '^w (%d+) (%d+)$')
    if a then return { kind = 'w', start = N(a), count = N(b) } end
  elseif kind == 's' then
    local a, b, c = string.match(v, '^s (%d+) (%d+) (%d+)$')
    if a then return { kind = 's', start = N(a), prev = N(b), curr = N(c) } end
  end
  return FRESH
end

-- The stored string of a state that is not a log.
local function state_string(st)
  local kind = st.kind
  if kind == 'g' then
    return 'g ' .. S(st.tat)
  elseif kind == 'b' then
    return 'b ' .. S(st.level) .. ' ' .. S(st.last)
  elseif kind == 'w' then
    return 'w ' .. S(st.start) .. ' ' .. S(st.count)
  elseif kind == 's' then
    return 's ' .. S(st.start) .. ' ' .. S(st.prev) .. ' ' .. S(st.curr)
  end
  return nil
end

local function store(k, st, px)
  if st.kind == 'l' then
    store_log(st, px)
    return
  end
  local v = state_string(st)
  if v then redis.call('SET', k, v, 'PX', px) end
end

-- Refund ('u'): undoes exactly what an acquire at `now` committed for one
-- limit (Algorithm::refund): Backend::refund, and a set split over cluster
-- slots that another slot denied. The
-- state keeps its TTL (a refund only shortens the time to fresh). A state
-- of another kind, or a window that has moved on, holds nothing to undo.
local function refund_string(k, code, q, now, cost, inc)
  local st = load_string(k)
  if code == 'g' then
    -- TAT' = max(TAT, now) + cost·T: take cost·T back (saturating).
    if st.kind ~= 'g' then return end
    st.tat = satsub(st.tat, inc)
  elseif code == 't' then
    -- The level lost cost·T: give it back, up to the capacity.
    if st.kind ~= 'b' then return end
    st.level = min(satadd(st.level, inc), q.cap)
  elseif code == 'k' then
    -- The water rose by cost·T: drain it back (saturating).
    if st.kind ~= 'b' then return end
    st.level = satsub(st.level, inc)
  elseif code == 'f' then
    -- The window holding `now` counted `cost`.
    if st.kind ~= 'w' then return end
    local start = fixed_window_at(st, q.p, now, q.extra)
    if cmp(st.start, start) ~= 0 then return end
    st.count = satsub(st.count, cost)
  elseif code == 's' then
    -- The window holding `now` counted `cost` in `curr`; if a later
    -- instant has rolled it over since, that count is now `prev`.
    if st.kind ~= 's' then return end
    local start = sub(now, mod(now, q.p))
    if cmp(st.start, start) == 0 then
      st.curr = satsub(st.curr, cost)
    elseif cmp(st.start, satadd(start, q.p)) == 0 then
      st.prev = satsub(st.prev, cost)
    else
      return
    end
  else
    return
  end
  redis.call('SET', k, state_string(st), 'KEEPTTL')
end

-- The log got `cost` at instant `now`, merged into the entry of that
-- instant (shared with other requests at the same instant): take `cost`
-- off that entry and the header's total, removing the entry at zero. The
-- search runs from the newest entry back, and stops at an older instant
-- while the log is sorted.
local function refund_log(k, now, cost)
  local header = redis.pcall('LINDEX', k, 0)
  if type(header) ~= 'string' then return end
  local total, sorted = string.match(header, '^L (%d+) ([01])$')
  if not total then return end
  local target = S(now)
  for i = redis.call('LLEN', k) - 1, 1, -1 do
    local raw = redis.call('LINDEX', k, i)
    local t, c = string.match(raw, '^(%d+) (%d+)$')
    if not t then return end
    if t == target then
      local before = N(c)
      local taken = min(before, cost)
      local left = sub(before, taken)
      if isz(left) then
        -- No entry is '-' (each is '<t> <c>', the header 'L ...').
        redis.call('LSET', k, i, '-')
        redis.call('LREM', k, 1, '-')
      else
        redis.call('LSET', k, i, t .. ' ' .. S(left))
      end
      redis.call('LSET', k, 0, 'L ' .. S(satsub(N(total), taken)) .. ' ' .. sorted)
      return
    end
    if sorted == '1' and cmp(N(t), now) < 0 then return end
  end
end

local mode = ARGV[1]
local now
if ARGV[2] == '' then
  local time = redis.call('TIME')
  now = add(mul(N(time[1]), N('1000000000')), mul(N(time[2]), N('1000')))
else
  now = N(ARGV[2])
end
local margin = N(ARGV[3])

-- 'd' answers exactly as 'a' would; only the write-back is skipped.
local dry = mode == 'd'
if dry then mode = 'a' end

if mode == 'u' then
  for i = 1, #KEYS do
    local o = 3 + (i - 1) * 8
    local code = ARGV[o + 1]
    local cost = N(ARGV[o + 2])
    local q = { t = N(ARGV[o + 3]), cap = N(ARGV[o + 4]), p = N(ARGV[o + 5]),
                limit = N(ARGV[o + 6]), extra = N(ARGV[o + 7]) }
    local inc = mul(cost, q.t)
    if cmp(inc, U64_MAX) > 0 then inc = U64_MAX end
    if not isz(cost) then
      if code == 'l' then
        refund_log(KEYS[i], now, cost)
      else
        refund_string(KEYS[i], code, q, now, cost, inc)
      end
    end
  end
  -- The answer: what a peek at that instant gives after the refund.
  mode = 'p'
end

if mode == 'r' then
  redis.call('DEL', unpack(KEYS))
  mode = 'p'
end

local states = {}
local touched = {}
local resets = {}
local reply = { '1' }
local passes = true

for i = 1, #KEYS do
  local k = KEYS[i]
  local o = 3 + (i - 1) * 8
  local code = ARGV[o + 1]
  local algorithm = ALGORITHMS[code]
  if not algorithm then error('tollgate: unknown algorithm') end
  local cost = N(ARGV[o + 2])
  local q = { t = N(ARGV[o + 3]), cap = N(ARGV[o + 4]), p = N(ARGV[o + 5]),
              limit = N(ARGV[o + 6]), extra = N(ARGV[o + 7]) }
  local shadow = ARGV[o + 8] == '1'
  local inc = mul(cost, q.t)
  if cmp(inc, U64_MAX) > 0 then inc = U64_MAX end
  local st = states[k]
  if st == nil then
    if code == 'l' then st = load_log(k) else st = load_string(k) end
    states[k] = st
  end
  local d, commit = algorithm(q, st, now, cost, inc)
  if mode == 'p' then
    -- What acquire would answer, with remaining and reset as of now.
    local z = algorithm(q, st, now, ZERO, ZERO)
    d.remaining, d.reset = z.remaining, z.reset
    commit = nil
  elseif mode == 'f' then
    -- Algorithm::force: count whatever the limit says; describe the key
    -- after the write.
    commit = nil
    local next = st
    if not isz(cost) then
      if code == 'l' then
        next = apply_log(st, { at = now, period = q.p, cost = cost }, k)
      else
        next = FORCE[code](q, st, now, cost, inc)
      end
    end
    local one = algorithm(q, next, now, ONE, q.t)
    local z = algorithm(q, next, now, ZERO, ZERO)
    local retry = nil
    if not one.ok then retry = one.retry end
    d = { ok = d.ok, remaining = z.remaining, reset = z.reset, retry = retry, delay = ZERO }
    if not isz(cost) then
      states[k] = next
      if not resets[k] then touched[#touched + 1] = k end
      resets[k] = d.reset
    end
  end
  if not (d.ok or shadow) then passes = false end
  if commit then
    if commit.kind == 'log' then
      states[k] = apply_log(st, commit, k)
    else
      states[k] = commit
    end
    if not resets[k] then touched[#touched + 1] = k end
    resets[k] = d.reset
  end
  local ok = '0'
  if d.ok then ok = '1' end
  local retry = '-'
  if d.retry then retry = S(d.retry) end
  local n = #reply
  reply[n + 1] = ok
  reply[n + 2] = S(d.remaining)
  reply[n + 3] = S(d.reset)
  reply[n + 4] = retry
  reply[n + 5] = S(d.delay)
end

-- Acquire writes only if the set passes; absorb counts every limit.
if (passes and mode == 'a' and not dry) or mode == 'f' then
  for _, k in ipairs(touched) do
    -- The state is fresh again after `reset`: expire it then (rounded up
    -- to the millisecond), plus the margin.
    local px = add(div(add(resets[k], N('999999')), MILLION), margin)
    if isz(px) then px = ONE end
    store(k, states[k], S(px))
  end
end

if not passes then reply[1] = '0' end
reply[#reply + 1] = S(now)
return reply
