"""NumPy layers with hand-written backward passes: the UvA Practical 1 modules and the CMU HW1 interface."""
