"""The magnesium-anode study: bare Mg vs a bromine-rich interphase (Br-Mg)."""
