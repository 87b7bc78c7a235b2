"""Modules with weights (and their building blocks): structure encoder, matcher, prompt
embeddings, attention processors, the categorical cost, the segmenter."""
