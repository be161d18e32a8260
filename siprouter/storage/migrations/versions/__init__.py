# SPDX-License-Identifier: Apache-2.0
"""One module per migration, oldest first (``0001_...``)."""
