"""Operations without dropping calls: secret tables, rotation under load, draining."""
