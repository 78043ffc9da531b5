-- Sliding window log (src/algorithm/sliding_log.rs), line for line, and its
-- storage: a list whose element 0 is a header "L <total> <sorted>" (the
-- exact sum of the entries' costs; '1' while their instants never go
-- down), followed by the entries "<t> <c>", oldest first.
--
-- Memory iterates the whole log on every check; here that would cost
-- microseconds per entry in Lua, so entries are read lazily: while the log
-- is sorted, the live entries are a suffix, `used` is the total minus the
-- expired prefix, and only the prefix (and the newest entry) is read.
-- Entries are kept in instant order (an earlier instant is inserted where
-- it belongs); a log stored unsorted by an older version is scanned whole. Instants are kept as exact doubles (h, l) with t = h·10^15 + l,
-- costs as doubles when below 10^15 (else as limbs), so the scan needs no
-- limb arithmetic.
--
-- State: { kind = 'l', key, n0 (entries stored), n (entries now), first
-- (the oldest entry not pruned), cache (i → entry), total, sorted,
-- changed (the first stored entry moved or merged since loading), ... }.

local E15 = 1000000000000000
local N_E15 = N('1000000000000000')
local TWO53 = 9007199254740992

local function split(s)
  local len = #s
  if len <= 15 then return 0, tonumber(s) end
  return tonumber(string.sub(s, 1, len - 15)), tonumber(string.sub(s, len - 14))
end

local function split_big(a) return split(S(a)) end

local function unsplit(h, l) return add(mul(num(h), N_E15), num(l)) end

local function unsplit_string(h, l)
  if h == 0 then return string.format('%d', l) end
  return string.format('%d', h) .. string.format('%015d', l)
end

local function cost_of(s)
  if #s <= 15 then return tonumber(s) end
  return N(s)
end

local function cost_big(c)
  if type(c) == 'number' then return num(c) end
  return c
end

local function cost_string(c)
  if type(c) == 'number' then return string.format('%d', c) end
  return S(c)
end

local function parse_entry(raw)
  local t, c = string.match(raw, '^(%d+) (%d+)$')
  if not t then return nil end
  local h, l = split(t)
  return { h = h, l = l, c = cost_of(c), raw = raw }
end

-- Reads stored entries [from, to] (1-based, below the header) into the
-- cache; an entry already there (perhaps changed by a tentative commit)
-- is kept.
local function log_fetch(st, from, to)
  local items = redis.call('LRANGE', st.key, from, to)
  local cache = st.cache
  for j = 1, #items do
    local i = from + j - 1
    if cache[i] == nil then
      local en = parse_entry(items[j])
      if not en then error('tollgate: corrupt sliding log entry') end
      cache[i] = en
    end
  end
end

-- Entry i, read on demand: one entry at first, then twice as many each
-- time (up to 256), so a check that needs one or two entries reads just
-- those and a long scan takes few round trips into the list.
local function log_get(st, i)
  local en = st.cache[i]
  if en then return en end
  local to = i + st.batch - 1
  if to > st.n0 then to = st.n0 end
  if st.batch < 256 then st.batch = st.batch * 2 end
  log_fetch(st, i, to)
  return st.cache[i]
end

-- Entry i, read on demand while walking back from the newest entry:
-- batches end at i and grow the same way.
local function log_get_back(st, i)
  local en = st.cache[i]
  if en then return en end
  local from = i - st.batch + 1
  if from < st.first then from = st.first end
  if st.batch < 256 then st.batch = st.batch * 2 end
  log_fetch(st, from, i)
  return st.cache[i]
end

local function fresh_log(key, rewrite)
  return { kind = 'l', key = key, n0 = 0, n = 0, first = 1, cache = {}, batch = 1,
           total = ZERO, sorted = true, changed = nil, rewrite = rewrite }
end

