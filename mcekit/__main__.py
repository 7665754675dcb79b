import sys

from mcekit.cli import main

sys.exit(main())
