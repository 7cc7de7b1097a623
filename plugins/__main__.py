"""``python -m sb3_dreamer_plugins train|enjoy|plot_train|plot_from_file|all_plots ...`` (same as ``sb3-dreamer``)."""

import sys

from sb3_dreamer_plugins.launcher import main

if __name__ == "__main__":
    sys.exit(main())