local function load_log(k)
  local header = redis.pcall('LINDEX', k, 0)
  if type(header) == 'table' then return fresh_log(k, true) end -- another type
  if not header then return fresh_log(k, false) end
  local total, sorted = string.match(header, '^L (%d+) ([01])$')
  if not total then return fresh_log(k, true) end
  local n0 = redis.call('LLEN', k) - 1
  return { kind = 'l', key = k, n0 = n0, n = n0, first = 1, cache = {}, batch = 1,
           total = N(total), sorted = sorted == '1', changed = nil, rewrite = false }
end

-- Which instants are live at `now` for a period `p`: t + p > now
-- (saturating), i.e. every t when now < p, none when now is u64::MAX,
-- else t > now − p.
local function liveness(now, p)
  if cmp(now, p) < 0 then return 'all' end
  if cmp(now, U64_MAX) == 0 then return 'none' end
  local h, l = split_big(sub(now, p))
  return { h = h, l = l }
end

local function is_live(live, en)
  if live == 'all' then return true end
  if live == 'none' then return false end
  return en.h > live.h or (en.h == live.h and en.l > live.l)
end

-- Adds the costs of entries to a sum kept as a double while exact.
local function sum_add(s, c)
  if type(c) == 'number' and s.small + c < TWO53 then
    s.small = s.small + c
  else
    s.big = add(s.big, cost_big(c))
  end
end

local function sum_value(s) return add(num(s.small), s.big) end

-- `used` (saturating) and the newest live entry, as Rust's first loop.
local function log_used(st, live)
  local first, n = st.first, st.n
  if st.sorted then
    local expired = { small = 0, big = ZERO }
    local i = first
    while i <= n do
      local en = log_get(st, i)
      if is_live(live, en) then break end
      sum_add(expired, en.c)
      i = i + 1
    end
    local newest = nil
    if i <= n then newest = log_get(st, n) end
    local used = sub(st.total, sum_value(expired))
    if cmp(used, U64_MAX) > 0 then used = U64_MAX end
    return used, newest, i
  end
  local used = { small = 0, big = ZERO }
  local newest = nil
  for i = first, n do
    local en = log_get(st, i)
    if is_live(live, en) then
      sum_add(used, en.c)
      newest = en
    end
  end
  local u = sum_value(used)
  if cmp(u, U64_MAX) > 0 then u = U64_MAX end
  return u, newest, first
end

local function sliding_log(q, st, now, cost, _)
  local p, limit = q.p, q.limit
  local live = liveness(now, p)
  local used, newest, from = ZERO, nil, 1
  if st.kind == 'l' then used, newest, from = log_used(st, live) end
  local function until_expiry(en) return satsub(satadd(unsplit(en.h, en.l), p), now) end
  if cmp(satadd(used, cost), limit) <= 0 then
    local reset = ZERO
    if not isz(cost) then
      reset = p
    elseif newest then
      reset = until_expiry(newest)
    end
    local d = allow(sub(sub(limit, used), cost), reset)
    local commit = nil
    if not isz(cost) then commit = { kind = 'log', at = now, period = p, cost = cost } end
    return d, commit
  end
  local reset = ZERO
  if newest then reset = until_expiry(newest) end
  local retry = nil
  if cmp(cost, limit) <= 0 and st.kind == 'l' then
    -- Free the oldest entries until the request fits.
    local need = sub(add(used, cost), limit)
    local small_need = nil
    if cmp(need, N_E15) < 0 then small_need = tonum(need) end
    local freed = { small = 0, big = ZERO }
    for i = from, st.n do
      local en = log_get(st, i)
      if is_live(live, en) then
        local enough
        if small_need and type(en.c) == 'number' then
          freed.small = freed.small + en.c
          enough = freed.small >= small_need
        elseif small_need then
          enough = true -- a cost of 10^15 or more frees more than needed
        else
          sum_add(freed, en.c)
          enough = cmp(sum_value(freed), need) >= 0
        end
        if enough then
          retry = until_expiry(en)
          break
        end
      end
    end
  end
  return deny(satsub(limit, used), reset, retry), nil
