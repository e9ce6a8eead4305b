"""An OpenAI-compatible chat-completions endpoint: the client adapter and a local sandbox of it."""
