"""Labels, label decoding, keys, named errors, the sample format: bytes and arrays (and the
label resizing of ``resize.py``, the one module here on torch)."""
