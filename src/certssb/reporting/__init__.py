"""What a user sees: the figures (``figures``, ``attack_figures``), the console table, progress bars."""
