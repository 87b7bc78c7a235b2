"""AM-Adapter: exemplar-based synthesis of driving scenes that follow a label map.

Pure PyTorch + diffusers; knows nothing of Beam (see DESIGN.md section 4).
"""
