"""Option files: parsing, command-line overrides, schema checks, plugins."""
