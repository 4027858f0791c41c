-- Tests of the SchemaMigration health check: each case is a SchemaMigration
-- as Argo CD would hand it to the script (the global `obj`), and the health
-- it must get.
--
--   lua5.1 gitops/argocd/tests/run_tests.lua [path/to/health.lua]   (Argo CD's Lua)
--   lua5.4 gitops/argocd/tests/run_tests.lua [path/to/health.lua]
--
-- The script runs as Argo CD runs custom checks: without the string and math
-- libraries (method calls on strings fail too), so a check that needs them
-- fails here rather than in the cluster. Numbers are written as integers:
-- Argo CD passes JSON numbers as floats that print like Lua 5.4 integers
-- ("3"); one case passes floats to check the comparisons.
--
-- Prints a line per case and "N passed, N failed"; exits 1 on any failure.

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local script = arg and arg[1] or (here .. "/../health-schemamigration.lua")

-- What Argo CD gives a custom health script (package, base, table and a
-- restricted os), less what a health check has no use for.
local BASE = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
  "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type", "xpcall",
}

local function run_health(obj)
  local env = { obj = obj, table = table }
  for _, name in ipairs(BASE) do
    env[name] = _G[name]
  end
  local chunk, load_error
  if setfenv then
    -- Lua 5.1, as Argo CD's gopher-lua: the environment is set on the chunk.
    chunk, load_error = loadfile(script)
    if chunk then
      setfenv(chunk, env)
    end
  else
    chunk, load_error = loadfile(script, "t", env)
  end
  if not chunk then
    return nil, "cannot load " .. script .. ": " .. tostring(load_error)
  end
  -- Strings lose their methods while the check runs, as in Argo CD.
  local string_meta = getmetatable("")
  local string_index = string_meta.__index
  string_meta.__index = nil
  local ok, result = pcall(chunk)
  string_meta.__index = string_index
  if not ok then
    return nil, "raised an error: " .. tostring(result)
  end
  return result
end

-- Condition builder, shaped like the operator's metav1.Condition.
local function cond(type_, status, reason, message, generation)
  return {
    type = type_,
    status = status,
    reason = reason,
    message = message,
    observedGeneration = generation,
    lastTransitionTime = "2026-11-21T09:00:00Z",
  }
end

local function smig(generation, status, spec)
  return {
    apiVersion = "schemaop.dev/v1alpha1",
    kind = "SchemaMigration",
    metadata = { name = "app", namespace = "shop", generation = generation },
    spec = spec or {
      database = { urlSecretRef = { name = "app-db", key = "url" } },
      source = { configMapRefs = { { name = "app-migrations" } } },
      targetRevision = "latest",
    },
    status = status,
  }
end

-- The three conditions the operator always writes together.
local function conditions(ready, reconciling, stalled, reason, message, generation)
  return {
    cond("Ready", ready, reason, message, generation),
    cond("Reconciling", reconciling, reason, ready == "True" and "" or message, generation),
    cond("Stalled", stalled, reason, stalled == "True" and message or "", generation),
  }
end

local UP_TO_DATE = "the database is at 20261115090000"
local MIGRATING = "applying 3 of 5, 20261105090000, create runs"
local CHECKSUM = "Migration 20261102090000 (create connectors) changed since it was applied; restore "
  .. "the file, or accept it with schemaop repair --accept-checksum 20261102090000"
local SUSPENDED = "reconciliation is suspended; set spec.suspend to false to resume"

