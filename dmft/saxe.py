"""Placeholder: being written (Saxe, McClelland & Ganguli 2014 exact solutions)."""
