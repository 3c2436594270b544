"""pytest --nbmake labs: run every lab in instructor mode, without widgets.

Kernels inherit this process's environment, so setting the switches here
makes each check cell use the answers the notebook computed (they must
pass) and makes widget cells call their plain-function fallback.
"""

import os

os.environ.setdefault("PICOSIM_INSTRUCTOR", "1")
os.environ.setdefault("PICOSIM_HEADLESS", "1")
