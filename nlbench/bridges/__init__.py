"""Bridges to other libraries' strategies (Avalanche), behind the same strategy interface."""
