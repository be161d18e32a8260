# SPDX-License-Identifier: Apache-2.0
"""siprouter: a SIP server whose routing logic is plain, testable Python."""

__version__ = "0.1.0"
__all__ = ["__version__"]
