"""Pure domain rules: plain values in, plain values (or a KubegateError) out; no I/O."""
