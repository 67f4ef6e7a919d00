import sys

from symphony_agent.cli import main

sys.exit(main())
