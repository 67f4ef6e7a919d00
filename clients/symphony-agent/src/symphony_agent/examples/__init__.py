"""Example handlers that ship with the worker; none is registered unless its module is imported.

- ``symphony_agent.examples.chat``: ``--handlers`` module for kind ``chat``, an OpenAI-compatible chat
  completion endpoint configured by ``SYMPHONY_CHAT_*`` variables (see ``openai_chat``).
"""
