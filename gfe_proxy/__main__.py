import sys

from gfe_proxy.cli import main

sys.exit(main())
