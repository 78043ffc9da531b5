-- GCRA (src/algorithm/gcra.rs), line for line. State: { kind = 'g', tat }.
-- q.t: emission interval T; q.cap: burst × T; inc: cost × T.
local function gcra(q, st, now, cost, inc)
  local t, capacity = q.t, q.cap
  local stored = ZERO
  if st.kind == 'g' then stored = st.tat end
  local tat = max(stored, now)
  local new_tat = satadd(tat, inc)
  local used = sub(new_tat, now)
  if cmp(used, capacity) <= 0 then
    local d = allow(div(sub(capacity, used), t), used)
    local commit = nil
    if not isz(cost) then commit = { kind = 'g', tat = new_tat } end
    return d, commit
  end
  local waited = sub(tat, now)
  local retry = nil
  if cmp(inc, capacity) <= 0 then retry = sub(sub(new_tat, capacity), now) end
  return deny(div(satsub(capacity, waited), t), waited, retry), nil
end

-- Algorithm::force: TAT' = max(TAT, now) + cost·T, even beyond the capacity.
local function gcra_force(_, st, now, _, inc)
  local stored = ZERO
  if st.kind == 'g' then stored = st.tat end
  return { kind = 'g', tat = satadd(max(stored, now), inc) }
end
