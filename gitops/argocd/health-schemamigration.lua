-- Argo CD health check for schemaop.dev/SchemaMigration.
--
-- The operator reports kstatus conditions (Ready, Reconciling, Stalled) and
-- status.observedGeneration. Mapped to Argo CD's health:
--   Healthy      Ready=True, for the current generation
--   Progressing  no status yet; status for an older generation; Reconciling=True;
--                or Ready not True for any other reason (Argo CD keeps waiting)
--   Degraded     Stalled=True: a person must act; the message says what to do
--   Suspended    spec.suspend is true, or Ready's reason is Suspended
--
-- Argo CD runs custom checks without the string and math libraries, so this
-- uses base functions only. It must never raise an error: an error shows as
-- an unknown health with a Lua trace instead of a useful message.

local hs = {}

-- A number from a JSON number or numeric string; nil for anything else.
local function number(value)
  if type(value) == "number" then
    return value
  end
  if type(value) == "string" then
    return tonumber(value)
  end
  return nil
end

local function text(value)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return nil
end

local function find_condition(conditions, condition_type)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- "Reason: message" from a condition, or the fallback when it has neither.
local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  local reason = text(condition.reason)
  local message = text(condition.message)
  if reason ~= nil and message ~= nil then
    return reason .. ": " .. message
  end
  return message or reason or fallback
end

local metadata = obj.metadata
if type(metadata) ~= "table" then
  metadata = {}
end
local spec = obj.spec
if type(spec) ~= "table" then
  spec = {}
end
local status = obj.status
if type(status) ~= "table" then
  status = {}
end

local generation = number(metadata.generation)
local observed = number(status.observedGeneration)
local conditions = status.conditions
if type(conditions) ~= "table" then
  conditions = {}
end
local ready = find_condition(conditions, "Ready")
local reconciling = find_condition(conditions, "Reconciling")
local stalled = find_condition(conditions, "Stalled")

-- The oldest generation the status speaks for: the status's own, or the Ready
-- condition's when that is older (a condition can be left from before).
local seen = observed
local ready_generation = ready and number(ready.observedGeneration)
if ready_generation ~= nil and (seen == nil or ready_generation < seen) then
  seen = ready_generation
end

if spec.suspend == true then
  -- Suspension is the user's decision: show it at once, before the operator
  -- has caught up with the change.
  hs.status = "Suspended"
  if ready ~= nil and ready.reason == "Suspended" then
    hs.message = describe(ready, "Suspended")
  else
    hs.message = "Suspended: spec.suspend is true; no migrations run until it is false"
  end
  return hs
end

if ready == nil and reconciling == nil and stalled == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the schemaop operator to report status"
  return hs
end

-- Right after a spec change the old status still says Ready=True: without
-- this, Argo CD would move on to the next sync wave before the operator has
-- even seen the new target.
if generation ~= nil and (seen == nil or seen < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the schemaop operator to observe generation " .. tostring(generation)
  if seen ~= nil then
    hs.message = hs.message .. " (status is for generation " .. tostring(seen) .. ")"
  end
  return hs
end

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled: the operator stopped trying; kubectl describe shows why")
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "The database is at the target revision")
  return hs
end

if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Migrating")
  return hs
end

if ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready, "Suspended")
  return hs
end

-- Ready is False or Unknown with nothing else set, or missing while another
-- condition is present: not done, and not known to be stuck.
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
