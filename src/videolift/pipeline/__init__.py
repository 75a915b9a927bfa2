"""The loop around the four rooms: ``videolift run`` and ``videolift demo`` drive data -> critic ->
alignment -> evaluation as stages keyed on their settings and inputs (a run manifest), each stage calling
its room's own code."""
