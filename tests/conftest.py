"""Test-wide settings: no test reaches the network. A missing dataset file is an error, as on a machine with
no network; the download tests serve files from their own loopback HTTP server and lift this themselves."""

import os

os.environ["GENLAB_NO_DOWNLOAD"] = "1"
