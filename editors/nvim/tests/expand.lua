-- Unit test of require('tokenlens').expand, run by tests/lsp_neovim.rs:
--   nvim --headless --clean -l editors/nvim/tests/expand.lua <repo root>
local root = arg[1]
vim.opt.runtimepath:append(root .. '/editors/nvim')
local tokenlens = require('tokenlens')

local function range(line, s, e)
  return { start = { line = line, character = s }, ['end'] = { line = line, character = e } }
end

local previous = {
  version = 1,
  units = {
    { range = range(0, 0, 10), label = 'positive', target = 'positive', probs = {}, words = {} },
    {
      range = { start = { line = 2, character = 0 }, ['end'] = { line = 3, character = 8 } },
      label = 'negative',
      target = 'negative',
      probs = { { label = 'negative', probability = 0.9 } },
      words = {
        { range = range(2, 4, 9), score = -1, bucket = -5, color = '#08519c' },
        { range = range(3, 0, 4), score = 0.3, bucket = 2, color = '#fdd0a2' },
      },
    },
  },
}
local message = {
  uri = 'file:///a.txt',
  version = 2,
  base = 1,
  units = {
    { range = range(0, 0, 12), label = 'positive', target = 'positive', probs = {}, words = {} },
    { range = { start = { line = 3, character = 2 }, ['end'] = { line = 4, character = 8 } }, sameAs = 1 },
  },
}
local units = assert(tokenlens.expand(message, previous), 'expand returned nil')
assert(#units == 2)
assert(units[2].label == 'negative')
-- One line down and two characters right: the first line's words move right too.
assert(vim.deep_equal(units[2].words[1].range, range(3, 6, 11)), vim.inspect(units[2].words[1].range))
assert(vim.deep_equal(units[2].words[2].range, range(4, 0, 4)), vim.inspect(units[2].words[2].range))
message.base = 7
assert(tokenlens.expand(message, previous) == nil, 'another base cannot be rebuilt')
local full = { version = 3, units = previous.units }
assert(vim.deep_equal(tokenlens.expand(full, nil), previous.units))
io.write('expand ok\n')
