"""The operator tools: ``brainycp-mail-doctor``."""
