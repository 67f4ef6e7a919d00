"""``--handlers symphony_agent.examples.chat``: kind ``chat`` on an OpenAI-compatible endpoint.

Configured by ``SYMPHONY_CHAT_BASE_URL`` (default Ollama's ``http://127.0.0.1:11434/v1``),
``SYMPHONY_CHAT_MODEL`` (required), ``SYMPHONY_CHAT_API_KEY`` and ``SYMPHONY_CHAT_TIMEOUT``; a missing
model stops the worker at start-up (the module does not import), not at its first task.
"""

from symphony_agent.examples.openai_chat import ChatSettings, chat_handler
from symphony_agent.handlers import handler

chat = handler("chat")(chat_handler(ChatSettings.from_env()))
