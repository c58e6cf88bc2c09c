"""Long conversations: how many tokens a request takes (``count``), how large a model's window is
(``windows``), and what to drop or summarise when it does not fit (``plan``, pure). The engine applies them
(``sidecar.engine.context``)."""
