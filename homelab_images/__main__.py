import sys

from homelab_images.cli.main import main

sys.exit(main())
