"""emstreamd: the streaming daemon (the imperative shell around emstream's core)."""
