"""``python -m vlprm.puzzles {generate,list}``."""

import sys

from vlprm.puzzles.generate import main

if __name__ == "__main__":
    sys.exit(main())
