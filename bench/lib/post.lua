-- wrk: POST one signed delivery (body and headers rendered by bench.mjs) over and over.
-- BENCH_BODY_FILE holds the body; BENCH_HEADERS_FILE one "name: value" per line.
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

wrk.method = "POST"
wrk.body = read(os.getenv("BENCH_BODY_FILE"))
for line in read(os.getenv("BENCH_HEADERS_FILE")):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
