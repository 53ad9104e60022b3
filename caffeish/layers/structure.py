"""structure layers."""
