"""Built-in plugins. Every module here is registered like an installed plugin."""
