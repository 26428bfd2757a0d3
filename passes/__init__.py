"""Graph passes over the IR (one pass per file). Imported as elmexport.passes."""
