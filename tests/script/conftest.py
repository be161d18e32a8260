# SPDX-License-Identifier: Apache-2.0
# The testing kit's fixture, as an operator's conftest gets it with
# ``pytest_plugins = ["siprouter.script.testing"]`` (allowed only in a rootdir conftest,
# so here it is imported instead).
from siprouter.script.testing import script_tester  # noqa: F401
