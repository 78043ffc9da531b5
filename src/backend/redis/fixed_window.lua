-- Fixed window, aligned or staggered (src/algorithm/fixed_window.rs), line
-- for line. State: { kind = 'w', start, count }. q.extra: the window offset,
-- already reduced modulo the period (zero when clock-aligned).
-- The start of the window holding `now`, the phase of `now` in it, and
-- the count stored for that window.
local function fixed_window_at(st, p, now, offset)
  local phase = mod(sub(add(mod(now, p), p), offset), p)
  local start = satsub(now, phase)
  local count = ZERO
  if st.kind == 'w' and cmp(st.start, start) == 0 then count = st.count end
  return start, phase, count
end

local function fixed_window(q, st, now, cost, _)
  local p, limit = q.p, q.limit
  local start, phase, count = fixed_window_at(st, p, now, q.extra)
  local until_end = sub(p, phase)
  if cmp(satadd(count, cost), limit) <= 0 then
    local counted = add(count, cost)
    local reset = until_end
    if isz(counted) then reset = ZERO end
    local d = allow(sub(limit, counted), reset)
    local commit = nil
    if not isz(cost) then commit = { kind = 'w', start = start, count = counted } end
    return d, commit
  end
  local retry = nil
  if cmp(cost, limit) <= 0 then retry = until_end end
  local reset = until_end
  if isz(count) then reset = ZERO end
  return deny(satsub(limit, count), reset, retry), nil
end

-- Algorithm::force: adds `cost` to the current window's count, past the
-- limit if need be.
local function fixed_window_force(q, st, now, cost, _)
  local start, _, count = fixed_window_at(st, q.p, now, q.extra)
  return { kind = 'w', start = start, count = satadd(count, cost) }
end
