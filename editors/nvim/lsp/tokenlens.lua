-- tokenlens language server for Neovim 0.11+ (`vim.lsp.enable('tokenlens')`).
-- Override any field with `vim.lsp.config('tokenlens', { ... })`.
return {
  cmd = { 'tokenlens', 'lsp' },
  filetypes = { 'markdown', 'text', 'gitcommit' },
  root_markers = { '.git' },
  -- Same keys as the `tokenlens` section of workspace/configuration (see docs/lsp.md).
  init_options = {},
  settings = {},
  capabilities = {
    -- Ask for the `tokenlens/publishScores` notification (unchanged paragraphs by reference);
    -- plugin/tokenlens.lua paints it.
    experimental = { tokenlensScores = true, tokenlensScoresIncremental = true },
  },
}
