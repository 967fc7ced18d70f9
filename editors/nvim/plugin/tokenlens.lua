-- Loaded once from 'runtimepath'. Set vim.g.tokenlens_no_plugin = true to skip it.
if vim.g.loaded_tokenlens or vim.g.tokenlens_no_plugin then
  return
end
vim.g.loaded_tokenlens = true
require('tokenlens').setup()
