-- Sliding window counter (src/algorithm/sliding_window.rs), line for line.
-- State: { kind = 's', start, prev, curr }.

-- The smallest offset e into a window at which
-- floor(count × (p − e) / p) <= allowed.
local function first_offset_within(count, p, allowed)
  if cmp(count, allowed) <= 0 then return ZERO end
  local span = div(sub(mul(add(allowed, ONE), p), ONE), count)
  if cmp(span, p) > 0 then return ZERO end
  return sub(p, span)
end

-- The previous and current counts of the window starting at `start`.
local function sliding_counts(st, start, p)
  if st.kind == 's' then
    if cmp(st.start, start) == 0 then
      return st.prev, st.curr
    elseif cmp(satadd(st.start, p), start) == 0 then
      return st.curr, ZERO
    end
  end
  return ZERO, ZERO
end

local function sliding_window(q, st, now, cost, _)
  local p, limit = q.p, q.limit
  local start = sub(now, mod(now, p))
  local elapsed = sub(now, start)
  local prev, curr = sliding_counts(st, start, p)
  local left = sub(p, elapsed)
  local used = satadd(muldiv(prev, left, p), curr)
  local function after(offset) return sub(offset, elapsed) end
  local function reset(pv, cu)
    if not isz(cu) then
      return after(add(p, first_offset_within(cu, p, ZERO)))
    elseif not isz(muldiv(pv, left, p)) then
      return after(first_offset_within(pv, p, ZERO))
    end
    return ZERO
  end
  if cmp(satadd(used, cost), limit) <= 0 then
    local counted = add(curr, cost)
    local d = allow(sub(sub(limit, used), cost), reset(prev, counted))
    local commit = nil
    if not isz(cost) then commit = { kind = 's', start = start, prev = prev, curr = counted } end
    return d, commit
  end
  local retry = nil
  if cmp(cost, limit) > 0 then
    retry = nil
  elseif cmp(add(curr, cost), limit) <= 0 then
    retry = after(first_offset_within(prev, p, sub(sub(limit, curr), cost)))
  else
    retry = after(add(p, first_offset_within(curr, p, sub(limit, cost))))
  end
  return deny(satsub(limit, used), reset(prev, curr), retry), nil
end

-- Algorithm::force: rolls the windows to `now` and adds `cost` to the
-- current count.
local function sliding_window_force(q, st, now, cost, _)
  local p = q.p
  local start = sub(now, mod(now, p))
  local prev, curr = sliding_counts(st, start, p)
  return { kind = 's', start = start, prev = prev, curr = satadd(curr, cost) }
end
