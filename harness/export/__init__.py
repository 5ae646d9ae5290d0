"""Export stage: adapters -> GGUF (to_gguf.py; the GGUF writer in gguf_file.py) and offline
generation with the exports (generate.py)."""
