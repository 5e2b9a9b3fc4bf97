import sys

from latentstore.cli import main

sys.exit(main())
