-- GET with a bearer token. Arguments: token, path; a "{n}" in the path is replaced by a number
-- cycling from first to last (so the single-post benchmark reads many different posts).
local token, path, first, last, counter

function init(args)
   token = args[1]
   path = args[2]
   first = tonumber(args[3] or "1")
   last = tonumber(args[4] or "1")
   counter = (thread_index or 0) * 7919
   wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
   local p = path
   if string.find(p, "{n}", 1, true) then
      local n = first + (counter * 7919) % (last - first + 1)
      if n % 50 == 0 then n = n - 1 end  -- every 50th post is someone's draft (404)
      p = string.gsub(p, "{n}", tostring(n))
      counter = counter + 1
   end
   return wrk.format("GET", p)
end
