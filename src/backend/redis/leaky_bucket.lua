-- Leaky bucket, meter and queue (src/algorithm/leaky_bucket.rs), line for
-- line. State: { kind = 'b', level, last }, shared with the token bucket as
-- in Rust. q.extra: the ceiling, capacity + max_delay (saturating), which
-- is the capacity for the meter.
local function leaky_bucket(q, st, now, cost, inc)
  local t, capacity, ceiling = q.t, q.cap, q.extra
  local water, last
  if st.kind == 'b' then
    water, last = st.level, st.last
  else
    water, last = ZERO, now
  end
  water = satsub(water, satsub(now, last))
  local poured = satadd(water, inc)
  local fits = cmp(inc, capacity) <= 0
  if cmp(poured, ceiling) <= 0 and fits then
    local d = allow(div(satsub(capacity, poured), t), poured)
    d.delay = satsub(poured, capacity)
    local commit = nil
    if not isz(cost) then commit = { kind = 'b', level = poured, last = max(now, last) } end
    return d, commit
  end
  local retry = nil
  if fits then retry = sub(poured, ceiling) end
  return deny(div(satsub(capacity, water), t), water, retry), nil
end

-- Algorithm::force: drains to `now`, then pours cost·T with no ceiling.
local function leaky_bucket_force(_, st, now, _, inc)
  local water, last
  if st.kind == 'b' then
    water, last = st.level, st.last
  else
    water, last = ZERO, now
  end
  water = satsub(water, satsub(now, last))
  return { kind = 'b', level = satadd(water, inc), last = max(now, last) }
end
