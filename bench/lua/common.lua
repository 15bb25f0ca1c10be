-- Shared by every scenario (prepended by bench/wrk.ts): the session token, the seeded sample to
-- pick from, and done(), which prints the run's figures as one JSON line.
local function lines(file)
  local t = {}
  if file == nil then return t end
  for l in io.lines(file) do t[#t + 1] = l end
  return t
end
patients = lines(os.getenv("BENCH_PATIENTS"))
chips = lines(os.getenv("BENCH_CHIPS"))
prefixes = lines(os.getenv("BENCH_PREFIXES"))
headers = { ["authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "") }
jsonHeaders = {
  ["authorization"] = headers["authorization"],
  ["content-type"] = "application/json",
}
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)

function pick(list) return list[math.random(#list)] end

local chartStep, chartId = 0, nil
-- What the chart screen loads: the patient, the first page of notes and of documents.
function chartRequest()
  if chartStep == 0 then chartId = pick(patients) end
  local base = "/api/v1/patients/" .. chartId
  local path = base
  if chartStep == 1 then path = base .. "/notes?limit=20" end
  if chartStep == 2 then path = base .. "/documents?limit=20" end
  chartStep = (chartStep + 1) % 3
  return wrk.format("GET", path, headers)
end

function searchName()
  return wrk.format("GET", "/api/v1/patients?limit=10&q=" .. pick(prefixes), headers)
end

function searchChip()
  return wrk.format("GET", "/api/v1/patients?limit=10&identifier=microchip%7C" .. pick(chips), headers)
end

local noteBody = '{"kind":"clinical","body":"Bench note: temperature 38.6 C, heart rate 92/min, bright and alert."}'
function createNote()
  return wrk.format("POST", "/api/v1/patients/" .. pick(patients) .. "/notes", jsonHeaders, noteBody)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
