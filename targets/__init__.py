"""Back ends: one module per target. Imported as elmexport.targets."""
