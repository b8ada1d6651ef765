-- POST /login (OAuth2 password form), rotating through the seeded accounts user1..userN, which
-- all share one password. Arguments: password, number of accounts.
local password, accounts, counter

function init(args)
   password = args[1]
   accounts = tonumber(args[2])
   counter = (thread_index or 0) * 7919
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
   local n = 1 + (counter * 7919) % accounts
   counter = counter + 1
   return wrk.format("POST", "/login", nil, "username=user" .. n .. "&password=" .. password)
end
