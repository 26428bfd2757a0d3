"""The IR: captured graph container and the elm:: op library."""
