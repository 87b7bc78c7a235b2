"""Labels, label decoding, keys, named errors, the sample format: bytes and arrays, no torch."""
