raise RuntimeError("this app fails at import")
