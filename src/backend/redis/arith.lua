-- tollgate: exact unsigned integer arithmetic for Redis Lua 5.1.
--
-- Lua numbers are doubles, exact only up to 2^53, while the algorithms work
-- on u64 nanoseconds since the epoch (~1.7e18) and on 128-bit products. A
-- number here is an array of base-2^24 limbs, least significant first, with
-- no high zero limb (zero is the empty array). Every limb operation stays
-- below 2^53: a limb product is < 2^48, plus a limb and a carry < 2^53.
-- Numbers arrive and leave as decimal strings.
--
-- Functions never modify their arguments; results may share a table with
-- an argument (treat every number as immutable).

local BASE = 16777216 -- 2^24
local floor = math.floor

local ZERO = {}
local ONE = { 1 }

local function norm(a)
  local n = #a
  while n > 0 and a[n] == 0 do
    a[n] = nil
    n = n - 1
  end
  return a
end

-- A non-negative integer-valued double (any size) to limbs. Exact: BASE is
-- a power of two, so `%` and the division only move the binary point.
local function num(x)
  local r = {}
  local i = 0
  while x > 0 do
    local lo = x % BASE
    i = i + 1
    r[i] = lo
    x = (x - lo) / BASE
  end
  return r
end

-- Limbs to the nearest double: an estimate, exact below 2^53.
local function tonum(a)
  local x = 0
  for i = #a, 1, -1 do
    x = x * BASE + a[i]
  end
  return x
end

-- A decimal string of digits to limbs: directly below 10^15 (exact as a
-- double), else seven digits at a time.
local function N(s)
  local len = #s
  if len <= 15 then return num(tonumber(s)) end
  local r = {}
  local stop = len % 7
  if stop == 0 then stop = 7 end
  local pos = 1
  while pos <= len do
    local carry = tonumber(string.sub(s, pos, stop))
    for i = 1, #r do
      local x = r[i] * 10000000 + carry
      local lo = x % BASE
      r[i] = lo
      carry = (x - lo) / BASE
    end
    while carry > 0 do
      local lo = carry % BASE
      r[#r + 1] = lo
      carry = (carry - lo) / BASE
    end
    pos = stop + 1
    stop = stop + 7
  end
  return r
end

-- Limbs to a decimal string.
local function S(a)
  local n = #a
  if n == 0 then return '0' end
  if n <= 2 then return string.format('%d', a[1] + (a[2] or 0) * BASE) end
  local t = {}
  for i = 1, n do t[i] = a[i] end
  local chunks = {}
  while n > 0 do
    local rem = 0
    for i = n, 1, -1 do
      local x = rem * BASE + t[i]
      local q = floor(x / 10000000)
      rem = x - q * 10000000
      t[i] = q
    end
    while n > 0 and t[n] == 0 do
      t[n] = nil
      n = n - 1
    end
    chunks[#chunks + 1] = rem
  end
  local out = { string.format('%d', chunks[#chunks]) }
  for i = #chunks - 1, 1, -1 do
    out[#out + 1] = string.format('%07d', chunks[i])
  end
  return table.concat(out)
end

local function cmp(a, b)
  local na, nb = #a, #b
  if na ~= nb then
    if na < nb then return -1 end
    return 1
  end
  for i = na, 1, -1 do
    local x, y = a[i], b[i]
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end

local function add(a, b)
  local na, nb = #a, #b
  if nb == 0 then return a end
  if na == 0 then return b end
  local n = na
  if nb > n then n = nb end
  local r, carry = {}, 0
  for i = 1, n do
    local x = (a[i] or 0) + (b[i] or 0) + carry
    if x >= BASE then
      r[i] = x - BASE
      carry = 1
    else
      r[i] = x
      carry = 0
    end
  end
  if carry > 0 then r[n + 1] = carry end
  return r
end

-- a - b; an error (never a wrong number) when b > a.
local function sub(a, b)
  if #b == 0 then return a end
  local r, borrow = {}, 0
  for i = 1, #a do
    local x = a[i] - (b[i] or 0) - borrow
    if x < 0 then
      r[i] = x + BASE
      borrow = 1
    else
      r[i] = x
      borrow = 0
    end
  end
  if borrow ~= 0 or #b > #a then error('tollgate: negative difference') end
  return norm(r)
end

local function mul(a, b)
  local na, nb = #a, #b
  if na == 0 or nb == 0 then return ZERO end
  local r = {}
  for i = 1, na + nb do r[i] = 0 end
  for i = 1, na do
    local ai = a[i]
    local carry = 0
    for j = 1, nb do
      local k = i + j - 1
      local x = r[k] + ai * b[j] + carry
      local lo = x % BASE
      r[k] = lo
      carry = (x - lo) / BASE
    end
    local k = i + nb
    while carry > 0 do
      local x = r[k] + carry
      local lo = x % BASE
      r[k] = lo
      carry = (x - lo) / BASE
      k = k + 1
    end
  end
  return norm(r)
end

-- (floor(a / b), a mod b) for b > 0. The quotient is estimated with
-- doubles and corrected with exact products until 0 <= a - q*b < b, which
-- is checked before returning: the answer is exact whatever the estimate.
-- Each correction shrinks the error by a factor of about 2^-50, so it
-- takes one or two rounds.
local function divmod(a, b)
  if #b == 0 then error('tollgate: division by zero') end
  if cmp(a, b) < 0 then return ZERO, a end
  local bd = tonum(b)
  local q = num(floor(tonum(a) / bd))
  for _ = 1, 64 do
    local p = mul(q, b)
    if cmp(p, a) > 0 then
      local dq = num(floor(tonum(sub(p, a)) / bd) + 1)
      if cmp(dq, q) >= 0 then q = ZERO else q = sub(q, dq) end
    else
      local r = sub(a, p)
      if cmp(r, b) < 0 then return q, r end
      local d = floor(tonum(r) / bd)
      if d < 1 then d = 1 end
      q = add(q, num(d))
    end
  end
  error('tollgate: division did not converge')
end

local function div(a, b)
  local q = divmod(a, b)
  return q
end

local function mod(a, b)
  local _, r = divmod(a, b)
  return r
end

local function isz(a) return #a == 0 end

local function max(a, b)
  if cmp(a, b) >= 0 then return a end
  return b
end

local function min(a, b)
  if cmp(a, b) <= 0 then return a end
  return b
end

local U64_MAX = N('18446744073709551615')

-- Rust's u64 saturating_add and saturating_sub.
local function satadd(a, b)
  local r = add(a, b)
  if cmp(r, U64_MAX) > 0 then return U64_MAX end
  return r
end

local function satsub(a, b)
  if cmp(a, b) > 0 then return sub(a, b) end
  return ZERO
end

-- `a * b / c` rounded down, saturating to u64::MAX (Rust's `mul_div`).
local function muldiv(a, b, c)
  if #c == 0 then return U64_MAX end
  local r = div(mul(a, b), c)
  if cmp(r, U64_MAX) > 0 then return U64_MAX end
  return r
end

-- A decision, as in Rust's `Decision::allow` and `Decision::deny`.
local function allow(remaining, reset)
  return { ok = true, remaining = remaining, reset = reset, retry = nil, delay = ZERO }
end

local function deny(remaining, reset, retry)
  return { ok = false, remaining = remaining, reset = reset, retry = retry, delay = ZERO }
end
