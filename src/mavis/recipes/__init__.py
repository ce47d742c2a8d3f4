"""Recipe files (YAML) and the Algorithm-1 pipeline that runs them."""
