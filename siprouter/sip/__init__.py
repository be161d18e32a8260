# SPDX-License-Identifier: Apache-2.0
"""The SIP message layer: parse, inspect, edit and serialize SIP messages. No I/O.

Nothing in this package imports asyncio, socket or time (a test checks it).
"""
