import sys

from .cli import main

# The guard matters: worker processes started with "spawn" import this module under another name.
if __name__ == "__main__":
    sys.exit(main())
