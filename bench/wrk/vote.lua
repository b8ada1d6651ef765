-- Vote then unvote with the idempotent resource form: PUT /posts/{n}/vote then
-- DELETE /posts/{n}/vote on the same post, cycling through many posts so that concurrent
-- connections rarely lock the same row. Both calls succeed whatever order they arrive in.
-- Arguments: token, first post id, last post id.
local token, first, last, counter

function init(args)
   token = args[1]
   first = tonumber(args[2])
   last = tonumber(args[3])
   counter = (thread_index or 0) * 104729
   wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
   local pair = math.floor(counter / 2)
   local n = first + (pair * 7919) % (last - first + 1)
   if n % 50 == 0 then n = n - 1 end  -- every 50th post is someone's draft (404)
   local method = (counter % 2 == 0) and "PUT" or "DELETE"
   counter = counter + 1
   return wrk.format(method, "/posts/" .. n .. "/vote")
end