end

-- State::apply for Commit::Log: prune what is out of the window ending at
-- `at`, then merge into the entry of the same instant or insert in instant
-- order. An instant earlier than the newest entry's arrives when the
-- slots of a Redis Cluster set run at the instant of their first slot
-- while another call got there first, or when the clock went back: it is
-- inserted where it belongs (near the end, so few entries move), which
-- keeps the log sorted and every check reading only its expired prefix.
-- A log stored unsorted by an older version is appended to, as it was.
local function apply_log(st, c, k)
  if st.kind ~= 'l' then
    st = fresh_log(k, st.rewrite or st.kind ~= '')
  end
  local live = liveness(c.at, c.period)
  while st.first <= st.n do
    local en = log_get(st, st.first)
    if is_live(live, en) then break end
    st.total = sub(st.total, cost_big(en.c))
    st.first = st.first + 1
  end
  if st.first > st.n then st.sorted = true end
  local h, l = split_big(c.at)
  local function after(en) return en.h > h or (en.h == h and en.l > l) end
  -- The last entry at or before `at` (all of them while unsorted).
  local i = st.n
  if st.sorted then
    while i >= st.first and after(log_get_back(st, i)) do i = i - 1 end
  end
  local at_i = nil
  if i >= st.first then at_i = log_get_back(st, i) end
  if at_i and at_i.h == h and at_i.l == l then
    local before = cost_big(at_i.c)
    local merged = satadd(before, c.cost)
    local mc = merged
    if cmp(merged, N_E15) < 0 then mc = tonum(merged) end
    st.cache[i] = { h = h, l = l, c = mc }
    if i <= st.n0 then st.changed = math.min(st.changed or i, i) end
    st.total = add(sub(st.total, before), merged)
  elseif not isz(c.cost) then
    if at_i and after(at_i) then st.sorted = false end -- unsorted: appended
    local cc = c.cost
    if cmp(cc, N_E15) < 0 then cc = tonum(cc) end
    for j = st.n, i + 1, -1 do st.cache[j + 1] = st.cache[j] end
    st.cache[i + 1] = { h = h, l = l, c = cc }
    if i + 1 <= st.n0 then st.changed = math.min(st.changed or (i + 1), i + 1) end
    st.n = st.n + 1
    st.total = add(st.total, c.cost)
  end
  return st
end

local function log_entry_string(en)
  if en.raw then return en.raw end
  return unsplit_string(en.h, en.l) .. ' ' .. cost_string(en.c)
end

local function log_push(st, items, from, to)
  local batch = items or {}
  for i = from, to do
    batch[#batch + 1] = log_entry_string(log_get(st, i))
    if #batch >= 1000 then
      redis.call('RPUSH', st.key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('RPUSH', st.key, unpack(batch)) end
end

local function store_log(st, px)
  local k = st.key
  local sorted = '0'
  if st.sorted then sorted = '1' end
  local header = 'L ' .. S(st.total) .. ' ' .. sorted
  local first, n0 = st.first, st.n0
  if st.rewrite or n0 == 0 or first - 1 > n0 then
    if first <= n0 then log_fetch(st, first, n0) end
    redis.call('DEL', k)
    log_push(st, { header }, first, st.n)
  else
    if first > 1 then
      -- Drop the header and the pruned entries, then put the header back.
      redis.call('LTRIM', k, first, -1)
      redis.call('LPUSH', k, header)
    else
      redis.call('LSET', k, 0, header)
    end
    local changed = st.changed
    if changed and changed < first then changed = first end
    if changed and changed <= n0 then
      -- Stored entries from `changed` on moved or merged: keep those
      -- before it, write the rest again (near the end: a few entries).
      redis.call('LTRIM', k, 0, changed - first)
      log_push(st, nil, changed, st.n)
    else
      log_push(st, nil, n0 + 1, st.n)
    end
  end
  redis.call('PEXPIRE', k, px)
end
