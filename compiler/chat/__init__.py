"""Conversations: records holding a list of messages, rendered by the model's own chat template, every trained turn's
tokens labelled exactly (layouts -> OpenAI messages, sandboxed chat template, assistant spans, the tokenize pass)."""
