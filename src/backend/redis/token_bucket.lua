-- Token bucket (src/algorithm/token_bucket.rs), line for line.
-- State: { kind = 'b', level, last }, the level in nanoseconds of refill. A
-- `last` ahead of `now` (a debt) refills nothing until `now` reaches it.

-- The level at `now`, the instant it is counted from, and the debt.
local function token_level_at(st, capacity, now)
  local level, last
  if st.kind == 'b' then
    level, last = min(st.level, capacity), st.last
  else
    level, last = capacity, now
  end
  level = min(satadd(level, satsub(now, last)), capacity)
  return level, max(last, now), satsub(last, now)
end

local function token_bucket(q, st, now, cost, need)
  local t, capacity = q.t, q.cap
  local level, last, debt = token_level_at(st, capacity, now)
  if cmp(level, need) >= 0 then
    local left = sub(level, need)
    local d = allow(div(left, t), satadd(debt, sub(capacity, left)))
    local commit = nil
    if not isz(cost) then commit = { kind = 'b', level = left, last = last } end
    return d, commit
  end
  local retry = nil
  if cmp(need, capacity) <= 0 then retry = satadd(debt, sub(need, level)) end
  return deny(div(level, t), satadd(debt, sub(capacity, level)), retry), nil
end

-- Algorithm::force: takes cost·T from the level; a deficit moves `last`
-- forward by itself.
local function token_bucket_force(q, st, now, _, need)
  local level, last = token_level_at(st, q.cap, now)
  if cmp(level, need) >= 0 then
    return { kind = 'b', level = sub(level, need), last = last }
  end
  return { kind = 'b', level = ZERO, last = satadd(last, sub(need, level)) }
end
