"""Process plumbing: XLA flags (`xla_flags`), the persistent compilation
cache (`compile_cache`) and padding batches to the devices (`batching`)."""