local cases = {
  {
    name = "Ready",
    obj = smig(4, { observedGeneration = 4, conditions = conditions("True", "False", "False", "UpToDate", UP_TO_DATE, 4) }),
    status = "Healthy",
    message = "UpToDate: " .. UP_TO_DATE,
  },
  {
    name = "Reconciling: migrating",
    obj = smig(4, { observedGeneration = 4, conditions = conditions("False", "True", "False", "Migrating", MIGRATING, 4) }),
    status = "Progressing",
    message = "Migrating: " .. MIGRATING,
  },
  {
    name = "Reconciling: waiting for the lock",
    obj = smig(2, { observedGeneration = 2, conditions = conditions("False", "True", "False", "WaitingForLock",
      "Another session holds the migration lock: schemaop on host db-migrate-7f9c", 2) }),
    status = "Progressing",
    message = "WaitingForLock: Another session holds the migration lock: schemaop on host db-migrate-7f9c",
  },
  {
    name = "Reconciling: retrying an unreachable database",
    obj = smig(1, { observedGeneration = 1, conditions = conditions("False", "True", "False", "DatabaseUnreachable",
      "Cannot connect to postgres:5432; retrying in 20s (attempt 2 of 5)", 1) }),
    status = "Progressing",
    message = "DatabaseUnreachable: Cannot connect to postgres:5432; retrying in 20s (attempt 2 of 5)",
  },
  {
    name = "observedGeneration lags: old Ready=True ignored",
    obj = smig(5, { observedGeneration = 4, conditions = conditions("True", "False", "False", "UpToDate", UP_TO_DATE, 4) }),
    status = "Progressing",
    message = "Waiting for the schemaop operator to observe generation 5 (status is for generation 4)",
  },
  {
    name = "observedGeneration lags: old Stalled=True ignored",
    obj = smig(7, { observedGeneration = 6, conditions = conditions("False", "False", "True", "ChecksumMismatch", CHECKSUM, 6) }),
    status = "Progressing",
    message = "Waiting for the schemaop operator to observe generation 7 (status is for generation 6)",
  },
  {
    name = "Ready condition older than the status",
    obj = smig(3, { observedGeneration = 3, conditions = {
      cond("Ready", "True", "UpToDate", UP_TO_DATE, 2),
      cond("Reconciling", "False", "UpToDate", "", 3),
      cond("Stalled", "False", "UpToDate", "", 3),
    } }),
    status = "Progressing",
    message = "Waiting for the schemaop operator to observe generation 3 (status is for generation 2)",
  },
  {
    name = "observedGeneration missing",
    obj = smig(2, { conditions = conditions("True", "False", "False", "UpToDate", UP_TO_DATE) }),
    status = "Progressing",
    message = "Waiting for the schemaop operator to observe generation 2",
  },
  {
    name = "no status yet",
    obj = smig(1, nil),
    status = "Progressing",
    message = "Waiting for the schemaop operator to report status",
  },
  {
    name = "empty status",
    obj = smig(1, {}),
    status = "Progressing",
    message = "Waiting for the schemaop operator to report status",
  },
  {
    name = "Stalled",
    obj = smig(3, { observedGeneration = 3, conditions = conditions("False", "False", "True", "ChecksumMismatch", CHECKSUM, 3) }),
    status = "Degraded",
    message = "ChecksumMismatch: " .. CHECKSUM,
  },
  {
    name = "Stalled with no message",
    obj = smig(3, { observedGeneration = 3, conditions = {
      cond("Ready", "False", "MigrationFailed", "", 3),
      cond("Stalled", "True", nil, nil, 3),
    } }),
    status = "Degraded",
    message = "Stalled: the operator stopped trying; kubectl describe shows why",
  },
  {
    name = "Suspended",
    obj = smig(6, { observedGeneration = 6, conditions = conditions("False", "False", "False", "Suspended", SUSPENDED, 6) },
      { suspend = true, targetRevision = "latest" }),
    status = "Suspended",
    message = "Suspended: " .. SUSPENDED,
  },
  {
    name = "Suspended before the operator caught up",
    obj = smig(6, { observedGeneration = 5, conditions = conditions("True", "False", "False", "UpToDate", UP_TO_DATE, 5) },
      { suspend = true }),
    status = "Suspended",
    message = "Suspended: spec.suspend is true; no migrations run until it is false",
  },
  {
    name = "Ready reason Suspended without spec.suspend",
    obj = smig(6, { observedGeneration = 6, conditions = conditions("False", "False", "False", "Suspended", SUSPENDED, 6) }),
    status = "Suspended",
    message = "Suspended: " .. SUSPENDED,
  },
  {
    name = "Ready=Unknown only",
    obj = smig(1, { observedGeneration = 1, conditions = { cond("Ready", "Unknown", "Starting", "Reading the database", 1) } }),
    status = "Progressing",
    message = "Starting: Reading the database",
  },
  {
    name = "unknown shape: conditions not a list",
    obj = smig(1, { observedGeneration = 1, conditions = "Ready" }),
    status = "Progressing",
    message = "Waiting for the schemaop operator to report status",
  },
  {
    name = "unknown shape: status not an object",
    obj = smig(1, "Ready"),
    status = "Progressing",
    message = "Waiting for the schemaop operator to report status",
  },
  {
    name = "unknown shape: odd entries and numeric strings",
    obj = smig("2", { observedGeneration = "2", conditions = { "Ready", 7, { status = "True" },
      cond("Ready", "True", "UpToDate", UP_TO_DATE, "2") } }),
    status = "Healthy",
    message = "UpToDate: " .. UP_TO_DATE,
  },
  {
    name = "unknown shape: no metadata or spec",
    obj = { status = { observedGeneration = 1, conditions = conditions("True", "False", "False", "UpToDate", UP_TO_DATE, 1) } },
    status = "Healthy",
    message = "UpToDate: " .. UP_TO_DATE,
  },
  {
    name = "unknown shape: only an unrelated condition",
    obj = smig(1, { observedGeneration = 1, conditions = { cond("Synced", "True", "Ok", "fine", 1) } }),
    status = "Progressing",
    message = "Waiting for the schemaop operator to report status",
  },
  {
    name = "floats, as Argo CD passes numbers",
    obj = smig(3.0, { observedGeneration = 2.0, conditions = conditions("True", "False", "False", "UpToDate", UP_TO_DATE, 2.0) }),
    status = "Progressing",
  },
}

-- The health statuses Argo CD accepts; anything else it shows as Unknown.
local VALID = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }

local passed, failed = 0, 0
for _, case in ipairs(cases) do
  local hs, problem = run_health(case.obj)
  if hs ~= nil and type(hs) ~= "table" then
    problem = "returned a " .. type(hs) .. ", not a table"
  elseif hs ~= nil and not VALID[hs.status] then
    problem = "returned the invalid status " .. tostring(hs.status)
  elseif hs ~= nil and hs.status ~= case.status then
    problem = "status " .. tostring(hs.status) .. ", wanted " .. case.status .. " (message: " .. tostring(hs.message) .. ")"
  elseif hs ~= nil and case.message ~= nil and hs.message ~= case.message then
    problem = "message " .. string.format("%q", tostring(hs.message)) .. ", wanted " .. string.format("%q", case.message)
  elseif hs ~= nil and type(hs.message) ~= "string" then
    problem = "no message"
  end
  if problem then
    failed = failed + 1
    print(string.format("FAIL  %-50s %s", case.name, problem))
  else
    passed = passed + 1
    print(string.format("ok    %-50s %-11s %s", case.name, hs.status, hs.message))
  end
end

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
