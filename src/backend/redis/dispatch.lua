-- The dispatcher: one call checks a whole LimitSet, all-or-nothing, like
-- MemoryBackend::run_many. Phase 1 decides every limit on tentative
-- states (a key that appears twice sees its own first count); phase 2
-- writes back only if every enforcing (non-shadow) limit allowed.
--
-- KEYS[i]: the state of limit i.
-- ARGV[1]: 'a' acquire, 'p' peek, 'r' reset (forget, then peek), 'f'
-- absorb (Backend::absorb: every limit counted with Algorithm::force, in
-- order, whatever the limits say).
-- ARGV[2]: now in nanoseconds since the epoch, or '' for the server's TIME.
-- ARGV[3]: milliseconds a key outlives the instant its state is fresh.
-- Then 8 per limit: algorithm ('g','t','k','f','s','l'), cost, emission
-- interval T, capacity burst×T, period, limit, extra (the leaky bucket's
-- ceiling, the window offset), shadow ('1' or '0'). All numbers decimal.
--
-- Reply: '1' or '0' (the set passes), then 5 per limit: allowed ('1'/'0'),
-- remaining, reset_after, retry_after ('-' for none), delay.
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

local function store(k, st, px)
  local kind = st.kind
  if kind == 'g' then
    redis.call('SET', k, 'g ' .. S(st.tat), 'PX', px)
  elseif kind == 'b' then
    redis.call('SET', k, 'b ' .. S(st.level) .. ' ' .. S(st.last), 'PX', px)
  elseif kind == 'w' then
    redis.call('SET', k, 'w ' .. S(st.start) .. ' ' .. S(st.count), 'PX', px)
  elseif kind == 's' then
    redis.call('SET', k, 's ' .. S(st.start) .. ' ' .. S(st.prev) .. ' ' .. S(st.curr), 'PX', px)
  elseif kind == 'l' then
    store_log(st, px)
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
if (passes and mode == 'a') or mode == 'f' then
  for _, k in ipairs(touched) do
    -- The state is fresh again after `reset`: expire it then (rounded up
    -- to the millisecond), plus the margin.
    local px = add(div(add(resets[k], N('999999')), MILLION), margin)
    if isz(px) then px = ONE end
    store(k, states[k], S(px))
  end
end

if not passes then reply[1] = '0' end
return reply
