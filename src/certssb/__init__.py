"""certssb
"""

__version__ = "0.1"
