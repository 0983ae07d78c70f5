"""Energy meters and carbon accounting (DESIGN section 6)."""
