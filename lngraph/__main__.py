import sys

from lngraph.cli.main import main

sys.exit(main())
