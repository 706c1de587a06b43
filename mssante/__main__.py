import sys

from mssante.cli import main

sys.exit(main())
