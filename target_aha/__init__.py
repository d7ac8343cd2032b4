"""target-aha: a Singer target that writes records into Aha!."""
