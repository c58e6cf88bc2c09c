"""The sidecar as the app's MCP host: MCP servers' configuration (config), their lifecycle (servers), how
they are reached (transport) and their tools as a model sees them (tools). The MCP SDK loads only when a
server first starts."""
