"""Core operations, each callable from the CLI and from Telegram handlers alike."""
