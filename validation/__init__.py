"""Runners, metrics and reports. Imported as elmexport.validation."""
