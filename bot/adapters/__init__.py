"""Adapters: typed async wrappers over third-party libraries, errors mapped to bot.errors."""
