-- tokenlens for Neovim: paints the `tokenlens/publishScores` notification as extmarks, one
-- highlight group per relevance bucket, and adds :TokenlensTarget / :TokenlensMethod /
-- :TokenlensToggle. The colours are tokenlens's shared palette (src/render/palette.rs).
local M = {}

local api = vim.api

M.namespace = api.nvim_create_namespace('tokenlens')

--- Background and text colour per bucket; tests check these equal the Rust palette.
M.palette = {
  Pos1 = { bg = '#fee8c8', fg = '#000000' },
  Pos2 = { bg = '#fdd0a2', fg = '#000000' },
  Pos3 = { bg = '#fdae6b', fg = '#000000' },
  Pos4 = { bg = '#f16913', fg = '#000000' },
  Pos5 = { bg = '#a63603', fg = '#ffffff' },
  Neg1 = { bg = '#deebf7', fg = '#000000' },
  Neg2 = { bg = '#c6dbef', fg = '#000000' },
  Neg3 = { bg = '#9ecae1', fg = '#000000' },
  Neg4 = { bg = '#4292c6', fg = '#000000' },
  Neg5 = { bg = '#08519c', fg = '#ffffff' },
}

M.enabled = true

--- Last notification per buffer: { version = n, units = {...} }.
M.scores = {}

--- The highlight group of a bucket (-5..5, never 0).
function M.group(bucket)
  local sign = bucket < 0 and 'Neg' or 'Pos'
  return 'Tokenlens' .. sign .. math.min(math.abs(bucket), 5)
end

--- Defines the groups with `default = true` so that colourschemes and users win, and links
--- the semantic-token groups (for users who turn semantic tokens on) to them.
function M.define_highlights()
  for name, colors in pairs(M.palette) do
    api.nvim_set_hl(0, 'Tokenlens' .. name, { bg = colors.bg, fg = colors.fg, default = true })
    local modifier = name:lower() -- pos3
    api.nvim_set_hl(0, '@lsp.typemod.relevance.' .. modifier, { link = 'Tokenlens' .. name, default = true })
  end
end

--- Byte column of an LSP position in the buffer, in the client's negotiated encoding.
local function byte_col(bufnr, position, encoding)
  if encoding == 'utf-8' then
    return position.character
  end
  local line = api.nvim_buf_get_lines(bufnr, position.line, position.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, position.character, false)
  return ok and col or #line
end

local function clients(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'tokenlens' })
end

--- Redraws one buffer's extmarks from its last notification.
function M.paint(bufnr)
  if not api.nvim_buf_is_valid(bufnr) then
    return
  end
  api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  local state = M.scores[bufnr]
  if not M.enabled or not state then
    return
  end
  for _, unit in ipairs(state.units) do
    for _, word in ipairs(unit.words) do
      local s, e = word.range.start, word.range['end']
      local start_col = byte_col(bufnr, s, state.encoding)
      local end_col = byte_col(bufnr, e, state.encoding)
      pcall(api.nvim_buf_set_extmark, bufnr, M.namespace, s.line, start_col, {
        end_row = e.line,
        end_col = end_col,
        hl_group = M.group(word.bucket),
        priority = 150,
        strict = false,
      })
    end
  end
end

