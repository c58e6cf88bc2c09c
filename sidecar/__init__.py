"""llm-sidecar: one typed JSON-RPC interface to every LLM provider, for desktop apps."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
