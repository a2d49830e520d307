"""`python -m sast_deploy.export` = `sast-deploy export`."""
import sys

from .command import main

sys.exit(main())