--- The full units of a notification: a repeated unit (`sameAs`, sent to clients declaring
--- `tokenlensScoresIncremental`) takes the words of that unit of the previous notification
--- (version `base`), moved by the change of the unit's start. nil when `previous` is not `base`.
function M.expand(params, previous)
  if params.base ~= nil and params.base ~= vim.NIL and (not previous or previous.version ~= params.base) then
    return nil
  end
  local units = {}
  for i, unit in ipairs(params.units) do
    if unit.sameAs == nil or unit.sameAs == vim.NIL then
      units[i] = unit
    else
      local old = previous.units[unit.sameAs + 1]
      if not old then
        return nil
      end
      local lines = unit.range.start.line - old.range.start.line
      local chars = unit.range.start.character - old.range.start.character
      local function moved(p)
        local character = p.character
        if p.line == old.range.start.line then
          character = character + chars
        end
        return { line = p.line + lines, character = character }
      end
      local words = {}
      for j, w in ipairs(old.words) do
        words[j] = {
          range = { start = moved(w.range.start), ['end'] = moved(w.range['end']) },
          score = w.score,
          bucket = w.bucket,
          color = w.color,
        }
      end
      units[i] = {
        range = unit.range,
        label = old.label,
        target = old.target,
        probs = old.probs,
        words = words,
      }
    end
  end
  return units
end

--- Handler of `tokenlens/publishScores`.
function M.on_scores(_, params, ctx)
  local bufnr = vim.uri_to_bufnr(params.uri)
  if not api.nvim_buf_is_loaded(bufnr) then
    return
  end
  local units = M.expand(params, M.scores[bufnr])
  if not units then
    return
  end
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  -- Kept even when stale: the next notification may repeat its units.
  M.scores[bufnr] = {
    version = params.version,
    units = units,
    encoding = client and client.offset_encoding or 'utf-16',
  }
  -- Results for an older text would land on the wrong words: do not paint them.
  local current = vim.lsp.util.buf_versions[bufnr]
  if current and params.version and params.version < current then
    return
  end
  M.paint(bufnr)
end

local function execute(bufnr, command, argument)
  for _, client in ipairs(clients(bufnr)) do
    client:request('workspace/executeCommand', {
      command = command,
      arguments = argument and { argument } or {},
    }, function(err)
      if err then
        vim.notify('tokenlens: ' .. err.message, vim.log.levels.ERROR)
      end
    end, bufnr)
  end
end

--- Class labels seen in the last notification (for completion).
local function labels(bufnr)
  local out = { 'auto' }
  local state = M.scores[bufnr]
  local unit = state and state.units[1]
  for _, p in ipairs(unit and unit.probs or {}) do
    table.insert(out, p.label)
  end
  return out
end

function M.setup_commands()
  api.nvim_create_user_command('TokenlensTarget', function(opts)
    execute(api.nvim_get_current_buf(), 'tokenlens.setTarget', opts.args ~= '' and opts.args or nil)
  end, {
    nargs = '?',
    desc = 'tokenlens: explain this class (label or index; "auto" = the prediction; none = next)',
    complete = function()
      return labels(api.nvim_get_current_buf())
    end,
  })
  api.nvim_create_user_command('TokenlensMethod', function(opts)
    execute(api.nvim_get_current_buf(), 'tokenlens.setMethod', opts.args ~= '' and opts.args or nil)
  end, { nargs = '?', desc = 'tokenlens: relevance method (none = next)' })
  api.nvim_create_user_command('TokenlensToggle', function()
    M.enabled = not M.enabled
    for bufnr in pairs(M.scores) do
      M.paint(bufnr)
    end
  end, { desc = 'tokenlens: show or hide the relevance colours' })
end

function M.setup()
  M.define_highlights()
  M.setup_commands()
  vim.lsp.handlers['tokenlens/publishScores'] = M.on_scores
  local group = api.nvim_create_augroup('tokenlens', { clear = true })
  api.nvim_create_autocmd('ColorScheme', { group = group, callback = M.define_highlights })
  api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      -- The extmarks carry every word; documentColor (top-k only) would paint on top of them.
      if client and client.name == 'tokenlens' and vim.g.tokenlens_document_color ~= true
          and vim.lsp.document_color then
        vim.schedule(function()
          pcall(vim.lsp.document_color.enable, false, args.buf)
        end)
      end
    end,
  })
  api.nvim_create_autocmd('BufUnload', {
    group = group,
    callback = function(args)
      M.scores[args.buf] = nil
    end,
  })
end

return M
