-- kv.lua - wrk script for the etcd v3 JSON gateway (metastore or etcd), used by bench/run.sh.
--
--   wrk ... -s bench/kv.lua http://127.0.0.1:PORT -- MODE [COUNT] [check]
--
-- Keys are "key00000", "key00001", ...; values are 256 bytes. Every request is built once per
-- thread in init(), so request() only picks one and the client spends its CPU on HTTP.
--   put       POST /v3/kv/put   {"key":k,"value":v}, k random among the first 10,000 keys
--   range     POST /v3/kv/range {"key":k}, linearizable, k random among the first 10,000
--   serial    POST /v3/kv/range {"key":k,"serializable":true}
--   prefix    POST /v3/kv/range {"key":"pfx/","range_end":"pfx0"}: the 100 keys pfx/000..099
--   txn       POST /v3/kv/txn   if version(k) > 0 then put(k, v), k random among the first 10,000
--   load N T  puts keys 0..N-1 once each, split over the T threads (wrk's -t); each thread
--             stops when it has its share of answers (so the run ends before -d, which only
--             bounds it)
-- With KV_TOKEN set in the environment, every request carries it in Authorization.
-- With "check", every answer is checked (status 200 and a body that says the operation did what
-- it should), and done() prints "check: answers=A unexpected=U"; run.sh uses it in the warm-up.

local KEYSPACE = 10000
local VALUE_BYTES = 256

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for j = 3, 0, -1 do
            local d = math.floor(n / 64 ^ j) % 64
            q[#q + 1] = B64:sub(d + 1, d + 1)
        end
        if not b then
            q[3], q[4] = "=", "="
        elseif not c then
            q[4] = "="
        end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

local function key(i)
    return b64(string.format("key%05d", i))
end

local VALUE = b64(string.rep("v", VALUE_BYTES))

-- What a good answer's body contains, per mode.
local EXPECT = {
    put = '"revision"',
    range = '"count":"1"',
    serial = '"count":"1"',
    prefix = '"count":"100"',
    txn = '"succeeded":true',
    load = '"revision"',
}

-- setup() and done() run in the main Lua state; the rest runs in each thread's own state.
local threads = {}

function setup(thread)
    thread:set("id", #threads)
    threads[#threads + 1] = thread
end

local reqs = {}
local mode
local quota = 0
-- Globals, so that done() can read them with thread:get().
answers, unexpected, sample = 0, 0, nil

local function body_for(m, i)
    local k = key(i)
    if m == "put" or m == "load" then
        return '{"key":"' .. k .. '","value":"' .. VALUE .. '"}', "/v3/kv/put"
    elseif m == "range" then
        return '{"key":"' .. k .. '"}', "/v3/kv/range"
    elseif m == "serial" then
        return '{"key":"' .. k .. '","serializable":true}', "/v3/kv/range"
    elseif m == "txn" then
        return '{"compare":[{"key":"' .. k .. '","target":"VERSION","result":"GREATER",'
            .. '"version":"0"}],"success":[{"request_put":{"key":"' .. k .. '","value":"'
            .. VALUE .. '"}}]}', "/v3/kv/txn"
    end
    error("kv.lua: unknown mode " .. tostring(m))
end

function init(args)
    mode = args[1]
    if not EXPECT[mode] then
        error("kv.lua: mode must be put, range, serial, prefix, txn or load N")
    end
    local check = args[#args] == "check"
    -- An auth token (bench/auth.sh), sent as etcd expects it: Authorization, as is.
    local token = os.getenv("KV_TOKEN")
    if token and token ~= "" then
        wrk.headers["Authorization"] = token
    end
    math.randomseed(os.time() + 7919 * id)
    if mode == "prefix" then
        reqs[1] = wrk.format("POST", "/v3/kv/range", nil,
            '{"key":"' .. b64("pfx/") .. '","range_end":"' .. b64("pfx0") .. '"}')
    elseif mode == "load" then
        -- init() runs before the next thread's setup(), so the thread count comes as an argument.
        local n, nthreads = tonumber(args[2]), tonumber(args[3])
        -- This thread's keys: id, id + nthreads, id + 2 * nthreads, ... below n.
        for i = id, n - 1, nthreads do
            local body, path = body_for(mode, i)
            reqs[#reqs + 1] = wrk.format("POST", path, nil, body)
        end
        quota = #reqs
    else
        for i = 0, KEYSPACE - 1 do
            local body, path = body_for(mode, i)
            reqs[#reqs + 1] = wrk.format("POST", path, nil, body)
        end
    end
    if check or mode == "load" then
        response = function(status, headers, body)
            answers = answers + 1
            if status ~= 200 or not body:find(EXPECT[mode], 1, true) then
                unexpected = unexpected + 1
                sample = sample or (status .. " " .. body:sub(1, 200))
            end
            if mode == "load" and answers >= quota then
                wrk.thread:stop()
            end
        end
    end
end

local sent = 0

function request()
    sent = sent + 1
    if mode == "load" then
        -- Past the quota (requests still in flight when the last answer arrives), repeat the
        -- first keys: the same value again, so the key set stays the same.
        return reqs[(sent - 1) % #reqs + 1]
    end
    return reqs[math.random(#reqs)]
end

function done(summary, latency, requests)
    local a, u, s = 0, 0, nil
    for _, t in ipairs(threads) do
        a = a + (t:get("answers") or 0)
        u = u + (t:get("unexpected") or 0)
        s = s or t:get("sample")
    end
    if a > 0 then
        io.write(string.format("check: answers=%d unexpected=%d\n", a, u))
        if s then
            io.write("check: first unexpected answer: " .. s .. "\n")
        end
    end
end
