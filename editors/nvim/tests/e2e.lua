-- Headless end-to-end check, driven by tests/lsp_neovim.rs:
--   nvim --headless --clean -l editors/nvim/tests/e2e.lua
-- Environment: TOKENLENS_BIN, TOKENLENS_TEST_MODEL, TOKENLENS_TEST_FILE, TOKENLENS_TEST_OUT,
-- TOKENLENS_TEST_MODE ('zero-config': documentColor only; 'plugin': the notification plugin).
-- Writes a JSON report of the highlights it found to TOKENLENS_TEST_OUT.
local api = vim.api
local env = vim.env
local here = debug.getinfo(1, 'S').source:sub(2)
local nvim_dir = vim.fn.fnamemodify(here, ':p:h:h')
local mode = env.TOKENLENS_TEST_MODE
local report = { mode = mode, marks = {}, errors = {} }

local function finish()
  local file = assert(io.open(env.TOKENLENS_TEST_OUT, 'w'))
  file:write(vim.json.encode(report))
  file:close()
  vim.cmd('qall!')
end

local ok, err = pcall(function()
  vim.opt.runtimepath:prepend(nvim_dir)
  if mode == 'plugin' then
    -- A user override defined before the plugin loads must survive it.
    api.nvim_set_hl(0, 'TokenlensPos5', { bg = '#123456' })
    vim.cmd('runtime plugin/tokenlens.lua')
  end
  vim.lsp.config('tokenlens', {
    cmd = { env.TOKENLENS_BIN, 'lsp' },
    init_options = { model = env.TOKENLENS_TEST_MODEL, debounceMs = 0 },
  })
  vim.lsp.enable('tokenlens')
  vim.cmd('edit ' .. vim.fn.fnameescape(env.TOKENLENS_TEST_FILE))
  local bufnr = api.nvim_get_current_buf()
  report.filetype = vim.bo[bufnr].filetype

  local function marks()
    local found = {}
    for name, ns in pairs(api.nvim_get_namespaces()) do
      for _, mark in ipairs(api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })) do
        local details = mark[4]
        if details.hl_group then
          local hl = api.nvim_get_hl(0, { name = details.hl_group, link = false })
          table.insert(found, {
            namespace = name,
            row = mark[2],
            col = mark[3],
            end_row = details.end_row,
            end_col = details.end_col,
            group = details.hl_group,
            bg = hl.bg and string.format('#%06x', hl.bg) or vim.NIL,
            fg = hl.fg and string.format('#%06x', hl.fg) or vim.NIL,
          })
        end
      end
    end
    return found
  end

  local function wait_for(predicate)
    return vim.wait(30000, function()
      vim.cmd('redraw!')
      return predicate()
    end, 50)
  end

  local namespace = mode == 'plugin' and 'tokenlens' or 'nvim.lsp.document_color'
  local function ours()
    return vim.tbl_filter(function(m)
      return vim.startswith(m.namespace, namespace)
    end, marks())
  end
  report.painted = wait_for(function()
    return #ours() > 0
  end)
  report.marks = ours()
  report.lines = api.nvim_buf_get_lines(bufnr, 0, -1, false)
  report.clients = vim.tbl_map(function(c)
    return { name = c.name, encoding = c.offset_encoding }
  end, vim.lsp.get_clients({ bufnr = bufnr }))

  if mode == 'plugin' then
    report.override_bg = string.format('#%06x', api.nvim_get_hl(0, { name = 'TokenlensPos5' }).bg)
    local before = require('tokenlens').scores[bufnr]
    report.target_before = before and before.units[1].target
    vim.cmd('TokenlensTarget neutral')
    wait_for(function()
      local state = require('tokenlens').scores[bufnr]
      return state and state.units[1] and state.units[1].target == 'neutral'
    end)
    local after = require('tokenlens').scores[bufnr]
    report.target_after = after and after.units[1].target
    report.document_color_enabled = vim.lsp.document_color.is_enabled(bufnr)
  end
end)
if not ok then
  table.insert(report.errors, tostring(err))
end
finish()
