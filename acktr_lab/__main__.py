import sys

from acktr_lab.cli import main

sys.exit(main())
