-- 60 % chart reads, 20 % searches (half by name, half by microchip), 20 % note creates.
function request()
  local r = math.random()
  if r < 0.6 then return chartRequest() end
  if r < 0.7 then return searchName() end
  if r < 0.8 then return searchChip() end
  return createNote()
end
